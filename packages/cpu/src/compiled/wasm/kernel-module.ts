import { type Graph, type MatExpr, matExprNodes, matrixLayout, type NodeId, paramSpec } from '@deerjs/core';
import { fusedRuns } from '../fused-runs.js';
import { expand, type Factor } from '../jacobian-terms.js';
import { Unsupported } from '../unsupported.js';
import { Body, I32, moduleBytes, OP, SIMD, V128 } from './encode.js';
import { emitExp, emitSigmoid, emitTanh } from './simd-math.js';

/**
 * Float32 step programs as WebAssembly SIMD, vectorised across elements: a *group* is four
 * elements (batch rows in a sequential step, (b, t) elements in runStep), one per f32x4 lane, so
 * every node op — gates and transcendentals included — is one f32x4 op per entry for four
 * elements. Generic over cells: the code comes from the graph, as in codegen.ts.
 *
 * Node values live in a scratch block per group (entry i of a node at `off + 16·i`, lanes = the
 * group's elements); runs of elementwise nodes of one size are fused into one loop over the
 * entries, their values in locals, stored only when read outside the run. Params (and vector
 * consts) are float32 arrays at fixed offsets of the module's memory, written by the caller; a
 * param read as a vector is broadcast per entry. `matvec` is a register-blocked product: two
 * groups × four output rows of accumulators, each W entry broadcast once for both groups, sums over
 * the input in order, in float32.
 *
 * An external is read, and a store written, in one of two layouts: `vec` (interleaved, entry i of
 * group g at ptr + g·gs + 16·i) or `rows` (element-major, entry i of lane l of group g at
 * ptr + g·gs + l·ls + 4·i: the tensors' own layout); `rows` externals are gathered into scratch
 * first, `rows` stores scattered from it last.
 *
 * A kernel with a `jacobian` also writes each element's Jacobian blocks [n/s, s, s] (`rows` layout,
 * element stride ls = 4·n·s) from the expression's terms (jacobian-terms.ts): every row and its
 * column segments static, each entry one sum of coefficient vectors × broadcast parameter entries;
 * entries no term reaches are written as 0 (the caller's array is not zero-filled). Expressions with
 * terms of the generic entry formula are Unsupported.
 *
 * Each kernel is exported as a function (ng, sp, then ptr, gs, ls for each external, each store and
 * the Jacobian): ng ≥ 1 groups, scratch at sp (ng · groupBytes bytes).
 */

export type Layout = 'vec' | 'rows';

export interface WasmKernelSpec {
  readonly name: string;
  /** Nodes to compute, in topological order (leaves, params and consts are skipped). */
  readonly nodes: readonly NodeId[];
  readonly externals: readonly { readonly id: NodeId; readonly layout: Layout }[];
  readonly stores: readonly { readonly id: NodeId; readonly layout: Layout }[];
  readonly jacobian?: { readonly expr: MatExpr; readonly blockSize: number };
  /**
   * Layout of the Jacobian blocks (default `rows`): `vec` writes entry k of group g's four elements
   * at ptr + g·gs + 16·k, one v128 store (the fused DEER step reads them so, wasm/scan-update.ts).
   */
  readonly jacobianLayout?: Layout;
}

/**
 * What every runner's meta says of its module: where params and constants go, the first free byte,
 * and the scratch per group of the hoisted kernel `h` (0 without one) and of the last kernel.
 */
export interface ModuleLayout {
  readonly params: WasmKernels['params'];
  readonly consts: WasmKernels['consts'];
  readonly dataEnd: number;
  readonly hBytes: number;
  readonly kBytes: number;
}

/** `k`'s layout for a runner; `hoisted`: its first kernel is the hoisted `h`. */
export const moduleLayout = (k: WasmKernels, hoisted: boolean): ModuleLayout => ({
  params: k.params,
  consts: k.consts,
  dataEnd: k.dataEnd,
  hBytes: hoisted ? k.groupBytes[0]! : 0,
  kBytes: k.groupBytes.at(-1)!,
});

export interface WasmKernels {
  readonly bytes: Uint8Array;
  /** Where each param the kernels read goes in memory (float32, byte offset), by graph.params index. */
  readonly params: readonly { readonly index: number; readonly offset: number; readonly size: number }[];
  /** Vector consts to write at byte offsets once. */
  readonly consts: readonly { readonly offset: number; readonly values: readonly number[] }[];
  /** First free byte after params and consts (16-aligned). */
  readonly dataEnd: number;
  /** Scratch bytes per group, per kernel (spec order). */
  readonly groupBytes: readonly number[];
}

