import { columnSparseOffset, type Graph, type MatExpr, type NodeId } from '@deerjs/core';

/**
 * A Jacobian matrix expression (core's matexpr.ts) as a sum of terms whose entries cost O(1) each,
 * for both generators (codegen.ts, wasm/kernel-module.ts).
 */

/** A factor: node[r + shift], node[c + shift], or node[shift] (`on: 'k'`). */
export interface Factor {
  readonly node: NodeId;
  readonly on: 'r' | 'c' | 'k';
  readonly shift: number;
}
export type Term = { readonly r0: number; readonly r1: number; readonly f: readonly Factor[] } & (
  | { readonly kind: 'delta'; readonly off: number }
  | {
      readonly kind: 'gather';
      readonly mm: Extract<MatExpr, { kind: 'matmul' }>;
      readonly rowShift: number;
      readonly off: number;
      readonly k0: number;
      readonly k1: number;
    }
  | { readonly kind: 'entry'; readonly m: MatExpr; readonly rowShift: number }
);

/** Old row q = new row r + d; keep new rows in [lo, hi). */
function substitute(t: Term, d: number, lo: number, hi: number): Term | undefined {
  const r0 = Math.max(t.r0 - d, lo);
  const r1 = Math.min(t.r1 - d, hi);
  if (r0 >= r1) return undefined;
  const f = t.f.map((x) => (x.on === 'r' ? { ...x, shift: x.shift + d } : x));
  switch (t.kind) {
    case 'delta':
      return { ...t, r0, r1, f, off: t.off + d };
    case 'gather':
      return { ...t, r0, r1, f, rowShift: t.rowShift + d };
    case 'entry':
      return { ...t, r0, r1, f, rowShift: t.rowShift + d };
  }
}

/**
 * A matrix expression as a sum of terms whose entries cost O(1) each: deltas (slices of the
 * identity, scaled by row factors) and gathers (a parameter row read against a column-sparse
 * inner matrix). What does not fit becomes an `entry` term evaluated by the generic entry formula.
 */
export function expand(g: Graph, m: MatExpr): Term[] {
  const entry = (): Term[] => [{ kind: 'entry', m, rowShift: 0, r0: 0, r1: m.rows, f: [] }];
  switch (m.kind) {
    case 'zero':
      return [];
    case 'select': {
      const r0 = Math.max(0, -m.offset);
      const r1 = Math.min(m.rows, m.cols - m.offset);
      return r0 < r1 ? [{ kind: 'delta', off: m.offset, r0, r1, f: [] }] : [];
    }
    case 'rowscale': {
      const one = g.nodes[m.d]!.size === 1;
      const fac: Factor = { node: m.d, on: one ? 'k' : 'r', shift: 0 };
      return expand(g, m.m).map((t) => ({ ...t, f: [...t.f, fac] }));
    }
    case 'add':
      return m.terms.flatMap((t) => expand(g, t));
    case 'slicerows':
      return expand(g, m.m).flatMap((t) => substitute(t, m.start, 0, m.rows) ?? []);
    case 'concatrows': {
      const out: Term[] = [];
      let at = 0;
      for (const p of m.parts) {
        for (const t of expand(g, p)) {
          const s = substitute(t, -at, at, at + p.rows);
          if (s) out.push(s);
        }
        at += p.rows;
      }
      return out;
    }
    case 'matmul': {
      if (columnSparseOffset(m.m) === undefined) return entry();
      const inner = expand(g, m.m);
      if (inner.some((t) => t.kind !== 'delta' || t.f.some((x) => x.on === 'c'))) return entry();
      return inner.map((t) => {
        const off = (t as { off: number }).off;
        return {
          kind: 'gather',
          mm: m,
          rowShift: 0,
          off,
          k0: t.r0,
          k1: t.r1,
          r0: 0,
          r1: m.rows,
          f: t.f.map((x) => (x.on === 'r' ? { node: x.node, on: 'c' as const, shift: x.shift - off } : x)),
        };
      });
    }
    default:
      return entry();
  }
}
