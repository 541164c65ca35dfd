import type { Graph, MatExpr, NodeId, TypedArray } from '@deerjs/core';
import { type Layout, type ModuleLayout, moduleLayout, type WasmKernelSpec, type WasmKernels } from './wasm/kernel-module.js';
import { jobFromSource, type ThreadPool } from './threads.js';
import { wasmInstance } from './wasm/instance.js';
import { compiledKernels, hoistSpec, isLeaf } from './wasm-seq-plan.js';

/**
 * Float32 runStep on one WebAssembly SIMD module: every (b, t) element is independent, so groups of
 * four consecutive elements are the f32x4 lanes. Kernel `h` (the input-only part, absent when
 * nothing is hoisted) writes the hoisted frontier interleaved by group; kernel `k` reads the
 * program's leaves (state, cotangent: element rows) and that frontier, and writes the outputs and
 * the Jacobian blocks in the tensors' own layout.
 */
export interface WasmStep {
  /** Ids of `k`'s leaf externals (rows), in the order `run` takes their arrays. */
  readonly leaves: readonly NodeId[];
  /** Bytes the hoisted values of E elements take in memory (compare with the cache budget). */
  hoistBytes(E: number): number;
  /**
   * Evaluates E elements: params P (graph.params order, float32), leaf arrays, the input (read by
   * `h`), output arrays, the Jacobian array. `token`, when given, names the input and params: the
   * hoisted values are computed for all E elements and kept while the next call passes the same
   * token (Newton iterations); without one, they are computed a chunk at a time. With `pool`
   * (outputs and Jacobian SharedArrayBuffer-backed), each thread takes a contiguous range of whole
   * groups on its own instance, with its own hoisted values: values identical to one thread's.
   */
  run(
    P: readonly TypedArray[],
    E: number,
    leaves: readonly TypedArray[],
    input: TypedArray | undefined,
    token: object | undefined,
    outs: readonly TypedArray[],
    J: TypedArray | undefined,
    pool?: ThreadPool,
  ): void;
}

/** Bytes of a chunk's working set (its rows in and out, scratch): about L2's share of one core. */
const CHUNK_BYTES = 192 * 1024;

/**
 * The runStep module of a program split by `splitInputOnly` (hoisted nodes, their `frontier`, the
 * rest), or undefined where the generator does not know an op (or a Jacobian term) or the runtime
 * lacks WebAssembly SIMD.
 */
export function wasmStep(
  g: Graph,
  hoisted: readonly NodeId[],
  frontier: readonly NodeId[],
  rest: readonly NodeId[],
  outputs: readonly NodeId[],
  jacobian: { readonly expr: MatExpr; readonly blockSize: number } | undefined,
): WasmStep | undefined {
  const split = stepSpecs(g, hoisted, frontier, rest, outputs, 'rows', jacobian);
  if (!split) return undefined;
  const { specs, leaves, hN } = split;
  const k = compiledKernels(g, specs);
  if (!k) return undefined;
  const size = (id: NodeId) => g.nodes[id]!.size;
  return makeWasmStep(k, {
    leaves,
    leafSizes: leaves.map(size),
    hN,
    m: g.inputSize,
    fSizes: frontier.map(size),
    outSizes: outputs.map(size),
    jSize: jacobian ? g.stateSize * jacobian.blockSize : 0,
  });
}

/**
 * The kernels of a runStep-like module: `h` (hoistSpec) and `k`, which reads the program's leaves
 * (`rows`) and the hoisted frontier (`vec`) and writes `outputs` and the Jacobian in `layout`; its
 * leaves, and how many input leaves `h` reads. Undefined where `h` would read more than the input.
 */
export function stepSpecs(
  g: Graph,
  hoisted: readonly NodeId[],
  frontier: readonly NodeId[],
  rest: readonly NodeId[],
  outputs: readonly NodeId[],
  layout: Layout,
  jacobian: { readonly expr: MatExpr; readonly blockSize: number } | undefined,
): { specs: WasmKernelSpec[]; leaves: NodeId[]; hN: number } | undefined {
  const hLeaves = hoisted.filter((id) => isLeaf(g, id));
  if (hLeaves.some((id) => g.nodes[id]!.op !== 'input')) return undefined;
  const specs = hoistSpec(g, hoisted, frontier);
  const leaves = rest.filter((id) => isLeaf(g, id));
  specs.push({
    name: 'k',
    nodes: rest.filter((id) => !isLeaf(g, id)),
    externals: [
      ...leaves.map((id) => ({ id, layout: 'rows' as const })),
      ...frontier.map((id) => ({ id, layout: 'vec' as const })),
    ],
    stores: outputs.map((id) => ({ id, layout })),
    jacobian,
    jacobianLayout: layout,
  });
  return { specs, leaves, hN: frontier.length ? hLeaves.length : 0 };
}