/** Entries per fused loop written out without a loop. */
const UNROLL = 4;
/** Register blocking of matvec: groups × output rows. */
const GB = 2;
const RB = 4;
/**
 * Entries of a fused run computed side by side (see forBlocks): a GRU step at n = 64 took 0.61×
 * the time of one entry at a time (4 measured best of 1, 2, 4, 8).
 */
const INTERLEAVE = 4;

const align16 = (v: number) => Math.ceil(v / 16) * 16;

/** Where a node's values are, for one group. */
type Loc =
  | { readonly kind: 'mem'; readonly base: number; readonly off: number }
  | { readonly kind: 'param'; readonly off: number }
  | { readonly kind: 'scalar'; readonly value: number };

/**
 * The module of `specs`, plus `extra` hand-written functions (after the kernels, sharing their
 * memory).
 */
export function wasmKernels(
  g: Graph,
  specs: readonly WasmKernelSpec[],
  extra: readonly { readonly name: string; readonly body: Body }[] = [],
): WasmKernels {
  // Params and vector consts: one region shared by the kernels.
  let top = 0;
  const paramOff = new Map<string, number>();
  const params: { index: number; offset: number; size: number }[] = [];
  const constOff = new Map<NodeId, number>();
  const consts: { offset: number; values: readonly number[] }[] = [];
  const useParam = (name: string) => {
    let o = paramOff.get(name);
    if (o === undefined) {
      const index = g.params.findIndex((p) => p.name === name);
      const size = g.params[index]!.size;
      o = top;
      top = align16(top + size * 4);
      paramOff.set(name, o);
      params.push({ index, offset: o, size });
    }
    return o;
  };
  const fns: { name: string; body: Body }[] = [];
  const groupBytes: number[] = [];
  for (const spec of specs) {
    const { body, bytes } = kernelBody(g, spec, useParam, (id) => {
      let o = constOff.get(id);
      if (o === undefined) {
        const node = g.nodes[id] as { values: readonly number[]; size: number };
        o = top;
        top = align16(top + node.size * 4);
        constOff.set(id, o);
        consts.push({ offset: o, values: node.values });
      }
      return o;
    });
    fns.push({ name: spec.name, body });
    groupBytes.push(bytes);
  }
  return { bytes: moduleBytes([...fns, ...extra]), params, consts, dataEnd: align16(top), groupBytes };
}

