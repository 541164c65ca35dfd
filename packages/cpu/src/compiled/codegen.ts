import {
  columnSparseOffset,
  type Graph,
  type MatExpr,
  matExprKeys,
  matExprNodes,
  matrixLayout,
  type NodeId,
  paramSpec,
  type TypedArray,
  type UnaryFn,
} from '@deerjs/core';
import { matvecCols, matvecColsF32, matvecRows, matvecRowsF32 } from './matvec.js';
import { wasmMatvecSource } from './wasm/matvec-site.js';

import { fusedRuns } from './fused-runs.js';
import { expand, type Factor, type Term } from './jacobian-terms.js';
import { Unsupported } from './unsupported.js';

export { Unsupported };

/**
 * What one generated kernel does for a tile of E elements: compute `nodes` (topological; no
 * leaves, params or consts) from `externals` (element e of external k at X[k][XB[k] + e·XS[k]]),
 * write `stores` (at O[k][OB[k] + e·OS[k]]) and, optionally, each element's Jacobian blocks
 * [n/s, s, s] at J[JB + e·n·s].
 */
export interface KernelSpec {
  readonly graph: Graph;
  readonly nodes: readonly NodeId[];
  readonly externals: readonly NodeId[];
  readonly stores: readonly NodeId[];
  readonly jacobian?: { readonly expr: MatExpr; readonly blockSize: number };
  /**
   * Float32 storage: every node's value rounded to float32 where it is made (the interpreter's
   * semantics); tanh through exp (V8's Math.tanh costs 3–5× Math.exp), ~1e-16 absolute.
   */
  readonly fast?: boolean;
  /**
   * Matrix products on WebAssembly SIMD where available (wasm/matvec-site.ts): f32 lanes and sums
   * for float32 storage (`fast`), f64 otherwise.
   */
  readonly simd?: boolean;
}

export type KernelFn = (
  E: number,
  P: readonly TypedArray[],
  X: readonly TypedArray[],
  XB: readonly number[],
  XS: readonly number[],
  O: readonly TypedArray[],
  OB: readonly number[],
  OS: readonly number[],
  J: TypedArray | undefined,
  JB: number,
  S: readonly Float64Array[],
) => void;

export interface Kernel {
  readonly run: KernelFn;
  /** Node ids with scratch arrays, in S order (each holds TILE·size values); then one n·s accumulator. */
  readonly scratch: readonly { readonly id: NodeId; readonly size: number }[];
  /** Size of the Jacobian accumulator (0 without a Jacobian). */
  readonly accSize: number;
  /** Const node values, appended to P after the graph's params (in graph.params order). */
  readonly consts: readonly Float64Array[];
  readonly source: string;
  /** The spec's externals, in X order. */
  readonly externals: readonly NodeId[];
  /** Sources of the matvec copies (`new Function(src)()` each), for worker threads. */
  readonly siteSources: readonly string[];
  /** Unique id (worker threads compile each kernel once). */
  readonly uid: number;
}

const UNARY_JS: Record<UnaryFn, string> = {
  neg: '-v',
  sigmoid: '1 / (1 + Math.exp(-v))',
  tanh: 'Math.tanh(v)',
  exp: 'Math.exp(v)',
  log: 'Math.log(v)',
  softplus: '(v > 30 ? v : Math.log1p(Math.exp(v)))',
  relu: '(v > 0 ? v : v === v ? 0 : v)',
  step: '(v > 0 ? 1 : v === v ? 0 : v)',
  sin: 'Math.sin(v)',
  cos: 'Math.cos(v)',
  square: 'v * v',
  sqrt: 'Math.sqrt(v)',
  abs: 'Math.abs(v)',
  sign: 'Math.sign(v)',
};

/** Unary functions whose result is their argument or ±1, 0 (float32 in, float32 out: no rounding). */
const EXACT_UNARY: ReadonlySet<UnaryFn> = new Set(['neg', 'abs', 'relu', 'step', 'sign']);

/** Float32 programs (tanh, sigmoid and exp go through `fastExp`). No branches: a never-taken branch in a kernel is a deopt. */
const UNARY_FAST: Record<UnaryFn, string> = {
  ...UNARY_JS,
  // The reference's `v > 30 ? v : log1p(e^v)` branches; this equal form does not.
  softplus: 'Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)))',
};

/**
 * e^x for float32 programs, inline: V8's Math.exp is a call of ~7–14 ns, most of a small step.
 * x = (32k + j)·ln2/32 + r with |r| ≤ ln2/64: e^x = 2^k · 2^{j/32} · (1 + r + r²/2 + r³/6), good to
 * 6e-10 relative (float32 storage rounds at 6e-8). Branch-free (a branch first taken after V8 has
 * optimised a kernel deoptimises it): x is clamped to ±700 (e^±700 stays finite in float64 and
 * rounds to ∞ / 0 as the node's value is rounded to float32); NaN propagates.
 */
function fastExp(id: NodeId, arg: string): string[] {
  return [
    ...expReduction(id, arg),
    `const x${id} = (1 + r${id} * (1 + r${id} * (0.5 + r${id} * 0.16666666666666666))) * s${id};`,
  ];
}
/**
 * e^x − 1 for float32 programs, inline, as `fastExp` but without forming 1 + r: good to ~1e-10
 * relative at any x, so tanh = (e^{2x} − 1)/(e^{2x} + 1) keeps its relative accuracy as x → 0
 * (1 − 2/(e^{2x} + 1) had cancelled: 186 float32 ulps at x = 1e-11, 0 for 1e-30). Same clamp: the
 * result is −1 or finite.
 */
