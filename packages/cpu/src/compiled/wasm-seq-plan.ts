import type { Graph, NodeId } from '@deerjs/core';
import type { Job } from './threads.js';
import { Unsupported } from './unsupported.js';
import { moduleLayout, type WasmKernelSpec, type WasmKernels, wasmKernels } from './wasm/kernel-module.js';
import { type WasmSeqMeta, wasmSeqSource } from './wasm/seq-site.js';

export const isLeaf = (g: Graph, id: NodeId) => {
  const op = g.nodes[id]!.op;
  return op === 'state' || op === 'input' || op === 'cotangent';
};

/**
 * The kernel `h` of a program's hoisted input-only nodes: its input leaves (`rows`) in, the
 * frontier out interleaved by group (`vec`); none when nothing is hoisted.
 */
export function hoistSpec(g: Graph, hoisted: readonly NodeId[], frontier: readonly NodeId[]): WasmKernelSpec[] {
  if (!frontier.length) return [];
  return [
    {
      name: 'h',
      nodes: hoisted.filter((id) => !isLeaf(g, id)),
      externals: hoisted.filter((id) => isLeaf(g, id)).map((id) => ({ id, layout: 'rows' as const })),
      stores: frontier.map((id) => ({ id, layout: 'vec' as const })),
    },
  ];
}

/** Whether this runtime compiles `bytes` (WebAssembly with SIMD); false where there is none. */
export function wasmCompiles(bytes: Uint8Array): boolean {
  const WA = (globalThis as { WebAssembly?: { validate(b: Uint8Array): boolean } }).WebAssembly;
  try {
    return WA?.validate(bytes) === true;
  } catch {
    return false;
  }
}

/** `wasmKernels`, or undefined where the generator does not know an op or the runtime cannot compile it. */
export function compiledKernels(
  g: Graph,
  specs: readonly WasmKernelSpec[],
  extra?: Parameters<typeof wasmKernels>[2],
): WasmKernels | undefined {
  let k: WasmKernels;
  try {
    k = wasmKernels(g, specs, extra);
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
  return wasmCompiles(k.bytes) ? k : undefined;
}

/**
 * The float32 sequential loop of a program split by `splitInputOnly` (hoisted input-only nodes,
 * their `frontier`, the state-dependent `stepNodes`) as one WebAssembly SIMD module — the hoisted
 * kernel `h` (input rows in, frontier interleaved out) and the step kernel `s` (state rows and
 * frontier in, f rows out) — wrapped in a job (wasm/seq-site.ts). Undefined where the generator
 * does not know an op or the runtime lacks WebAssembly SIMD.
 */
export function wasmSeqJob(
  g: Graph,
  hoisted: readonly NodeId[],
  frontier: readonly NodeId[],
  stepNodes: readonly NodeId[],
  stateLeaf: NodeId | undefined,
  f: NodeId,
  job: (source: string) => Job,
): Job | undefined {
  const specs = hoistSpec(g, hoisted, frontier);
  const hLeaves = hoisted.filter((id) => isLeaf(g, id));
  specs.push({
    name: 's',
    nodes: stepNodes.filter((id) => id !== stateLeaf),
    externals: [
      ...(stateLeaf === undefined ? [] : [{ id: stateLeaf, layout: 'rows' as const }]),
      ...frontier.map((id) => ({ id, layout: 'vec' as const })),
    ],
    stores: [{ id: f, layout: 'rows' }],
  });
  const k = compiledKernels(g, specs);
  if (!k) return undefined;
  const meta: WasmSeqMeta = {
    ...moduleLayout(k, frontier.length > 0),
    hN: frontier.length ? hLeaves.length : 0,
    fSizes: frontier.map((id) => g.nodes[id]!.size),
    n: g.stateSize,
    m: g.inputSize,
    hasState: stateLeaf !== undefined,
  };
  return job(wasmSeqSource(k.bytes, meta));
}