function kernelBody(
  g: Graph,
  spec: WasmKernelSpec,
  useParam: (name: string) => number,
  useConst: (id: NodeId) => number,
): { body: Body; bytes: number } {
  const nE = spec.externals.length;
  const nO = spec.stores.length;
  const nJ = spec.jacobian ? 1 : 0;
  const f = new Body(2 + 3 * (nE + nO + nJ));
  const NG = 0;
  const SP = 1;
  const xArg = (k: number, q: number) => 2 + 3 * k + q;
  const oArg = (k: number, q: number) => 2 + 3 * (nE + k) + q;
  const gl = f.local(I32); // group index
  const sg = f.local(I32); // this group's scratch block
  const iv = f.local(I32); // 16·entry, in entry loops
  const i4 = f.local(I32); // 4·entry
  const xBase = spec.externals.map(() => f.local(I32));
  const oBase = spec.stores.map(() => f.local(I32));
  const jBase = f.local(I32);
  const jArg = (q: number) => 2 + 3 * (nE + nO) + q;
  const lanes = [0, 1, 2, 3].map(() => f.local(I32));

  // Scratch: one block per group.
  let bytes = 0;
  const scratch = new Map<NodeId, number>();
  const allocate = (id: NodeId) => {
    let o = scratch.get(id);
    if (o === undefined) {
      o = bytes;
      bytes += 16 * g.nodes[id]!.size;
      scratch.set(id, o);
    }
    return o;
  };
  const extIndex = new Map(spec.externals.map((x, k) => [x.id, k]));

  // The Jacobian's coefficient vectors are read from scratch too.
  const factors = spec.jacobian ? [...matExprNodes(spec.jacobian.expr)] : [];
  const { items, stored } = fusedRuns(g, spec.nodes, (id) => extIndex.has(id), [
    ...spec.stores.map((s) => s.id),
    ...factors,
  ]);

  // Scratch, all allocated before any code (the block size is in the code): `rows` externals
  // (gathered; `vec` ones are read in place), stored values of fused runs, every other node.
  for (const x of spec.externals) if (x.layout === 'rows') allocate(x.id);
  for (const item of items) {
    if (item.kind === 'single') allocate(item.id);
    else for (const id of item.ids) if (stored.has(id)) allocate(id);
  }
  // A product of a param or const vector (the same for every element) reads it broadcast into
  // scratch first.
  const uniform = (id: NodeId): boolean => {
    const node = g.nodes[id]!;
    if (extIndex.has(id)) return false;
    return node.op === 'param' || node.op === 'const' || (node.op === 'slice' && uniform(node.a));
  };
  const broadcast = new Map<NodeId, number>();
  for (const item of items) {
    if (item.kind !== 'single') continue;
    const node = g.nodes[item.id]!;
    if (node.op === 'matvec' && uniform(node.v)) {
      broadcast.set(item.id, bytes);
      bytes += 16 * g.nodes[node.v]!.size;
    }
  }
  const tmp = f.local(V128);
  const loc = (id: NodeId): Loc => {
    const node = g.nodes[id]!;
    const k = extIndex.get(id);
    if (k !== undefined) {
      return spec.externals[k]!.layout === 'vec'
        ? { kind: 'mem', base: xBase[k]!, off: 0 }
        : { kind: 'mem', base: sg, off: scratch.get(id)! };
    }
    if (node.op === 'slice') {
      const a = loc(node.a);
      if (a.kind === 'mem') return { ...a, off: a.off + 16 * node.start };
      if (a.kind === 'param') return { kind: 'param', off: a.off + 4 * node.start };
      throw new Error('wasm kernel: slice of a scalar');
    }
    if (node.op === 'param') return { kind: 'param', off: useParam(node.name) };
    if (node.op === 'const') {
      if (node.size === 1) return { kind: 'scalar', value: node.values[0]! };
      return { kind: 'param', off: useConst(id) };
    }
    const s = scratch.get(id);
    if (s === undefined) throw new Error(`wasm kernel: node ${id} read before it is computed`);
    return { kind: 'mem', base: sg, off: s };
  };

  // ---- loops ----
  /** Sets the per-group base pointers for group gl. */
  const bases = () => {
    f.get(SP).get(gl).i32(bytes).mul().add().set(sg);
    spec.externals.forEach((_, k) => {
      f.get(xArg(k, 0)).get(gl).get(xArg(k, 1)).mul().add().set(xBase[k]!);
    });
    spec.stores.forEach((_, k) => {
      f.get(oArg(k, 0)).get(gl).get(oArg(k, 1)).mul().add().set(oBase[k]!);
    });
    if (nJ) f.get(jArg(0)).get(gl).get(jArg(1)).mul().add().set(jBase);
  };
  /** for gl in [0, ng): bases, body. */
  const forGroups = (body: () => void) => {
    f.i32(0).set(gl);
    f.loop(() => {
      bases();
      body();
      f.get(gl).i32(1).add().tee(gl).get(NG).op(OP.i32LtS).brIf(0);
    });
  };
  /**
   * For each entry i of `size`, in blocks of up to `u` entries: body(entries, dyn), each entry's
   * immediates (16·i, 4·i) absolute, or relative to iv, i4 when dyn (a loop over full blocks, then
   * the rest). A fused run interleaves a block's entries op by op: independent dependency chains
   * side by side, where one entry at a time would leave the core waiting on each op's latency.
   */
  const forBlocks = (
    size: number,
    u: number,
    body: (es: readonly [number, number][], dyn: boolean) => void,
  ) => {
    const block = (from: number, count: number, rel: number) =>
      Array.from(
        { length: count },
        (_, k) => [16 * (from + k - rel), 4 * (from + k - rel)] as [number, number],
      );
    if (size <= UNROLL * u) {
      for (let i = 0; i < size; i += u) body(block(i, Math.min(u, size - i), 0), false);
      return;
    }
    const full = Math.floor(size / u) * u;
    f.i32(0).set(iv);
    f.loop(() => {
      f.get(iv).i32(2).op(OP.i32ShrS).set(i4);
      body(block(0, u, 0), true);
      f.get(iv)
        .i32(16 * u)
        .add()
        .tee(iv)
        .i32(16 * full)
        .op(OP.i32LtS)
        .brIf(0);
    });
    if (full < size) {
      f.get(iv).i32(2).op(OP.i32ShrS).set(i4);
      body(block(full, size - full, full), true);
    }
  };
  /** for each entry i of `size`: body(imm16, imm4, dyn), one at a time. */
  const forEntries = (size: number, body: (i16: number, i4: number, dyn: boolean) => void) =>
    forBlocks(size, 1, (es, dyn) => {
      for (const [a, b] of es) body(a, b, dyn);
    });
  /** Pushes the address base of a memory operand: base (+ iv when looping and not broadcast). */
  const addr = (base: number, dyn: boolean, by: 'iv' | 'i4' | 'none') => {
    f.get(base);
    if (dyn && by !== 'none') f.get(by === 'iv' ? iv : i4).add();
  };
  /** Pushes node `id`'s entry (broadcast when it has size 1) as a v128. */
  const load = (id: NodeId, i16: number, i4v: number, dyn: boolean, locals: Map<NodeId, number>) => {
    const lv = locals.get(id);
    if (lv !== undefined) {
      f.get(lv);
      return;
    }
    const one = g.nodes[id]!.size === 1;
    const l = loc(id);
    if (l.kind === 'scalar') {
      f.f32x4(l.value);
    } else if (l.kind === 'param') {
      if (dyn && !one) f.get(i4);
      else f.i32(0);
      f.mem(SIMD.load32Splat, l.off + (one ? 0 : i4v), 2);
    } else {
      addr(l.base, dyn, one ? 'none' : 'iv');
      f.mem(SIMD.load, l.off + (one ? 0 : i16), 4);
    }
  };

  // ---- gather `rows` externals ----
  const gathers = spec.externals.map((x, k) => ({ ...x, k })).filter((x) => x.layout === 'rows');
  if (gathers.length) {
    forGroups(() => {
      for (const x of gathers) {
        const size = g.nodes[x.id]!.size;
        const off = scratch.get(x.id)!;
        for (let l = 0; l < 4; l++) f.get(xBase[x.k]!).i32(l).get(xArg(x.k, 2)).mul().add().set(lanes[l]!);
        forEntries(size, (i16, i4v, dyn) => {
          addr(sg, dyn, 'iv');
          addr(lanes[0]!, dyn, 'i4');
          f.mem(SIMD.load32Splat, i4v, 2);
          for (let l = 1; l < 4; l++) {
            f.set(tmp);
            addr(lanes[l]!, dyn, 'i4');
            f.get(tmp).lane(SIMD.load32Lane, i4v, l);
          }
          f.mem(SIMD.store, off + i16, 4);
        });
      }
    });
  }

  // ---- the nodes ----
  for (const item of items) {
    if (item.kind === 'group') {
      const { size, ids } = item;
      forGroups(() => {
        forBlocks(size, INTERLEAVE, (es, dyn) => {
          const locals = es.map(() => new Map<NodeId, number>());
          for (const id of ids) {
            const node = g.nodes[id]!;
            es.forEach(([i16, i4v], k) => {
              const v = f.local(V128);
              if (node.op === 'unary') {
                load(node.a, i16, i4v, dyn, locals[k]!);
                unary(f, node.fn, v);
              } else if (node.op === 'binary') {
                load(node.a, i16, i4v, dyn, locals[k]!);
                load(node.b, i16, i4v, dyn, locals[k]!);
                const op = BINARY[node.fn];
                if (op === undefined) throw new Unsupported(`binary ${node.fn}`);
                f.simd(op);
              } else throw new Error('wasm kernel: not elementwise');
              f.set(v);
              locals[k]!.set(id, v);
              const o = scratch.get(id);
              if (o !== undefined) {
                addr(sg, dyn, 'iv');
                f.get(v).mem(SIMD.store, o + i16, 4);
              }
            });
          }
        });
      });
      continue;
    }
    const id = item.id;
    const node = g.nodes[id]!;
    const out = scratch.get(id)!;
    switch (node.op) {
      case 'matvec': {
        const b = broadcast.get(id);
        if (b !== undefined) {
          forGroups(() =>
            forEntries(g.nodes[node.v]!.size, (i16, i4v, dyn) => {
              addr(sg, dyn, 'iv');
              load(node.v, i16, i4v, dyn, new Map());
              f.mem(SIMD.store, b + i16, 4);
            }),
          );
        }
        const x: Loc = b === undefined ? loc(node.v) : { kind: 'mem', base: sg, off: b };
        matvec(f, g, node, x, out, bytes, useParam(node.param), { gl, sg, bases, NG });
        break;
      }
      case 'concat': {
        forGroups(() => {
          let at = 0;
          for (const p of node.parts) {
            const ps = g.nodes[p]!.size;
            const a = at;
            forEntries(ps, (i16, i4v, dyn) => {
              addr(sg, dyn, 'iv');
              load(p, i16, i4v, dyn, new Map());
              f.mem(SIMD.store, out + 16 * a + i16, 4);
            });
            at += ps;
          }
        });
        break;
      }
      case 'sum': {
        const acc = f.local(V128);
        forGroups(() => {
          f.zero().set(acc);
          forEntries(g.nodes[node.a]!.size, (i16, i4v, dyn) => {
            f.get(acc);
            load(node.a, i16, i4v, dyn, new Map());
            f.simd(SIMD.f32x4Add).set(acc);
          });
          f.get(sg).get(acc).mem(SIMD.store, out, 4);
        });
        break;
      }
      default:
        throw new Unsupported(`wasm: op ${node.op}`);
    }
  }

  // ---- the Jacobian ----
  if (spec.jacobian) {
    const { expr, blockSize } = spec.jacobian;
    forGroups(() => {
      const vec = spec.jacobianLayout === 'vec';
      if (!vec) for (let l = 0; l < 4; l++) f.get(jBase).i32(l).get(jArg(2)).mul().add().set(lanes[l]!);
      jacobianRows(f, g, expr, blockSize, useParam, {
        vec: vec ? jBase : undefined,
        lanes,
        tmp,
        iv,
        i4,
        loadAt: (id, i, dyn) => load(id, 16 * i, 4 * i, dyn, new Map()),
      });
    });
  }

  // ---- stores ----
  if (spec.stores.length) {
    forGroups(() => {
      spec.stores.forEach((s, k) => {
        const size = g.nodes[s.id]!.size;
        if (s.layout === 'rows') {
          for (let l = 0; l < 4; l++) f.get(oBase[k]!).i32(l).get(oArg(k, 2)).mul().add().set(lanes[l]!);
        }
        forEntries(size, (i16, i4v, dyn) => {
          load(s.id, i16, i4v, dyn, new Map());
          f.set(tmp);
          if (s.layout === 'vec') {
            addr(oBase[k]!, dyn, 'iv');
            f.get(tmp).mem(SIMD.store, i16, 4);
          } else {
            for (let l = 0; l < 4; l++) {
              addr(lanes[l]!, dyn, 'i4');
              f.get(tmp).lane(SIMD.store32Lane, i4v, l);
            }
          }
        });
      });
    });
  }
  return { body: f, bytes: Math.max(16, bytes) };
}