/** What the element-range runner needs to know of its module besides the bytes. */
interface StepRowsMeta extends ModuleLayout {
  readonly leafSizes: readonly number[];
  readonly hN: number;
  readonly m: number;
  readonly fSizes: readonly number[];
  readonly outSizes: readonly number[];
  readonly jSize: number;
  readonly chunkBytes: number;
}

/** Ids of tokens (threads cannot share objects): the id names the token's hoisted values. */
const tokenIds = new WeakMap<object, number>();
let lastTokenId = 0;

/** Fewest elements per thread: below it a thread's share is not worth waking it for. */
const MIN_PER_THREAD = 4096;

function makeWasmStep(
  k: WasmKernels,
  meta: {
    leaves: readonly NodeId[];
    leafSizes: readonly number[];
    hN: number;
    m: number;
    fSizes: readonly number[];
    outSizes: readonly number[];
    jSize: number;
  },
): WasmStep {
  const rm: StepRowsMeta = {
    ...moduleLayout(k, meta.fSizes.length > 0),
    leafSizes: meta.leafSizes,
    hN: meta.hN,
    m: meta.m,
    fSizes: meta.fSizes,
    outSizes: meta.outSizes,
    jSize: meta.jSize,
    chunkBytes: CHUNK_BYTES,
  };
  // The job's own function is the calling thread's runner (one instance per thread).
  const job = jobFromSource(
    `return (${stepRows.toString()})(new Uint8Array([${k.bytes.join(',')}]), ${JSON.stringify(rm)}, (${wasmInstance.toString()}));`,
  );
  const fTot = meta.fSizes.reduce((a, b) => a + b, 0);
  return {
    leaves: meta.leaves,
    hoistBytes: (E) => Math.ceil(E / 4) * 16 * fTot,
    run(P, E, leaves, input, token, outs, J, pool) {
      let id = 0;
      if (token) {
        id = tokenIds.get(token) ?? ++lastTokenId;
        tokenIds.set(token, id);
      }
      // Whole groups of four elements, a contiguous range per thread.
      const G = Math.ceil(E / 4);
      const parts = pool ? Math.max(1, Math.min(pool.size, Math.floor(E / MIN_PER_THREAD))) : 1;
      const cuts = Array.from({ length: parts + 1 }, (_, i) => Math.min(E, 4 * Math.round((i * G) / parts)));
      const call = (i: number) => [P, cuts[i], cuts[i + 1], E, leaves, input, id, outs, J] as const;
      if (pool && parts > 1) pool.calls(cuts.slice(0, -1).map((e0, i) => (cuts[i + 1]! > e0 ? [[job, call(i)]] : [])));
      else job.fn(...call(0));
    },
  };
}

/**
 * The runner of elements [e0, e1) (e0 a multiple of 4) of E on its own instance of the module:
 * writes their outputs and Jacobian blocks. `id` names the input and params whose hoisted values it
 * keeps for its range (0: none, computed per chunk). Self-contained (no free variables;
 * `instantiate` is wasmInstance): its source runs in worker threads.
 */