function fastExpm1(id: NodeId, arg: string): string[] {
  return [
    ...expReduction(id, arg),
    `const x${id} = s${id} * (r${id} * (1 + r${id} * (0.5 + r${id} * (0.16666666666666666 + r${id} * 0.041666666666666664)))) + (s${id} - 1);`,
  ];
}
/**
 * The shared argument reduction: x clamped to ±700 (c), k = round(32·c/ln2), r = c − k·ln2/32 and
 * s = 2^{k/32} (a power of two times EXP32[k & 31]: the product is exact).
 */
function expReduction(id: NodeId, arg: string): string[] {
  return [
    `const c${id} = Math.min(Math.max(${arg}, -700), 700);`,
    `const k${id} = Math.round(c${id} * 46.16624130844683);`,
    `const r${id} = c${id} - k${id} * 0.021660849392498291;`,
    `const s${id} = EXP32[k${id} & 31] * EXP2K[(k${id} >> 5) + 1100];`,
  ];
}
/** EXP32[j] = 2^{j/32}; EXP2K[k + 1100] = 2^k. */
export const EXP32 = Float64Array.from({ length: 32 }, (_, j) => 2 ** (j / 32));
export const EXP2K = Float64Array.from({ length: 2201 }, (_, k) => 2 ** (k - 1100));
/**
 * Unary functions computed from e^arg in float32 programs (E stands for e^arg), or from
 * e^arg − 1 where `minusOne` (E stands for that).
 */
const FAST_EXP: Partial<Record<UnaryFn, { arg: string; of: string; minusOne?: true }>> = {
  exp: { arg: 'v', of: 'E' },
  sigmoid: { arg: '-v', of: '1 / (1 + E)' },
  tanh: { arg: '2 * v', of: 'E / (E + 2)', minusOne: true },
};

/** Makes every generated source unique (see `sites`). */
let uid = 0;

/** Largest matrix (blocks·rows·cols) whose product is written out entry by entry. */
const INLINE_MATVEC = 48;
/** Vectors up to this size have their per-element loop unrolled. */
const UNROLL = 4;

const plus = (a: string, k: number) => (k === 0 ? a : k > 0 ? `${a} + ${k}` : `${a} - ${-k}`);

/** Columns of a Jacobian product summed side by side in locals (more go through a row buffer). */
const DOT_REGISTERS = 8;

/**
 * A dense sub-matrix of a Jacobian expression for the current element: entry (i, c) at
 * buf[(off + i)·n + c], or at buf[off·n + c] for every i where `bcast` (broadcast rows).
 */
interface View {
  readonly buf: string;
  readonly off: number;
  readonly bcast: boolean;
}

/**
 * The Jacobian of dense-parameter gathers and deltas, for diagonal (s = 1) or dense (s = n)
 * structure, written row by row straight into J: for each segment of rows with the same active
 * terms, every entry is one sum over them (no accumulator, no fill). Undefined when a term does not
 * fit (block parameters, entry terms, other block sizes): the caller uses the general path.
 */
function fusedJacobian(
  g: Graph,
  terms: readonly Term[],
  n: number,
  s: number,
  coef: (t: Term) => string,
  fac: (x: Factor) => string,
  pname: (name: string) => string,
): string[] | undefined {
  if (s !== 1 && s !== n) return undefined;
  type G = { t: Term; lo: number; hi: number; clo: number; chi: number; val: (c: string) => string };
  const parts: G[] = [];
  for (const t of terms) {
    if (t.kind === 'entry') return undefined;
    if (t.kind === 'delta') {
      if (s === 1 && t.off !== 0) continue;
      parts.push({ t, lo: t.r0, hi: t.r1, clo: 0, chi: n, val: () => '' });
      continue;
    }
    const { blocks, rows: pr, cols: pc } = matrixLayout(paramSpec(g, t.mm.param));
    if (blocks !== 1) return undefined;
    const inRows = t.mm.transpose ? pr : pc;
    const clo = Math.max(t.k0 + t.off, t.off, 0);
    const chi = Math.min(t.k1 + t.off, inRows + t.off, n);
    if (clo >= chi) continue;
    const W = pname(t.mm.param);
    const cfs = t.f.filter((x) => x.on === 'c');
    const val = (c: string) => {
      const idx = t.mm.transpose
        ? `(${plus(c, -t.off)}) * ${pc} + ${plus('r', t.rowShift)}`
        : `(${plus('r', t.rowShift)}) * ${pc} + ${plus(c, -t.off)}`;
      return [`${W}[${idx}]`, ...cfs.map((x) => fac(x).replace(/\bc\b/g, c))].join(' * ');
    };
    // Diagonal: the one entry (r, r) exists where r is in the column range too.
    const lo = s === 1 ? Math.max(t.r0, clo) : t.r0;
    const hi = s === 1 ? Math.min(t.r1, chi) : t.r1;
    if (lo < hi) parts.push({ t, lo, hi, clo, chi, val });
  }
  const bounds = [...new Set(parts.flatMap((p) => [p.lo, p.hi]))].sort((a, b) => a - b);
  const out: string[] = [];
  for (let k = 0; k + 1 < bounds.length; k++) {
    const a = bounds[k]!;
    const b = bounds[k + 1]!;
    const active = parts.filter((p) => p.lo <= a && p.hi >= b);
    if (active.length === 0) continue;
    out.push(`for (let r = ${a}; r < ${b}; r++) {`);
    for (let q = 0; q < active.length; q++) out.push(`  const co${q} = ${coef(active[q]!.t)};`);
    // Terms reading the same parameter entries share one product: (co_a + co_b) · P[...].
    const merged = (list: { p: G; q: number }[], c: string) => {
      const by = new Map<string, number[]>();
      for (const { p, q } of list) by.set(p.val(c), [...(by.get(p.val(c)) ?? []), q]);
      return [...by].map(
        ([v, qs]) => `${qs.length === 1 ? `co${qs[0]}` : `(${qs.map((q) => `co${q}`).join(' + ')})`} * ${v}`,
      );
    };
    if (s === 1) {
      const indexed = active.map((p, q) => ({ p, q }));
      const sum = [
        ...merged(
          indexed.filter(({ p }) => p.t.kind === 'gather'),
          'r',
        ),
        ...indexed.filter(({ p }) => p.t.kind === 'delta').map(({ q }) => `co${q}`),
      ];
      out.push(`  J[jb + r] = ${sum.join(' + ')};`);
    } else {
      out.push(`  const jr = jb + r * ${n};`);
      const gathers = active.map((p, q) => ({ p, q })).filter(({ p }) => p.t.kind === 'gather');
      const cb = [...new Set([0, n, ...gathers.flatMap(({ p }) => [p.clo, p.chi])])].sort((x, y) => x - y);
      for (let m = 0; m + 1 < cb.length; m++) {
        const ca = cb[m]!;
        const cz = cb[m + 1]!;
        const on = gathers.filter(({ p }) => p.clo <= ca && p.chi >= cz);
        if (on.length === 0) continue;
        out.push(`  for (let c = ${ca}; c < ${cz}; c++) J[jr + c] = ${merged(on, 'c').join(' + ')};`);
      }
      active.forEach((p, q) => {
        if (p.t.kind === 'delta') out.push(`  J[jr + ${plus('r', p.t.off)}] += co${q};`);
      });
    }
    out.push('}');
  }
  return out;
}