/** One run of a Jacobian row's columns [lo, hi) read by a gather term: W entries and column factors. */
interface Gather {
  readonly lo: number;
  readonly hi: number;
  /** Coefficient factors (of the row). */
  readonly co: readonly Factor[];
  /** Column factors (node[c + shift]). */
  readonly cf: readonly Factor[];
  /** W's byte offset at column c: wOff + wStride·(c + wShift). */
  readonly wOff: number;
  readonly wStride: number;
  readonly wShift: number;
}

/**
 * Writes a group's Jacobian blocks: for every row r (static) and its block's columns [cb, cb + s),
 * split into segments where the same terms are active, J[r][c] = Σ coefficient × W entry × column
 * factors + Σ deltas, stored to the four elements' rows (lanes[l] + 4·(r·s + c − cb)). Gathers of
 * one W entry with the same column factors share one product: (co_a + co_b) · W. Segments of more
 * than four columns are loops over c.
 */
function jacobianRows(
  f: Body,
  g: Graph,
  expr: MatExpr,
  s: number,
  useParam: (name: string) => number,
  ctx: {
    /** The `vec` layout's base local (entry k at +16·k), or undefined for `rows` (lanes). */
    vec: number | undefined;
    lanes: readonly number[];
    tmp: number;
    iv: number;
    i4: number;
    /** Pushes node id's entry i (static), or entry (iv/16) when dyn. */
    loadAt: (id: NodeId, i: number, dyn: boolean) => void;
  },
): void {
  const n = g.stateSize;
  const terms = expand(g, expr);
  if (terms.some((t) => t.kind === 'entry')) throw new Unsupported('wasm: Jacobian entry terms');
  const { vec, lanes, tmp, iv, i4, loadAt } = ctx;
  const cl = f.local(I32);
  const coPool: number[] = [];
  const coLocal = (q: number) => {
    while (coPool.length <= q) coPool.push(f.local(V128));
    return coPool[q]!;
  };
  const factorAt = (x: Factor, r: number) => (x.on === 'k' ? x.shift : r + x.shift);
  /** Pushes the product of a list of (row) factors at row r, or 1. */
  const product = (fs: readonly Factor[], r: number) => {
    if (fs.length === 0) f.f32x4(1);
    fs.forEach((x, k) => {
      loadAt(x.node, factorAt(x, r), false);
      if (k > 0) f.simd(SIMD.f32x4Mul);
    });
  };
  /** Pushes the column factor x at column c: static, or cl + shift (through iv, i4) when dyn. */
  const colFactor = (x: Factor, c: number | undefined) => {
    if (c !== undefined) {
      loadAt(x.node, c + x.shift, false);
      return;
    }
    f.get(cl).i32(x.shift).add().tee(i4).i32(16).mul().set(iv);
    f.get(i4).i32(4).mul().set(i4);
    loadAt(x.node, 0, true);
  };
  /** Stores the v128 on the stack as entry (r, c) of the four elements (c = cl when undefined). */
  const store = (r: number, cb: number, c: number | undefined) => {
    f.set(tmp);
    if (vec !== undefined) {
      f.get(vec);
      if (c === undefined) f.get(cl).i32(16).mul().add();
      f.get(tmp).mem(SIMD.store, 16 * (r * s - cb + (c ?? 0)), 4);
      return;
    }
    for (let l = 0; l < 4; l++) {
      f.get(lanes[l]!);
      if (c === undefined) f.get(cl).i32(4).mul().add();
      f.get(tmp).lane(SIMD.store32Lane, 4 * (r * s - cb + (c ?? 0)), l);
    }
  };
  for (let r = 0; r < n; r++) {
    const cb = r - (r % s);
    const gathers: Gather[] = [];
    const deltas: { c: number; co: readonly Factor[] }[] = [];
    for (const t of terms) {
      if (r < t.r0 || r >= t.r1) continue;
      const co = t.f.filter((x) => x.on !== 'c');
      if (t.kind === 'delta') {
        const c = r + t.off;
        if (c >= cb && c < cb + s) deltas.push({ c, co });
        continue;
      }
      if (t.kind !== 'gather') continue;
      const { rows: pr, cols: pc } = matrixLayout(paramSpec(g, t.mm.param));
      const outRows = t.mm.transpose ? pc : pr;
      const inRows = t.mm.transpose ? pr : pc;
      const q = r + t.rowShift;
      const b = Math.floor(q / outRows);
      const i = q - b * outRows;
      const lo = Math.max(t.k0 + t.off, b * inRows + t.off, cb);
      const hi = Math.min(t.k1 + t.off, (b + 1) * inRows + t.off, cb + s);
      if (lo >= hi) continue;
      // W index at column c: b·pr·pc + (c − off − b·inRows)·pc + i (transposed) or … + i·pc + (c − off − b·inRows).
      const w0 = useParam(t.mm.param) + 4 * (b * pr * pc + (t.mm.transpose ? i : i * pc));
      gathers.push({
        lo,
        hi,
        co,
        cf: t.f.filter((x) => x.on === 'c'),
        wOff: w0,
        wStride: 4 * (t.mm.transpose ? pc : 1),
        wShift: -t.off - b * inRows,
      });
    }
    const bounds = [
      ...new Set([cb, cb + s, ...gathers.flatMap((x) => [x.lo, x.hi]), ...deltas.flatMap((d) => [d.c, d.c + 1])]),
    ].sort((a, b) => a - b);
    for (let k = 0; k + 1 < bounds.length; k++) {
      const ca = bounds[k]!;
      const cz = bounds[k + 1]!;
      // Gathers active here, merged by W entry and column factors; deltas at this column.
      const merged = new Map<string, { x: Gather; cos: (readonly Factor[])[] }>();
      for (const x of gathers) {
        if (x.lo > ca || x.hi < cz) continue;
        const key = `${x.wOff}|${x.wStride}|${x.wShift}|${x.cf.map((y) => `${y.node}:${y.shift}`).join(',')}`;
        const hit = merged.get(key);
        if (hit) hit.cos.push(x.co);
        else merged.set(key, { x, cos: [x.co] });
      }
      const ds = deltas.filter((d) => d.c === ca && cz === ca + 1);
      const parts = [...merged.values()];
      // Coefficients of the segment (the same for all its columns).
      parts.forEach((p, q) => {
        p.cos.forEach((co, j) => {
          product(co, r);
          if (j > 0) f.simd(SIMD.f32x4Add);
        });
        f.set(coLocal(q));
      });
      const dl = coLocal(parts.length);
      if (ds.length) {
        ds.forEach((d, j) => {
          product(d.co, r);
          if (j > 0) f.simd(SIMD.f32x4Add);
        });
        f.set(dl);
      }
      /** Pushes the entry's value at column c (cl when undefined). */
      const value = (c: number | undefined) => {
        if (parts.length === 0 && ds.length === 0) {
          f.zero();
          return;
        }
        parts.forEach((p, q) => {
          const { x } = p;
          f.get(coLocal(q));
          if (c === undefined) f.get(cl).i32(x.wShift).add().i32(x.wStride).mul();
          else f.i32(0);
          const imm = x.wOff + (c === undefined ? 0 : x.wStride * (c + x.wShift));
          f.mem(SIMD.load32Splat, imm, 2).simd(SIMD.f32x4Mul);
          for (const y of x.cf) {
            colFactor(y, c);
            f.simd(SIMD.f32x4Mul);
          }
          if (q > 0) f.simd(SIMD.f32x4Add);
        });
        if (ds.length) {
          f.get(dl);
          if (parts.length) f.simd(SIMD.f32x4Add);
        }
      };
      if (cz - ca <= 4) {
        for (let c = ca; c < cz; c++) {
          value(c);
          store(r, cb, c);
        }
      } else {
        f.i32(ca).set(cl);
        f.loop(() => {
          value(undefined);
          store(r, cb, undefined);
          f.get(cl).i32(1).add().tee(cl).i32(cz).op(OP.i32LtS).brIf(0);
        });
      }
    }
  }
}