function stepRows(bytes: Uint8Array, meta: StepRowsMeta, instantiate: typeof wasmInstance) {
  type Fn = (...args: number[]) => void;
  const inst = instantiate({ bytes, consts: meta.consts, dataEnd: meta.dataEnd });
  const h = inst.exports.h as Fn | undefined;
  const kk = inst.exports.k as Fn;
  const { hBytes, kBytes, leafSizes, hN, m, fSizes, outSizes, jSize } = meta;
  let F = inst.F;
  let fTot = 0;
  for (const f of fSizes) fTot += f;
  const nL = leafSizes.length;
  const nF = fSizes.length;
  const hArgs: number[] = new Array(2 + 3 * (hN + nF)).fill(0);
  const kArgs: number[] = new Array(2 + 3 * (nL + nF + outSizes.length + (jSize ? 1 : 0))).fill(0);
  /** What the cache region holds: token id, E, range. */
  let held = '';

  /** Copies rows [e0, e1) of `src` (`size` per element) to byte offset `at`, zero-padded to `to` rows. */
  const copyIn = (src: TypedArray, size: number, e0: number, e1: number, to: number, at: number) => {
    F.set(src.subarray(e0 * size, e1 * size), at / 4);
    if (to > e1) F.fill(0, at / 4 + (e1 - e0) * size, at / 4 + (to - e0) * size);
  };
  /** Runs `h` on groups [0, ng) whose input rows are at `xin`, writing frontier k at fAt[k] + g·16·size. */
  const hoist = (ng: number, xin: number, fAt: readonly number[], sp: number) => {
    hArgs[0] = ng;
    hArgs[1] = sp;
    let a = 2;
    for (let q = 0; q < hN; q++) {
      hArgs[a++] = xin;
      hArgs[a++] = 16 * m;
      hArgs[a++] = 4 * m;
    }
    for (let q = 0; q < nF; q++) {
      hArgs[a++] = fAt[q]!;
      hArgs[a++] = 16 * fSizes[q]!;
      hArgs[a++] = 0;
    }
    h!(...hArgs);
  };

  return function run(
    P: readonly TypedArray[],
    r0: number,
    r1: number,
    E: number,
    leaves: readonly TypedArray[],
    input: TypedArray | undefined,
    id: number,
    outs: readonly TypedArray[],
    J: TypedArray | undefined,
  ): void {
    for (const p of meta.params) F.set(P[p.index]!.subarray(0, p.size), p.offset / 4);
    const G = Math.ceil((r1 - r0) / 4);
    const cached = h !== undefined && id !== 0;
    // Chunk of C elements (a multiple of 4): its rows in and out, hoisted values, scratch.
    let per = 0;
    for (const sz of leafSizes) per += 4 * sz;
    for (const sz of outSizes) per += 4 * sz;
    per += 4 * jSize + kBytes / 4 + (h ? 4 * m + (cached ? 0 : 4 * fTot + hBytes / 4) : 0);
    const C = Math.max(4, Math.min(4 * G, Math.floor(meta.chunkBytes / per / 4) * 4));
    // Memory: params | hoisted values (all groups when cached) | chunk rows | scratch.
    let at = meta.dataEnd;
    const fAll: number[] = [];
    for (let q = 0; q < nF; q++) {
      fAll.push(at);
      at += 16 * fSizes[q]! * (cached ? G : C / 4);
    }
    const xin = at;
    at += h ? 4 * C * m : 0;
    const take = (sz: number) => {
      at += 4 * C * sz;
      return at - 4 * C * sz;
    };
    const lAt = leafSizes.map(take);
    const oAt = outSizes.map(take);
    const jAt = at;
    at += 4 * C * jSize;
    const hsp = at;
    at += h ? (C / 4) * hBytes : 0;
    const ksp = at;
    at += (C / 4) * kBytes;
    inst.ensure(at); // growing keeps the memory's contents: held values stay valid
    F = inst.F;
    const key = `${id}|${E}|${r0}|${r1}`;
    if (cached && held !== key) {
      held = '';
      for (let e0 = r0; e0 < r1; e0 += C) {
        const e1 = Math.min(r1, e0 + C);
        const ng = Math.ceil((e1 - e0) / 4);
        copyIn(input!, m, e0, e1, e0 + 4 * ng, xin);
        hoist(
          ng,
          xin,
          fAll.map((o, q) => o + ((e0 - r0) / 4) * 16 * fSizes[q]!),
          hsp,
        );
      }
      held = key;
    } else if (!cached) held = '';
    for (let e0 = r0; e0 < r1; e0 += C) {
      const e1 = Math.min(r1, e0 + C);
      const ng = Math.ceil((e1 - e0) / 4);
      const to = e0 + 4 * ng;
      for (let q = 0; q < nL; q++) copyIn(leaves[q]!, leafSizes[q]!, e0, e1, to, lAt[q]!);
      if (h && !cached) {
        if (!input) throw new Error('cpu: the program reads its input but none was given');
        copyIn(input, m, e0, e1, to, xin);
        hoist(ng, xin, fAll, hsp);
      }
      kArgs[0] = ng;
      kArgs[1] = ksp;
      let a = 2;
      for (let q = 0; q < nL; q++) {
        kArgs[a++] = lAt[q]!;
        kArgs[a++] = 16 * leafSizes[q]!;
        kArgs[a++] = 4 * leafSizes[q]!;
      }
      for (let q = 0; q < nF; q++) {
        kArgs[a++] = fAll[q]! + (cached ? ((e0 - r0) / 4) * 16 * fSizes[q]! : 0);
        kArgs[a++] = 16 * fSizes[q]!;
        kArgs[a++] = 0;
      }
      for (let q = 0; q < outSizes.length; q++) {
        kArgs[a++] = oAt[q]!;
        kArgs[a++] = 16 * outSizes[q]!;
        kArgs[a++] = 4 * outSizes[q]!;
      }
      if (jSize) {
        kArgs[a++] = jAt;
        kArgs[a++] = 16 * jSize;
        kArgs[a++] = 4 * jSize;
      }
      kk(...kArgs);
      const len = e1 - e0;
      for (let q = 0; q < outSizes.length; q++) {
        const sz = outSizes[q]!;
        outs[q]!.set(F.subarray(oAt[q]! / 4, oAt[q]! / 4 + len * sz), e0 * sz);
      }
      if (J) J.set(F.subarray(jAt / 4, jAt / 4 + len * jSize), e0 * jSize);
    }
  };
}
