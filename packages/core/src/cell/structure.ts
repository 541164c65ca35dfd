import { type Graph, matrixLayout, paramSpec } from './graph.js';
import type { MatExpr } from './matexpr.js';
import { UnsupportedOptionError } from '../errors.js';

/**
 * Jacobian structure. `block` of size s keeps the n/s diagonal s×s blocks; `dense` is block size n
 * and `diagonal` block size 1, so one parameterised scan serves all three.
 */
export type JacobianStructure = 'dense' | 'diagonal' | { readonly block: number };

/** The block size s of a structure for state size n. */
export function blockSize(structure: JacobianStructure, n: number): number {
  if (structure === 'dense') return n;
  if (structure === 'diagonal') return 1;
  const s = structure.block;
  if (!Number.isInteger(s) || s < 1 || n % s !== 0) {
    throw new UnsupportedOptionError('jacobian.block', s, `a block size that divides the state size ${n}`);
  }
  return s;
}

export function structureFromBlockSize(s: number, n: number): JacobianStructure {
  if (s === n) return 'dense';
  if (s === 1) return 'diagonal';
  return { block: s };
}

export function describeStructure(structure: JacobianStructure): string {
  return typeof structure === 'string' ? structure : `block(${structure.block})`;
}

/** Structural nonzero pattern of a matrix expression (row-major, 1 = may be nonzero). */
export function sparsityPattern(graph: Graph, m: MatExpr): Uint8Array {
  const { rows, cols } = m;
  const out = new Uint8Array(rows * cols);
  switch (m.kind) {
    case 'zero':
      break;
    case 'select':
      for (let i = 0; i < rows; i++) {
        const j = i + m.offset;
        if (j >= 0 && j < cols) out[i * cols + j] = 1;
      }
      break;
    case 'rowscale':
      return sparsityPattern(graph, m.m);
    case 'add':
      for (const t of m.terms) {
        const p = sparsityPattern(graph, t);
        for (let k = 0; k < p.length; k++) out[k]! |= p[k]!;
      }
      break;
    case 'matmul': {
      const inner = sparsityPattern(graph, m.m);
      const { blocks, rows: pr, cols: pc } = matrixLayout(paramSpec(graph, m.param));
      // Output row i of block k reads inner rows of block k only.
      const outRows = m.transpose ? pc : pr;
      const inRows = m.transpose ? pr : pc;
      for (let k = 0; k < blocks; k++) {
        const any = new Uint8Array(cols);
        for (let r = 0; r < inRows; r++) {
          const base = (k * inRows + r) * cols;
          for (let j = 0; j < cols; j++) any[j]! |= inner[base + j]!;
        }
        for (let r = 0; r < outRows; r++) out.set(any, (k * outRows + r) * cols);
      }
      break;
    }
    case 'slicerows':
      return sparsityPattern(graph, m.m).slice(m.start * cols, (m.start + rows) * cols);
    case 'concatrows': {
      let at = 0;
      for (const p of m.parts) {
        out.set(sparsityPattern(graph, p), at * cols);
        at += p.rows;
      }
      break;
    }
    case 'sumrows': {
      const p = sparsityPattern(graph, m.m);
      for (let i = 0; i < m.m.rows; i++) for (let j = 0; j < cols; j++) out[j]! |= p[i * cols + j]!;
      break;
    }
    case 'broadcastrows': {
      const p = sparsityPattern(graph, m.m);
      for (let i = 0; i < rows; i++) out.set(p, i * cols);
      break;
    }
  }
  return out;
}

/** Smallest block size s (dividing n) whose blocks hold every structural nonzero of an n×n pattern. */
export function smallestExactBlock(pattern: Uint8Array, n: number): number {
  for (let s = 1; s < n; s++) {
    if (n % s !== 0) continue;
    let ok = true;
    for (let i = 0; i < n && ok; i++) {
      const bi = Math.floor(i / s);
      for (let j = 0; j < n; j++) {
        if (pattern[i * n + j] && Math.floor(j / s) !== bi) {
          ok = false;
          break;
        }
      }
    }
    if (ok) return s;
  }
  return n;
}