// ---- the generator ---------------------------------------------------------------------------

export function generateKernel(spec: KernelSpec): Kernel {
  const g = spec.graph;
  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);
  const paramIndex = new Map(g.params.map((p, i) => [p.name, i]));
  const consts: Float64Array[] = [];
  const constIndex = new Map<NodeId, number>();
  const extIndex = new Map(spec.externals.map((id, k) => [id, k]));
  const scratch: { id: NodeId; size: number }[] = [];
  const scratchIndex = new Map<NodeId, number>();
  /** Nodes of the fused loop being emitted, held in locals `v<id>`. */
  const local = new Set<NodeId>();
  /** Function bodies returning each matvec call site's kernel. */
  const matvecSites: string[] = [];
  const fast = spec.fast === true;

  const pname = (name: string) => {
    const k = paramIndex.get(name);
    if (k === undefined) throw new Unsupported(`unknown param ${name}`);
    return `P${k}`;
  };
  // Every node the kernel reads must be a param, a const, an external or computed before.
  const ref = (id: NodeId, e: string, i: string): string => {
    const node = g.nodes[id]!;
    if (local.has(id)) return `v${id}`;
    if (node.op === 'slice' && !extIndex.has(id)) return ref(node.a, e, plus(i, node.start));
    if (node.op === 'param') return `${pname(node.name)}[${i}]`;
    if (node.op === 'const') {
      let k = constIndex.get(id);
      if (k === undefined) {
        k = consts.length;
        // Float32 programs: the value a float32 const holds (the interpreter's Float32Array).
        consts.push(Float64Array.from(fast ? Float32Array.from(node.values) : node.values));
        constIndex.set(id, k);
      }
      return `P${g.params.length + k}[${i}]`;
    }
    const x = extIndex.get(id);
    if (x !== undefined) return `X${x}[xb${x} + ${e} * xs${x} + ${i}]`;
    const s = scratchIndex.get(id);
    if (s === undefined) throw new Error(`compiled step: node ${id} read before it is computed`);
    return node.size === 1 ? `S${s}[${e}]` : `S${s}[${e} * ${node.size} + ${i}]`;
  };
  /** Array, base and element stride of a node's values (for the matvec kernels). */
  const view = (id: NodeId): [string, string, string] => {
    const node = g.nodes[id]!;
    if (node.op === 'slice' && !extIndex.has(id)) {
      const [arr, base, stride] = view(node.a);
      return [arr, base === '0' ? String(node.start) : plus(base, node.start), stride];
    }
    if (node.op === 'param' || node.op === 'const') {
      const r = ref(id, '0', '0');
      return [r.slice(0, r.indexOf('[')), '0', '0'];
    }
    const x = extIndex.get(id);
    if (x !== undefined) return [`X${x}`, `xb${x}`, `xs${x}`];
    const s = scratchIndex.get(id);
    if (s === undefined) throw new Error(`compiled step: node ${id} read before it is computed`);
    return [`S${s}`, '0', String(node.size)];
  };
  /** Operand value inside a node of `size` (size-1 operands broadcast). */
  const opnd = (id: NodeId, size: number, e: string, i: string) =>
    g.nodes[id]!.size === 1 && size > 1 ? ref(id, e, '0') : ref(id, e, i);
  /** for e in [0, E), i in [0, size): body(e, i) — small sizes unrolled. */
  const each = (size: number, body: (e: string, i: string) => string) => {
    emit('for (let e = 0; e < E; e++) {');
    if (size <= UNROLL) for (let i = 0; i < size; i++) emit(`  ${body('e', String(i))}`);
    else emit(`  for (let i = 0; i < ${size}; i++) { ${body('e', 'i')} }`);
    emit('}');
  };

  const P_ARGS = () => {
    const names: string[] = [];
    for (let k = 0; k < g.params.length + consts.length; k++) names.push(`P${k} = P[${k}]`);
    return names;
  };

  const { items, stored } = fusedRuns(g, spec.nodes, (id) => extIndex.has(id), spec.stores);
  if (spec.jacobian) for (const d of matExprNodes(spec.jacobian.expr)) stored.add(d);
  const allocate = (id: NodeId) => {
    scratchIndex.set(id, scratch.length);
    scratch.push({ id, size: g.nodes[id]!.size });
    return scratchIndex.get(id)!;
  };
  const unary = fast ? UNARY_FAST : UNARY_JS;
  /**
   * Float32 programs: a node's value rounded to float32 where it is made, the value the reference
   * interpreter stores (its scratch is float32): without it, intermediates kept in float64 did not
   * overflow where the interpreter's, the WebAssembly kernels' and other backends' do (e^x at
   * x = 100 is finite in float64, ∞ in float32), so a cell's answer (NaN or a number) depended on
   * the path that ran. Values computed in float64 within a node (a sum, e^x's approximation) are
   * rounded once, as the interpreter rounds them.
   */
  const round = (expr: string) => (fast ? `Math.fround(${expr})` : expr);

  for (const item of items) {
    if (item.kind === 'group') {
      const { size, ids } = item;
      for (const id of ids) if (stored.has(id)) allocate(id);
      emit(
        `// fused [${size}]: ${ids.map((id) => `${id} ${(g.nodes[id] as { fn: string }).fn}`).join(', ')}`,
      );
      const body = (e: string, i: string, pad: string) => {
        for (const id of ids) {
          const node = g.nodes[id]!;
          let expr: string;
          if (node.op === 'unary') {
            const js = unary[node.fn];
            if (js === undefined) throw new Unsupported(`unary ${node.fn}`);
            emit(`${pad}const a${id} = ${opnd(node.a, size, e, i)};`);
            const fx = fast ? FAST_EXP[node.fn] : undefined;
            if (fx) {
              // Float32: e^arg inline (see fastExp), then the function of it.
              const arg = fx.arg.replace(/\bv\b/g, `a${id}`);
              for (const l of fx.minusOne ? fastExpm1(id, arg) : fastExp(id, arg)) emit(`${pad}${l}`);
              expr = fx.of.replace(/\bE\b/g, `x${id}`);
            } else expr = js.replace(/\bv\b/g, `a${id}`);
          } else if (node.op === 'binary') {
            const [x, y] = [opnd(node.a, size, e, i), opnd(node.b, size, e, i)];
            if (node.fn === 'min' || node.fn === 'max') expr = `Math.${node.fn}(${x}, ${y})`;
            else {
              const op = { add: '+', sub: '-', mul: '*', div: '/' }[node.fn];
              if (op === undefined) throw new Unsupported(`binary ${node.fn}`);
              expr = `${x} ${op} ${y}`;
            }
          } else throw new Error('compiled step: not elementwise');
          // Results that are one of their float32 operands (neg, abs, min, …) need no rounding.
          const exact =
            node.op === 'unary' ? EXACT_UNARY.has(node.fn) : node.fn === 'min' || node.fn === 'max';
          emit(`${pad}const v${id} = ${exact ? expr : round(expr)};`);
          local.add(id);
          const k = scratchIndex.get(id);
          if (k !== undefined) emit(`${pad}S${k}[${size === 1 ? e : `${e} * ${size} + ${i}`}] = v${id};`);
        }
        local.clear();
      };
      emit('for (let e = 0; e < E; e++) {');
      if (size <= UNROLL) {
        for (let i = 0; i < size; i++) {
          emit('  {');
          body('e', String(i), '    ');
          emit('  }');
        }
      } else {
        emit(`  for (let i = 0; i < ${size}; i++) {`);
        body('e', 'i', '    ');
        emit('  }');
      }
      emit('}');
      continue;
    }
    const id = item.id;
    const node = g.nodes[id]!;
    const size = node.size;
    const k = allocate(id);
    const out = (e: string, i: string) => (size === 1 ? `S${k}[${e}]` : `S${k}[${e} * ${size} + ${i}]`);
    emit(`// node ${id}: ${node.op} [${size}]`);
    switch (node.op) {
      case 'matvec': {
        const { blocks, rows, cols } = matrixLayout(paramSpec(g, node.param));
        const W = pname(node.param);
        const inSize = node.transpose ? rows : cols;
        const outSize = node.transpose ? cols : rows;
        if (blocks * rows * cols <= INLINE_MATVEC) {
          emit('for (let e = 0; e < E; e++) {');
          for (let j = 0; j < blocks * inSize; j++) emit(`  const x${j} = ${ref(node.v, 'e', String(j))};`);
          for (let b = 0; b < blocks; b++) {
            for (let o = 0; o < outSize; o++) {
              const sum: string[] = [];
              for (let q = 0; q < inSize; q++) {
                const w = node.transpose ? b * rows * cols + q * cols + o : b * rows * cols + o * cols + q;
                sum.push(`${W}[${w}] * x${b * inSize + q}`);
              }
              // Float32: the interpreter's product sums in float64 and rounds the result; its
              // transposed product accumulates in its float32 output, rounding every partial sum.
              const value =
                sum.length === 0
                  ? '0'
                  : fast && node.transpose
                    ? sum.reduce((acc, p) => (acc === '' ? round(p) : round(`${acc} + ${p}`)), '')
                    : round(sum.join(' + '));
              emit(`  ${out('e', String(b * outSize + o))} = ${value};`);
            }
          }
          emit('}');
        } else {
          const [arr, base, stride] = view(node.v);
          // One copy of the kernel per call site: each sees one array type (V8 feedback stays monomorphic).
          const fn = `MV${matvecSites.length}`;
          const wasm = spec.simd ? wasmMatvecSource(fast, node.transpose) : undefined;
          // Float32 on JavaScript: the copies rounding as the interpreter does (matvec.ts). The
          // WebAssembly ones sum in f32.
          const js = fast
            ? node.transpose
              ? matvecColsF32
              : matvecRowsF32
            : node.transpose
              ? matvecCols
              : matvecRows;
          matvecSites.push(wasm ?? `return ${js.toString()}`);
          // P (a new array per backend call) tells a wasm site when to pack W again.
          for (let b = 0; b < blocks; b++) {
            emit(
              `${fn}(${W}, ${b * rows * cols}, ${rows}, ${cols}, ${arr}, ${plus(base, b * inSize)}, ${stride}, E, S${k}, ${b * outSize}, ${size}, P);`,
            );
          }
        }
        break;
      }
      case 'concat': {
        let at = 0;
        for (const p of node.parts) {
          const ps = g.nodes[p]!.size;
          const a = at;
          each(ps, (e, i) => `${out(e, plus(i, a))} = ${ref(p, e, i)};`);
          at += ps;
        }
        break;
      }
      case 'sum': {
        const as = g.nodes[node.a]!.size;
        emit('for (let e = 0; e < E; e++) {');
        emit('  let acc = 0;');
        emit(`  for (let i = 0; i < ${as}; i++) acc += ${ref(node.a, 'e', 'i')};`);
        emit(`  ${out('e', '0')} = ${round('acc')};`);
        emit('}');
        break;
      }
      default:
        throw new Unsupported(`op ${(node as { op: string }).op}`);
    }
  }

  spec.stores.forEach((id, k) => {
    const size = g.nodes[id]!.size;
    emit(`// store node ${id}`);
    each(size, (e, i) => `O${k}[ob${k} + e * os${k} + ${i}] = ${ref(id, e, i)};`);
  });

  let accSize = 0;
  const entryFns: string[] = [];
  /** Per-kernel buffers, declared once outside the kernel function. */
  const prelude: string[] = [];
  /** Length of the ROW buffer the Jacobian's wide products accumulate in (0: none). */
  let rowLen = 0;
  if (spec.jacobian) {
    const { expr, blockSize: s } = spec.jacobian;
    const n = g.stateSize;
    accSize = n * s;
    const A = `S${scratch.length}`;
    const terms = expand(g, expr);
    const keyOf = matExprKeys();
    /**
     * Every dense sub-matrix of the expression (one not column-sparse: products through a hidden
     * layer, their sums, sums of rows, …) is computed once per element, bottom up, into a buffer
     * of its rows × n (`dense`, run before the terms), and read from there; column-sparse ones
     * (selects and what scales, slices or stacks them) cost O(1) an entry and are read through
     * entry functions. An entry function that summed its inner matrix's entries through further
     * entry functions recomputed every inner sum for every entry that read it: for the gradient
     * field of an MLP with two hidden layers of 64, ~64× the work of computing each once.
     */
    const dense: string[][] = [];
    const views = new Map<number, View>();
    let buffers = 0;
    const entryNames = new Map<number, string>();
    const entryFn = (m: MatExpr): string => {
      const k = keyOf(m);
      const hit = entryNames.get(k);
      if (hit) return hit;
      const name = `M${entryNames.size}`;
      entryNames.set(k, name);
      entryFns.push(`function ${name}(e, r, c) {\n${entryBody(m)}\n}`);
      return name;
    };
    /** Row i of a view: the offset of its entry (i, 0). */
    const rowAt = (v: View, i: string) => (v.bcast ? String(v.off * n) : `(${plus(i, v.off)}) * ${n}`);
    /** Entry (i, c) of m, for the current element e: 0, an entry function's call, or a buffer read. */
    const read = (m: MatExpr, i: string, c: string): string => {
      if (m.kind === 'zero') return '0';
      if (m.kind === 'select') return `(${c} === ${plus(i, m.offset)} ? 1 : 0)`;
      if (columnSparseOffset(m) !== undefined) return `${entryFn(m)}(e, ${i}, ${c})`;
      const v = materialize(m);
      return `${v.buf}[${rowAt(v, i)} + ${c}]`;
    };
    /** P[i][k] of a product's parameter, within block b. */
    const wAt = (m: Extract<MatExpr, { kind: 'matmul' }>, b: string, i: string, k: string) => {
      const { rows: pr, cols: pc } = matrixLayout(paramSpec(g, m.param));
      const W = pname(m.param);
      return m.transpose ? `${W}[${b} * ${pr * pc} + ${k} * ${pc} + ${i}]` : `${W}[${b} * ${pr * pc} + ${i} * ${pc} + ${k}]`;
    };
    /**
     * Lines computing acc_j = Σ_{k < K} w(k) · X[row0 + k][c0 + j] for j < cols (k in order, each
     * w read once for all columns), then sink(j, acc_j): few columns in registers, else in ROW.
     */
    const dot = (
      K: number,
      w: (k: string) => string,
      X: View,
      row0: string,
      cols: number,
      c0: string,
      sink: (j: string, acc: string) => string,
    ): string[] => {
      const xo = c0 === '0' ? rowAt(X, `${row0} + k`) : `${rowAt(X, `${row0} + k`)} + ${c0}`;
      if (cols <= DOT_REGISTERS) {
        const acc = Array.from({ length: cols }, (_, j) => `a${j}`);
        return [
          `let ${acc.map((a) => `${a} = 0`).join(', ')};`,
          `for (let k = 0; k < ${K}; k++) {`,
          `  const w = ${w('k')}, xo = ${xo};`,
          ...acc.map((a, j) => `  ${a} += w * ${X.buf}[${plus('xo', j)}];`),
          '}',
          ...acc.map((a, j) => sink(String(j), a)),
        ];
      }
      rowLen = Math.max(rowLen, cols);
      return [
        `for (let c = 0; c < ${cols}; c++) ROW[c] = 0;`,
        `for (let k = 0; k < ${K}; k++) {`,
        `  const w = ${w('k')}, xo = ${xo};`,
        `  for (let c = 0; c < ${cols}; c++) ROW[c] += w * ${X.buf}[xo + c];`,
        '}',
        `for (let c = 0; c < ${cols}; c++) ${sink('c', 'ROW[c]')}`,
      ];
    };
    /** The buffer (or a view of one) holding m for the current element, its code added to `dense` once. */
    const materialize = (m: MatExpr): View => {
      const k = keyOf(m);
      const hit = views.get(k);
      if (hit) return hit;
      let v: View;
      if (m.kind === 'slicerows' && m.m.kind !== 'zero' && columnSparseOffset(m.m) === undefined) {
        const x = materialize(m.m);
        v = x.bcast ? x : { ...x, off: x.off + m.start };
      } else if (m.kind === 'broadcastrows') {
        v = { ...materialize(m.m), bcast: true };
      } else {
        const buf = `D${buffers++}`;
        // Float32: rounded on store, as the interpreter's float32 matrices are.
        prelude.push(
          `const ${buf} = new ${fast ? 'Float32Array' : 'Float64Array'}(${Math.max(1, m.rows * n)});`,
        );
        v = { buf, off: 0, bcast: false };
        // The children's code goes first (fill reads them); entries never written stay 0.
        const code = fill(m, buf);
        if (code.length) dense.push([`// ${buf}: ${m.kind} [${m.rows}×${n}]`, ...code]);
      }
      views.set(k, v);
      return v;
    };
    const fill = (m: MatExpr, D: string): string[] => {
      switch (m.kind) {
        case 'zero':
          return [];
        case 'rowscale': {
          const x = read(m.m, 'i', 'c');
          const d = ref(m.d, 'e', g.nodes[m.d]!.size === 1 ? '0' : 'i');
          return [
            `for (let i = 0; i < ${m.rows}; i++) {`,
            `  const d = ${d}, o = i * ${n};`,
            `  for (let c = 0; c < ${n}; c++) ${D}[o + c] = d * ${x};`,
            '}',
          ];
        }
        case 'add': {
          const sum = m.terms.map((t) => read(t, 'i', 'c')).join(' + ');
          return [`for (let i = 0; i < ${m.rows}; i++) for (let c = 0; c < ${n}; c++) ${D}[i * ${n} + c] = ${sum};`];
        }
        case 'concatrows': {
          const out: string[] = [];
          let at = 0;
          for (const p of m.parts) {
            if (p.kind !== 'zero') {
              out.push(
                `for (let i = 0; i < ${p.rows}; i++) for (let c = 0; c < ${n}; c++) ${D}[(${plus('i', at)}) * ${n} + c] = ${read(p, 'i', 'c')};`,
              );
            }
            at += p.rows;
          }
          return out;
        }
        case 'sumrows':
          return [
            `for (let c = 0; c < ${n}; c++) {`,
            '  let acc = 0;',
            `  for (let i = 0; i < ${m.m.rows}; i++) acc += ${read(m.m, 'i', 'c')};`,
            `  ${D}[c] = acc;`,
            '}',
          ];
        case 'matmul': {
          const { blocks, rows: pr, cols: pc } = matrixLayout(paramSpec(g, m.param));
          const outRows = m.transpose ? pc : pr;
          const inRows = m.transpose ? pr : pc;
          const offset = columnSparseOffset(m.m);
          if (offset !== undefined) {
            // Column j of the inner matrix has its one nonzero at row j − offset: column j of the
            // product is that entry times a column of P's block (the other blocks' rows stay 0).
            const lo = Math.max(0, offset);
            const hi = Math.min(n, m.m.rows + offset);
            if (lo >= hi) return [];
            return [
              `for (let j = ${lo}; j < ${hi}; j++) {`,
              `  const kk = ${plus('j', -offset)}; const b = (kk / ${inRows}) | 0; const k = kk - b * ${inRows};`,
              `  const x = ${read(m.m, 'kk', 'j')};`,
              `  for (let i = 0; i < ${outRows}; i++) ${D}[(b * ${outRows} + i) * ${n} + j] = ${wAt(m, 'b', 'i', 'k')} * x;`,
              '}',
            ];
          }
          const X = materialize(m.m);
          return [
            `for (let b = 0; b < ${blocks}; b++) for (let i = 0; i < ${outRows}; i++) {`,
            `  const o = (b * ${outRows} + i) * ${n};`,
            ...dot(inRows, (k) => wAt(m, 'b', 'i', k), X, `b * ${inRows}`, n, '0', (j, acc) => `${D}[o + ${j}] = ${acc};`).map((l) => `  ${l}`),
            '}',
          ];
        }
        default:
          // Column-sparse (a select, or one scaled, sliced or stacked), or a slice of one.
          return [`for (let i = 0; i < ${m.rows}; i++) for (let c = 0; c < ${n}; c++) ${D}[i * ${n} + c] = ${entryFn(m)}(e, i, c);`];
      }
    };
    /** O(1) per entry for column-sparse expressions; dense ones are read from their buffers. */
    const entryBody = (m: MatExpr): string => {
      switch (m.kind) {
        case 'zero':
          return '  return 0;';
        case 'select':
          return `  return c === r + ${m.offset} ? 1 : 0;`;
        case 'rowscale':
          return `  return ${ref(m.d, 'e', g.nodes[m.d]!.size === 1 ? '0' : 'r')} * ${read(m.m, 'r', 'c')};`;
        case 'add':
          return `  return ${m.terms.map((t) => read(t, 'r', 'c')).join(' + ')};`;
        case 'slicerows':
          return `  return ${read(m.m, plus('r', m.start), 'c')};`;
        case 'concatrows': {
          const ls: string[] = [];
          let at = 0;
          for (const p of m.parts) {
            ls.push(`  if (r < ${at + p.rows}) return ${read(p, plus('r', -at), 'c')};`);
            at += p.rows;
          }
          ls.push('  return 0;');
          return ls.join('\n');
        }
        case 'sumrows':
        case 'broadcastrows':
          return `  return ${read(m, 'r', 'c')};`;
        case 'matmul': {
          const { rows: pr, cols: pc } = matrixLayout(paramSpec(g, m.param));
          const outRows = m.transpose ? pc : pr;
          const inRows = m.transpose ? pr : pc;
          const head = `  const b = (r / ${outRows}) | 0; const i = r - b * ${outRows};`;
          const offset = columnSparseOffset(m.m);
          if (offset !== undefined) {
            return `${head}
  const kk = ${plus('c', -offset)};
  if (kk < 0 || kk >= ${m.m.rows} || ((kk / ${inRows}) | 0) !== b) return 0;
  const k = kk - b * ${inRows};
  return ${wAt(m, 'b', 'i', 'k')} * ${read(m.m, 'kk', 'c')};`;
          }
          return `  return ${read(m, 'r', 'c')};`;
        }
      }
    };
    const fac = (x: Factor) => ref(x.node, 'e', x.on === 'k' ? String(x.shift) : plus(x.on, x.shift));
    const coef = (t: Term) => {
      const fs = t.f.filter((x) => x.on !== 'c').map(fac);
      return fs.length === 0 ? '1' : fs.join(' * ');
    };
    const cb = s === n ? '0' : s === 1 ? 'r' : `(r - r % ${s})`;
    const fused = fusedJacobian(g, terms, n, s, coef, fac, pname);
    if (fused) {
      emit('// Jacobian blocks, row by row (J is zero-filled)');
      emit('for (let e = 0; e < E; e++) {');
      emit(`  const jb = JB + e * ${accSize};`);
      for (const l of fused) emit(`  ${l}`);
      emit('}');
    } else {
      const body: string[] = [];
      const put = (s: string) => body.push(s);
      for (const t of terms) {
        if (t.kind === 'delta' && s === 1 && t.off !== 0) continue;
        if (t.kind === 'gather' && (s === 1 || s === n)) {
          const { blocks, rows: pr, cols: pc } = matrixLayout(paramSpec(g, t.mm.param));
          if (blocks === 1) {
            // A dense parameter: the column range is static.
            const inRows = t.mm.transpose ? pr : pc;
            const clo = Math.max(t.k0 + t.off, t.off, 0);
            const chi = Math.min(t.k1 + t.off, inRows + t.off, n);
            const W = pname(t.mm.param);
            const idx = (c: string) =>
              t.mm.transpose
                ? `(${plus(c, -t.off)}) * ${pc} + ${plus('r', t.rowShift)}`
                : `(${plus('r', t.rowShift)}) * ${pc} + ${plus(c, -t.off)}`;
            const cf = t.f
              .filter((x) => x.on === 'c')
              .map((x) => ` * ${fac(x)}`)
              .join('');
            if (s === 1) {
              const lo = Math.max(t.r0, clo);
              const hi = Math.min(t.r1, chi);
              if (lo >= hi) continue;
              put(`  for (let r = ${lo}; r < ${hi}; r++) {`);
              put(`    const c = r;`);
              put(`    ${A}[r] += ${coef(t)} * ${W}[${idx('r')}]${cf};`);
              put('  }');
              continue;
            }
            if (clo >= chi) continue;
            put(`  for (let r = ${t.r0}; r < ${t.r1}; r++) {`);
            put(`    const co = ${coef(t)}; const ao = r * ${n};`);
            put(`    for (let c = ${clo}; c < ${chi}; c++) ${A}[ao + c] += co * ${W}[${idx('c')}]${cf};`);
            put('  }');
            continue;
          }
        }
        put(`  for (let r = ${t.r0}; r < ${t.r1}; r++) {`);
        put(`    const co = ${coef(t)};`);
        if (t.kind === 'delta') {
          if (s === 1) put(`    ${A}[r] += co;`);
          else if (s === n) put(`    ${A}[r * ${n} + ${plus('r', t.off)}] += co;`);
          else {
            put(`    const cb = ${cb}; const c = ${plus('r', t.off)};`);
            put(`    if (c >= cb && c < cb + ${s}) ${A}[r * ${s} + c - cb] += co;`);
          }
        } else if (t.kind === 'gather') {
          const { blocks, rows: pr, cols: pc } = matrixLayout(paramSpec(g, t.mm.param));
          const outRows = t.mm.transpose ? pc : pr;
          const inRows = t.mm.transpose ? pr : pc;
          const W = pname(t.mm.param);
          put(`    const q = ${plus('r', t.rowShift)};`);
          if (blocks === 1) put('    const b = 0; const i = q;');
          else put(`    const b = (q / ${outRows}) | 0; const i = q - b * ${outRows};`);
          put(`    const cb = ${cb};`);
          put(
            `    const lo = Math.max(${t.k0 + t.off}, b * ${inRows} + ${t.off}, cb); const hi = Math.min(${t.k1 + t.off}, (b + 1) * ${inRows} + ${t.off}, cb + ${s});`,
          );
          const kl = `c - ${t.off} - b * ${inRows}`;
          const pIdx = t.mm.transpose
            ? `b * ${pr * pc} + (${kl}) * ${pc} + i`
            : `b * ${pr * pc} + i * ${pc} + ${kl}`;
          const cf = t.f.filter((x) => x.on === 'c').map((x) => ` * ${fac(x)}`);
          put(`    for (let c = lo; c < hi; c++) ${A}[r * ${s} - cb + c] += co * ${W}[${pIdx}]${cf.join('')};`);
        } else if (t.m.kind === 'matmul' && columnSparseOffset(t.m.m) === undefined) {
          // W · inner with a dense inner: the inner matrix once per element (`dense`), then the
          // row's block of columns as one pass over W's row (the same sums in the same order).
          const mm = t.m;
          const { rows: pr, cols: pc } = matrixLayout(paramSpec(g, mm.param));
          const outRows = mm.transpose ? pc : pr;
          const inRows = mm.transpose ? pr : pc;
          const X = materialize(mm.m);
          put(`    const q = ${plus('r', t.rowShift)}; const b = (q / ${outRows}) | 0; const i = q - b * ${outRows};`);
          put(`    const cb = ${cb};`);
          const sink = (j: string, acc: string) => `${A}[r * ${s} + ${j}] += co * ${acc};`;
          for (const l of dot(inRows, (k) => wAt(mm, 'b', 'i', k), X, `b * ${inRows}`, s, 'cb', sink)) put(`    ${l}`);
        } else {
          // O(1) an entry: a product of a column-sparse matrix, or a dense matrix's buffer.
          const q = plus('r', t.rowShift);
          const val = t.m.kind === 'matmul' ? `${entryFn(t.m)}(e, ${q}, c)` : read(t.m, q, 'c');
          put(`    const cb = ${cb};`);
          put(`    for (let c = cb; c < cb + ${s}; c++) ${A}[r * ${s} - cb + c] += co * ${val};`);
        }
        put('  }');
      }
      emit('// Jacobian blocks');
      emit('for (let e = 0; e < E; e++) {');
      emit(`  for (let q = 0; q < ${accSize}; q++) ${A}[q] = 0;`);
      for (const block of dense) {
        emit(`  ${block[0]}`);
        emit('  {');
        for (const l of block.slice(1)) emit(`    ${l}`);
        emit('  }');
      }
      for (const l of body) emit(l);
      emit(`  const jb = JB + e * ${accSize};`);
      emit(`  for (let q = 0; q < ${accSize}; q++) J[jb + q] = ${A}[q];`);
      emit('}');
    }
  }

  const head: string[] = [];
  const pArgs = P_ARGS();
  if (pArgs.length) head.push(`const ${pArgs.join(', ')};`);
  for (let k = 0; k < spec.externals.length; k++)
    head.push(`const X${k} = X[${k}], xb${k} = XB[${k}], xs${k} = XS[${k}];`);
  for (let k = 0; k < spec.stores.length; k++)
    head.push(`const O${k} = O[${k}], ob${k} = OB[${k}], os${k} = OS[${k}];`);
  for (let k = 0; k < matvecSites.length; k++) head.push(`const MV${k} = MV[${k}];`);
  const nS = scratch.length + (accSize ? 1 : 0);
  for (let k = 0; k < nS; k++) head.push(`const S${k} = S[${k}];`);
  if (rowLen > 0) prelude.push(`const ROW = new Float64Array(${rowLen});`);
  const source = `// kernel ${uid++}\n${prelude.map((l) => `${l}\n`).join('')}return function kernel(E, P, X, XB, XS, O, OB, OS, J, JB, S) {\n${head.join('\n')}\n${entryFns.join('\n')}\n${lines.join('\n')}\n};`;
  // A unique comment keeps V8's eval cache from handing every copy (or identical kernels) one
  // shared feedback vector.
  const siteSources = matvecSites.map((src) => `// copy ${uid++}\n${src}`);
  let run: KernelFn;
  try {
    const sites = siteSources.map((src) => new Function(src)());
    run = new Function('MV', 'EXP32', 'EXP2K', source)(sites, EXP32, EXP2K) as KernelFn;
  } catch (err) {
    // E.g. a Content-Security-Policy without 'unsafe-eval': the reference interpreter runs instead.
    throw new Unsupported(`cannot compile generated code: ${(err as Error).message}`);
  }
  return { run, scratch, accSize, consts, source, siteSources, uid: uid++, externals: spec.externals };
}