const BINARY: Record<string, number | undefined> = {
  add: SIMD.f32x4Add,
  sub: SIMD.f32x4Sub,
  mul: SIMD.f32x4Mul,
  div: SIMD.f32x4Div,
  min: SIMD.f32x4Min,
  max: SIMD.f32x4Max,
};

/** Leaves f(input) in local `v`'s place on the stack: the input is on the stack. */
function unary(f: Body, fn: string, v: number): void {
  switch (fn) {
    case 'neg':
      f.simd(SIMD.f32x4Neg);
      return;
    case 'abs':
      f.simd(SIMD.f32x4Abs);
      return;
    case 'sqrt':
      f.simd(SIMD.f32x4Sqrt);
      return;
    case 'square':
      f.tee(v).get(v).simd(SIMD.f32x4Mul);
      return;
    case 'relu':
      // max(v, 0): NaN stays NaN (IEEE max, as the reference), max(−0, 0) = 0.
      f.zero().simd(SIMD.f32x4Max);
      return;
    case 'step':
      // bitselect(v, (v > 0) & 1, v ≠ v): 1, 0, and NaN kept.
      f.set(v);
      f.get(v);
      f.get(v).zero().simd(SIMD.f32x4Gt).f32x4(1).simd(SIMD.and);
      f.get(v).get(v).simd(SIMD.f32x4Ne).simd(SIMD.bitselect);
      return;
    case 'sign':
      // Math.sign: ±1, and 0, −0, NaN kept: bitselect(1, bitselect(−1, v, v < 0), v > 0).
      f.set(v);
      f.f32x4(1).f32x4(-1).get(v).get(v).zero().simd(SIMD.f32x4Lt).simd(SIMD.bitselect);
      f.get(v).zero().simd(SIMD.f32x4Gt).simd(SIMD.bitselect);
      return;
    case 'exp':
      f.set(v);
      emitExp(f, v);
      return;
    case 'sigmoid':
      f.set(v);
      emitSigmoid(f, v);
      return;
    case 'tanh':
      f.set(v);
      emitTanh(f, v);
      return;
    default:
      throw new Unsupported(`wasm: unary ${fn}`);
  }
}

