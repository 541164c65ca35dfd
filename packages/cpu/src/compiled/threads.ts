import { allocating, REFUSED_MEMORY, type TypedArray } from '@deerjs/core';
import type { Kernel, KernelFn } from './codegen.js';
import { runRows } from './seq-rows.js';

/**
 * Worker threads for the fast CPU backend (Node only): generated kernels run over ranges of
 * elements, sequential evaluation over ranges of batch rows, and jobs (the time-chunked scan's passes, the Newton update's reduction) over ranges
 * of time, on SharedArrayBuffer-backed tensors. The calling thread takes the first share and then
 * blocks (Atomics.wait) until the workers are done, so the backend's API stays synchronous.
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
${runRows.toString()}
const EXP32 = Float64Array.from({ length: 32 }, (_, j) => 2 ** (j / 32));
const EXP2K = Float64Array.from({ length: 2201 }, (_, k) => 2 ** (k - 1100));
const kernels = new Map();
const jobs = new Map();
// A compiled kernel with scratch for tiles of at least tile elements.
const kernelFor = (uid, tile, accSize) => {
  const k = kernels.get(uid);
  if (k.tile < tile) {
    k.S = k.S.map((a, i) => (i < k.S.length - (accSize ? 1 : 0) ? new Float64Array((a.length / k.tile) * tile) : a));
    k.tile = tile;
  }
  return k;
};
parentPort.on('message', (m) => {
  if (m.kind === 'forget') {
    for (const uid of m.kernels) kernels.delete(uid);
    for (const uid of m.jobs) jobs.delete(uid);
    return;
  }
  if (m.kind === 'job') {
    jobs.set(m.uid, new Function(m.source)());
    return;
  }
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
    if (m.kind === 'count') {
      m.out[m.i] = kernels.size + jobs.size;
      return;
    }
    if (m.kind === 'calls') {
      for (const [uid, args] of m.calls) jobs.get(uid)(...args);
      return;
    }
    if (m.kind === 'rows') {
      const s = kernelFor(m.step, m.stepTile, 0);
      const h = m.hoist === undefined ? undefined : kernelFor(m.hoist, m.hTile, 0);
      runRows(s.run, s.S, h?.run, h?.S, m.hTile, m.b0, m.b1, m.T, m.n, m.m, m.P, m.hP, m.hN, m.x, m.y0, m.y, m.fSizes, m.hasState, m.budget);
      return;
    }
    const k = kernelFor(m.uid, m.tile, m.accSize);
    runTiles(k.run, k.S, m.e0, m.e1, m.tile, m.P, m.X, m.XS, m.O, m.OS, m.J, m.jStride);
  } catch (err) {
    // 2: memory refused (the calling thread raises it as such), 1: anything else.
    Atomics.store(ctl, 1, err instanceof RangeError && ${REFUSED_MEMORY}.test(err.message) ? 2 : 1);
    console.error('deerjs cpu worker:', err);
  } finally {
    Atomics.add(ctl, 0, 1);
    Atomics.notify(ctl, 0);
  }
});
`;

/**
 * A function the workers can run as well as the calling thread: `source` is a function body that
 * returns it (compiled once per worker), `fn` the same function here.
 */
export interface Job {
  readonly uid: number;
  readonly source: string;
  // biome-ignore lint/suspicious/noExplicitAny: arguments are whatever the job's source takes
  readonly fn: (...args: any[]) => void;
}

/** One call of a job: the job and its arguments. */
export type Call = readonly [Job, readonly unknown[]];

let jobUid = 0;

/** A job from the body of a function that returns it (generated code). */
export function jobFromSource(source: string): Job {
  return { uid: ++jobUid, source, fn: new Function(source)() };
}

/** A job from a self-contained function: it may not read anything outside its own body. */
// biome-ignore lint/suspicious/noExplicitAny: as above
export function jobFromFunction(fn: (...args: any[]) => void): Job {
  return { uid: ++jobUid, source: `return ${fn.toString()}`, fn };
}

/** What `runRows` takes besides the kernels, their scratch and the row range. */
export interface SeqRowsArgs {
  readonly hTile: number;
  readonly T: number;
  readonly n: number;
  readonly m: number;
  readonly P: readonly TypedArray[];
  readonly hP: readonly TypedArray[] | undefined;
  readonly hN: number;
  readonly x: TypedArray | undefined;
  readonly y0: TypedArray;
  readonly y: TypedArray;
  readonly fSizes: readonly number[];
  readonly hasState: boolean;
  readonly budget: number;
}

