import type { TypedArray } from '@deerjs/core';
import type { Kernel, KernelFn } from './codegen.js';

/**
 * Worker threads for the fast CPU backend (Node only): generated kernels run over ranges of
 * elements on SharedArrayBuffer-backed tensors. The calling thread takes the first range and then
 * blocks (Atomics.wait) until the workers are done, so the backend's API stays synchronous. Each
 * element's arithmetic does not depend on the split, so results are identical for any thread count.
 */

interface WorkerLike {
  postMessage(message: unknown): void;
  terminate(): unknown;
  unref(): void;
}
interface WorkerThreadsModule {
  Worker: new (code: string, options: { eval: true }) => WorkerLike;
}
type NodeProcess = { getBuiltinModule?(name: string): unknown };

const nodeModule = <T>(name: string): T | undefined => {
  const proc = (globalThis as { process?: NodeProcess }).process;
  try {
    return proc?.getBuiltinModule?.(name) as T | undefined;
  } catch {
    return undefined;
  }
};

/** Cores available to this process (1 outside Node or without SharedArrayBuffer). */
export function availableThreads(): number {
  if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return 1;
  const os = nodeModule<{ availableParallelism?(): number; cpus(): unknown[] }>('node:os');
  if (!os || !nodeModule('node:worker_threads')) return 1;
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/** The tile loop: runs on the calling thread, and its source in the workers. */
export function runTiles(
  k: KernelFn,
  S: readonly Float64Array[],
  e0: number,
  e1: number,
  tile: number,
  P: readonly TypedArray[],
  X: readonly TypedArray[],
  XS: readonly number[],
  O: readonly TypedArray[],
  OS: readonly number[],
  J: TypedArray | undefined,
  jStride: number,
): void {
  const XB = XS.map(() => 0);
  const OB = OS.map(() => 0);
  for (let a = e0; a < e1; a += tile) {
    const Et = Math.min(tile, e1 - a);
    for (let q = 0; q < XB.length; q++) XB[q] = a * XS[q]!;
    for (let q = 0; q < OB.length; q++) OB[q] = a * OS[q]!;
    k(Et, P, X, XB, XS, O, OB, OS, J, a * jStride, S);
  }
}

const WORKER_SOURCE = `'use strict';
const { parentPort } = require('node:worker_threads');
${runTiles.toString()}
const EXP32 = Float64Array.from({ length: 32 }, (_, j) => 2 ** (j / 32));
const EXP2K = Float64Array.from({ length: 2201 }, (_, k) => 2 ** (k - 1100));
const kernels = new Map();
parentPort.on('message', (m) => {
  if (m.kind === 'kernel') {
    const sites = m.sites.map((src) => new Function(src)());
    const run = new Function('MV', 'EXP32', 'EXP2K', m.source)(sites, EXP32, EXP2K);
    const S = m.scratch.map((size) => new Float64Array(m.tile * size));
    if (m.accSize) S.push(new Float64Array(m.accSize));
    kernels.set(m.uid, { run, S, tile: m.tile });
    return;
  }
  const ctl = m.ctl;
  try {
    let k = kernels.get(m.uid);
    if (k.tile < m.tile) {
      k.S = k.S.map((a, i) => (i < k.S.length - (m.accSize ? 1 : 0) ? new Float64Array((a.length / k.tile) * m.tile) : a));
      k.tile = m.tile;
    }
    runTiles(k.run, k.S, m.e0, m.e1, m.tile, m.P, m.X, m.XS, m.O, m.OS, m.J, m.jStride);
  } catch (err) {
    Atomics.store(ctl, 1, 1);
    console.error('deerjs cpu worker:', err);
  } finally {
    Atomics.add(ctl, 0, 1);
    Atomics.notify(ctl, 0);
  }
});
`;

/** A pool of size − 1 workers (the calling thread is the size-th). */
export class ThreadPool {
  private readonly workers: WorkerLike[] = [];
  private readonly known: Set<number>[] = [];
  private readonly ctl = new Int32Array(new SharedArrayBuffer(8));

  constructor(readonly size: number) {
    const wt = nodeModule<WorkerThreadsModule>('node:worker_threads');
    if (!wt) throw new Error('cpu: worker threads are not available here');
    for (let i = 1; i < size; i++) {
      const w = new wt.Worker(WORKER_SOURCE, { eval: true });
      // Never keep the process alive for the pool.
      w.unref();
      this.workers.push(w);
      this.known.push(new Set());
    }
  }

  /**
   * Run `kernel` over elements [0, E) in tiles, split in tile-aligned ranges over the threads.
   * X, O and J must be SharedArrayBuffer-backed where workers write or should read without a copy
   * (P is small and copied).
   */
  run(
    kernel: Kernel,
    S: readonly Float64Array[],
    E: number,
    tile: number,
    P: readonly TypedArray[],
    X: readonly TypedArray[],
    XS: readonly number[],
    O: readonly TypedArray[],
    OS: readonly number[],
    J: TypedArray | undefined,
    jStride: number,
  ): void {
    const per = Math.ceil(E / this.size / tile) * tile;
    const ctl = this.ctl;
    Atomics.store(ctl, 0, 0);
    Atomics.store(ctl, 1, 0);
    let posted = 0;
    this.workers.forEach((w, i) => {
      const e0 = (i + 1) * per;
      if (e0 >= E) return;
      if (!this.known[i]!.has(kernel.uid)) {
        w.postMessage({
          kind: 'kernel',
          uid: kernel.uid,
          source: kernel.source,
          sites: kernel.siteSources,
          scratch: kernel.scratch.map((x) => x.size),
          accSize: kernel.accSize,
          tile,
        });
        this.known[i]!.add(kernel.uid);
      }
      w.postMessage({
        kind: 'tiles',
        uid: kernel.uid,
        e0,
        e1: Math.min(E, e0 + per),
        tile,
        accSize: kernel.accSize,
        P,
        X,
        XS,
        O,
        OS,
        J,
        jStride,
        ctl,
      });
      posted++;
    });
    try {
      runTiles(kernel.run, S, 0, Math.min(E, per), tile, P, X, XS, O, OS, J, jStride);
    } finally {
      for (let v = Atomics.load(ctl, 0); v < posted; v = Atomics.load(ctl, 0)) Atomics.wait(ctl, 0, v);
    }
    if (Atomics.load(ctl, 1)) throw new Error('cpu: a worker thread failed (its error is on stderr)');
  }

  destroy(): void {
    for (const w of this.workers) w.terminate();
    this.workers.length = 0;
  }
}

/** A typed array of the same kind on a SharedArrayBuffer, holding a copy of `data` when given. */
export function sharedArray(
  Arr: Float64ArrayConstructor | Float32ArrayConstructor,
  size: number,
  data?: TypedArray,
): TypedArray {
  const out = new Arr(new SharedArrayBuffer(size * Arr.BYTES_PER_ELEMENT) as unknown as ArrayBuffer);
  if (data) out.set(data);
  return out;
}

export const isShared = (a: TypedArray) => a.buffer instanceof SharedArrayBuffer;