/**
 * out[g] = W·v[g] (or Wᵀ·v[g]) for every group: two groups × RB rows per pass, the W entry of a
 * row broadcast once for both; rows in a loop of full blocks and one static remainder block.
 */
function matvec(
  f: Body,
  g: Graph,
  node: Extract<Graph['nodes'][number], { op: 'matvec' }>,
  x: Loc,
  out: number,
  groupBytes: number,
  wOff: number,
  ctx: { gl: number; sg: number; bases: () => void; NG: number },
): void {
  if (x.kind !== 'mem') throw new Unsupported('wasm: matvec of a param');
  const { blocks, rows, cols } = matrixLayout(paramSpec(g, node.param));
  const inSize = node.transpose ? rows : cols;
  const outSize = node.transpose ? cols : rows;
  // W entry (output o, input j) at wOff + 4·(o·oStride + j·jStride).
  const [oStride, jStride] = node.transpose ? [1, cols] : [cols, 1];
  const { gl, sg, bases, NG } = ctx;
  const px = Array.from({ length: GB }, () => f.local(I32));
  const pj = Array.from({ length: GB }, () => f.local(I32));
  const pw = f.local(I32);
  const pwRow = f.local(I32);
  const po = f.local(I32);
  const end = f.local(I32);
  const rb = f.local(I32);
  const acc = Array.from({ length: GB }, () => Array.from({ length: RB }, () => f.local(V128)));
  const xv = Array.from({ length: GB }, () => f.local(V128));
  const w = f.local(V128);
  // The x pointer of group gl + q: the base local is per group; group gl + 1's is computed.
  const xStride = x.base === sg ? groupBytes : undefined;

  /**
   * One input entry j at the pointers pj, pw. (Written out over j with immediate offsets, the loop
   * ran 2.5× slower: V8 hoisted every broadcast load and spilled them.)
   */
  const entry = (gb: number, nr: number, o0: number) => {
    for (let q = 0; q < gb; q++) f.get(pj[q]!).mem(SIMD.load, 0, 4).set(xv[q]!);
    for (let r = 0; r < nr; r++) {
      f.get(pw)
        .mem(SIMD.load32Splat, 4 * (o0 + r) * oStride, 2)
        .set(w);
      for (let q = 0; q < gb; q++) {
        f.get(acc[q]![r]!).get(xv[q]!).get(w).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Add).set(acc[q]![r]!);
      }
    }
  };
  const block = (gb: number, nr: number, o0: number) => {
    for (let q = 0; q < gb; q++) for (let r = 0; r < nr; r++) f.zero().set(acc[q]![r]!);
    for (let q = 0; q < gb; q++) f.get(px[q]!).set(pj[q]!);
    f.get(pwRow).set(pw);
    f.get(pj[0]!)
      .i32(16 * inSize)
      .add()
      .set(end);
    f.loop(() => {
      entry(gb, nr, o0);
      f.get(pw)
        .i32(4 * jStride)
        .add()
        .set(pw);
      for (let q = 1; q < gb; q++) f.get(pj[q]!).i32(16).add().set(pj[q]!);
      f.get(pj[0]!).i32(16).add().tee(pj[0]!).get(end).op(OP.i32LtS).brIf(0);
    });
    for (let q = 0; q < gb; q++) {
      for (let r = 0; r < nr; r++) {
        f.get(po)
          .get(acc[q]![r]!)
          .mem(SIMD.store, q * groupBytes + 16 * (o0 + r), 4);
      }
    }
  };
  const full = Math.floor(outSize / RB);
  const rem = outSize - full * RB;
  /** All blocks of rows for `gb` groups starting at gl (bases set). */
  const rowsFor = (gb: number) => {
    for (let b = 0; b < blocks; b++) {
      const w0 = wOff + 4 * b * rows * cols;
      f.get(x.base)
        .i32(x.off + 16 * b * inSize)
        .add()
        .set(px[0]!);
      for (let q = 1; q < gb; q++) {
        if (xStride === undefined) throw new Error('wasm kernel: blocked matvec of a vec external');
        f.get(px[0]!)
          .i32(q * xStride)
          .add()
          .set(px[q]!);
      }
      if (full > 0) {
        f.i32(w0).set(pwRow);
        f.get(sg)
          .i32(out + 16 * b * outSize)
          .add()
          .set(po);
        f.i32(0).set(rb);
        f.loop(() => {
          block(gb, RB, 0);
          f.get(pwRow)
            .i32(4 * RB * oStride)
            .add()
            .set(pwRow);
          f.get(po)
            .i32(16 * RB)
            .add()
            .set(po);
          f.get(rb).i32(1).add().tee(rb).i32(full).op(OP.i32LtS).brIf(0);
        });
      }
      if (rem > 0) {
        f.i32(w0).set(pwRow);
        f.get(sg)
          .i32(out + 16 * b * outSize)
          .add()
          .set(po);
        block(gb, rem, full * RB);
      }
    }
  };
  // Groups in pairs (when x is in scratch: a pair's x vectors are one block apart), then the last.
  const pairs = xStride !== undefined;
  f.i32(0).set(gl);
  if (pairs) {
    f.block(() => {
      f.get(NG).i32(GB).op(OP.i32LtS).brIf(0);
      f.loop(() => {
        bases();
        rowsFor(GB);
        f.get(gl).i32(GB).add().tee(gl).i32(GB).add().get(NG).op(OP.i32LeS).brIf(0);
      });
    });
  }
  f.block(() => {
    f.get(gl).get(NG).op(OP.i32GeS).brIf(0);
    f.loop(() => {
      bases();
      rowsFor(1);
      f.get(gl).i32(1).add().tee(gl).get(NG).op(OP.i32LtS).brIf(0);
    });
  });
}