/**
 * Most kernels and jobs one worker holds compiled at once. A worker keeps what it was sent (a
 * kernel's scratch, a job's WebAssembly instance with its memory and kept hoisted values) until the
 * pool tells it to forget: when the object it was compiled from is collected here (the plans that
 * hold it live as long as their graph), or, past this many, the least recently used one, which is
 * sent again if it is used again. A DEER solve with its gradient uses about a dozen.
 */
export const WORKER_ENTRIES = 64;

/** What a worker holds: 'k' + a kernel's uid, 'j' + a job's. */
type EntryKey = `${'k' | 'j'}${number}`;

/** A pool of size − 1 workers (the calling thread is the size-th). */
export class ThreadPool {
  private readonly workers: WorkerLike[] = [];
  /** Per worker, the entries it holds, least recently used first. */
  private readonly held: Map<EntryKey, true>[] = [];
  private readonly ctl = new Int32Array(new SharedArrayBuffer(8));
  /** Tells the workers to forget an entry once the kernel or job it was made from is collected. */
  private readonly collected =
    typeof FinalizationRegistry === 'function'
      ? new FinalizationRegistry<EntryKey>((key) => this.forgetEverywhere(key))
      : undefined;
  private readonly registered = new WeakSet<object>();

  /** `maxEntries`: kernels and jobs one worker holds at once (WORKER_ENTRIES; tests lower it). */
  constructor(
    readonly size: number,
    private readonly maxEntries = WORKER_ENTRIES,
  ) {
    const wt = nodeModule<WorkerThreadsModule>('node:worker_threads');
    if (!wt) throw new Error('cpu: worker threads are not available here');
    for (let i = 1; i < size; i++) {
      const w = new wt.Worker(WORKER_SOURCE, { eval: true });
      // Never keep the process alive for the pool.
      w.unref();
      this.workers.push(w);
      this.held.push(new Map());
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
    this.dispatch(
      (w, i, ctl) => {
        const e0 = (i + 1) * per;
        if (e0 >= E) return false;
        this.compile(w, i, kernel, tile, new Set([`k${kernel.uid}` as const]));
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
        return true;
      },
      () => runTiles(kernel.run, S, 0, Math.min(E, per), tile, P, X, XS, O, OS, J, jStride),
    );
  }

  /** Sends worker i the kernel's sources (once; it compiles them with scratch for `tile` elements). */
  private compile(w: WorkerLike, i: number, kernel: Kernel, tile: number, using: ReadonlySet<EntryKey>): void {
    this.hold(i, `k${kernel.uid}`, kernel, using, () =>
      w.postMessage({
        kind: 'kernel',
        uid: kernel.uid,
        source: kernel.source,
        sites: kernel.siteSources,
        scratch: kernel.scratch.map((x) => x.size),
        accSize: kernel.accSize,
        tile,
      }),
    );
  }

  /**
   * Marks `key` as used now by worker i, sending it (`send`) where the worker does not hold it.
   * Past maxEntries the worker is first told to forget its least recently used entries, none of
   * `using` (what this dispatch reads: a dispatch reading more than maxEntries holds them all until
   * the next one); messages keep their order, so the forget arrives before what follows it.
   */
  private hold(i: number, key: EntryKey, owner: object, using: ReadonlySet<EntryKey>, send: () => void): void {
    const held = this.held[i]!;
    const had = held.delete(key);
    held.set(key, true);
    const drop: EntryKey[] = [];
    for (const old of held.keys()) {
      if (held.size - drop.length <= this.maxEntries) break;
      if (!using.has(old)) drop.push(old);
    }
    for (const old of drop) held.delete(old);
    if (drop.length) this.workers[i]!.postMessage(forgetMessage(drop));
    if (had) return;
    send();
    if (!this.registered.has(owner)) {
      this.registered.add(owner);
      this.collected?.register(owner, key);
    }
  }

  /** The kernel or job of `key` was collected: no call can name it again. */
  private forgetEverywhere(key: EntryKey): void {
    this.workers.forEach((w, i) => {
      if (this.held[i]!.delete(key)) w.postMessage(forgetMessage([key]));
    });
  }

  /** How many kernels and jobs each worker holds compiled (asked of the workers themselves). */
  entries(): number[] {
    const out = new Int32Array(new SharedArrayBuffer(4 * Math.max(1, this.workers.length)));
    this.dispatch(
      (w, i, ctl) => {
        w.postMessage({ kind: 'count', out, i, ctl });
        return true;
      },
      () => {},
    );
    return Array.from(out.subarray(0, this.workers.length));
  }

  /**
   * Sequential evaluation (`runRows`) split by batch rows: thread i runs the whole time loop for
   * rows [rows[i], rows[i + 1]) (thread 0 is the calling one, with the scratch `S` and `hS`; empty
   * ranges are skipped). y must be SharedArrayBuffer-backed, and x should be (others are copied).
   */
  rows(
    rows: readonly number[],
    step: Kernel,
    S: readonly Float64Array[],
    hoist: Kernel | undefined,
    hS: readonly Float64Array[] | undefined,
    a: SeqRowsArgs,
  ): void {
    this.dispatch(
      (w, i, ctl) => {
        const [b0, b1] = [rows[i + 1], rows[i + 2]];
        if (b0 === undefined || b1 === undefined || b1 <= b0) return false;
        const using = new Set<EntryKey>([`k${step.uid}`, ...(hoist ? [`k${hoist.uid}` as const] : [])]);
        this.compile(w, i, step, b1 - b0, using);
        if (hoist) this.compile(w, i, hoist, a.hTile, using);
        w.postMessage({
          kind: 'rows',
          step: step.uid,
          stepTile: b1 - b0,
          hoist: hoist?.uid,
          b0,
          b1,
          ...a,
          ctl,
        });
        return true;
      },
      () => {
        const [b0, b1] = [rows[0]!, rows[1]!];
        if (b1 <= b0) return;
        const { hTile, T, n, m, P, hP, hN, x, y0, y, fSizes, hasState, budget } = a;
        runRows(step.run, S, hoist?.run, hS, hTile, b0, b1, T, n, m, P, hP, hN, x, y0, y, fSizes, hasState, budget);
      },
    );
  }

  /**
   * Thread i makes the calls `work[i]` in order (thread 0 is the calling one); returns when every
   * thread is done. Arrays the workers write must be SharedArrayBuffer-backed; others are copied.
   */
  calls(work: readonly (readonly Call[])[]): void {
    this.dispatch(
      (w, i, ctl) => {
        const mine = work[i + 1];
        if (!mine || mine.length === 0) return false;
        const using = new Set(mine.map(([job]) => `j${job.uid}` as const));
        for (const [job] of mine)
          this.hold(i, `j${job.uid}`, job, using, () => w.postMessage({ kind: 'job', uid: job.uid, source: job.source }));
        w.postMessage({ kind: 'calls', calls: mine.map(([job, args]) => [job.uid, args]), ctl });
        return true;
      },
      () => {
        // Calls meant for workers this pool does not have run here too.
        for (let i = 0; i < work.length; i++)
          if (i === 0 || i > this.workers.length) for (const [job, args] of work[i]!) job.fn(...args);
      },
    );
  }

  /** Post to each worker (`post` says whether it did), run `local` here, then wait for them. */
  private dispatch(post: (w: WorkerLike, i: number, ctl: Int32Array) => boolean, local: () => void): void {
    const ctl = this.ctl;
    Atomics.store(ctl, 0, 0);
    Atomics.store(ctl, 1, 0);
    let posted = 0;
    this.workers.forEach((w, i) => {
      if (post(w, i, ctl)) posted++;
    });
    try {
      local();
    } finally {
      for (let v = Atomics.load(ctl, 0); v < posted; v = Atomics.load(ctl, 0)) Atomics.wait(ctl, 0, v);
    }
    const failed = Atomics.load(ctl, 1);
    if (failed === 2) throw new RangeError('cpu: a worker thread ran out of memory (its error is on stderr)');
    if (failed) throw new Error('cpu: a worker thread failed (its error is on stderr)');
  }

  destroy(): void {
    for (const w of this.workers) w.terminate();
    this.workers.length = 0;
    this.held.length = 0;
  }
}

/** The message telling a worker to drop entries. */
const forgetMessage = (keys: readonly EntryKey[]) => ({
  kind: 'forget',
  kernels: keys.filter((k) => k[0] === 'k').map((k) => Number(k.slice(1))),
  jobs: keys.filter((k) => k[0] === 'j').map((k) => Number(k.slice(1))),
});

/**
 * A typed array of the same kind on a SharedArrayBuffer, holding a copy of `data` when given
 * (OutOfMemoryError where it cannot be made).
 */
export function sharedArray(
  Arr: Float64ArrayConstructor | Float32ArrayConstructor,
  size: number,
  data?: TypedArray,
): TypedArray {
  const bytes = size * Arr.BYTES_PER_ELEMENT;
  const out = allocating('cpu', bytes, () => new Arr(new SharedArrayBuffer(bytes) as unknown as ArrayBuffer));
  if (data) out.set(data);
  return out;
}

/** Whether a typed array lives on a SharedArrayBuffer (never, where there is none: browsers without cross-origin isolation). */
export const isShared = (a: TypedArray) =>
  typeof SharedArrayBuffer !== 'undefined' && a.buffer instanceof SharedArrayBuffer;
