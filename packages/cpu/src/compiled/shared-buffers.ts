import { allocating, type TypedArray } from '@deerjs/core';
import { sharedArray } from './threads.js';

/** Bytes of disposed plain ArrayBuffers kept for reuse. */
const SPARE_BYTES = 256 * 2 ** 20;
/** A kept buffer serves a request of at least this fraction of its size (so a huge one is not tied up by a small tensor). */
const FIT = 0.5;
/** Kept buffers are let go once the pool has been idle this long (ms). */
const IDLE_MS = 2000;

type Arr = Float64ArrayConstructor | Float32ArrayConstructor;
/** The host's timers (this package is typed without Node's or the DOM's globals). */
const timers = globalThis as unknown as {
  setTimeout(fn: () => void, ms: number): { unref?: () => void } | number;
  clearTimeout(handle: unknown): void;
};

/**
 * Arrays for tensors (SharedArrayBuffer-backed when `shared`), reused after dispose: a fresh buffer
 * costs its page faults every time (about 1.4 ms per 4 MB against 0.4 ms to zero a kept one),
 * and a Newton iteration makes and drops several tensors of the problem's size. Only arrays made
 * here are taken back, so none is shared with anything else.
 *
 * SharedArrayBuffers are all kept, whatever their size: V8 does not count their memory towards
 * starting a collection, so one that is dropped stays allocated until something else makes the
 * garbage collector run (measured: 20 dropped buffers of 100 MB kept 2 GB alive in a loop, and a
 * windowed solve with a 256 MiB buffer cap reached 1.4 GB). Kept, a buffer serves the next request it
 * fits (a view of its first bytes), so a solve's memory stays at its working set. The kept ones are
 * let go once the pool has been idle for IDLE_MS, and on `clear()` (the backend's destroy).
 */
export class SharedBuffers {
  constructor(private readonly shared = true) {}

  /** Plain arrays by type and length (not shared). */
  private readonly spare = new Map<string, TypedArray[]>();
  /** SharedArrayBuffers (shared), smallest first. */
  private sabs: SharedArrayBuffer[] = [];
  private readonly mine = new WeakSet<TypedArray>();
  private bytes = 0;
  private idle: { unref?: () => void } | number | undefined;
  /** After clear() (the backend's destroy): nothing is kept any more. */
  private closed = false;

  /**
   * An array of `size` elements: a copy of `data` when given, else zeroed, or, with `zero` false
   * (the caller writes every element), whatever a reused array held. OutOfMemoryError where a new
   * one cannot be made.
   */
  take(Arr: Arr, size: number, data?: TypedArray, zero = true): TypedArray {
    const kept = this.shared ? this.keptShared(Arr, size) : this.keptPlain(Arr, size);
    let out: TypedArray;
    if (kept) {
      if (data) kept.set(data);
      else if (zero) kept.fill(0);
      out = kept;
    } else if (this.shared) {
      out = sharedArray(Arr, size, data);
    } else {
      out = allocating('cpu', size * Arr.BYTES_PER_ELEMENT, () => new Arr(size));
      if (data) out.set(data);
    }
    this.mine.add(out);
    return out;
  }

  /** Keep `a` for reuse when it was made here (and is no longer read by anyone). */
  give(a: TypedArray): void {
    if (!this.mine.has(a) || this.closed) return;
    this.mine.delete(a);
    if (this.shared) {
      const sab = a.buffer as unknown as SharedArrayBuffer;
      const at = this.sabs.findIndex((s) => s.byteLength >= sab.byteLength);
      this.sabs.splice(at < 0 ? this.sabs.length : at, 0, sab);
      this.letGoWhenIdle();
      return;
    }
    if (this.bytes + a.byteLength > SPARE_BYTES) return;
    const key = `${a.constructor.name}:${a.length}`;
    const list = this.spare.get(key);
    if (list) list.push(a);
    else this.spare.set(key, [a]);
    this.bytes += a.byteLength;
  }

  clear(): void {
    this.closed = true;
    this.spare.clear();
    this.sabs = [];
    this.bytes = 0;
    if (this.idle !== undefined) timers.clearTimeout(this.idle);
    this.idle = undefined;
  }

  /** Kept buffers in bytes (for tests). */
  keptBytes(): number {
    return this.bytes + this.sabs.reduce((s, b) => s + b.byteLength, 0);
  }

  private keptPlain(Arr: Arr, size: number): TypedArray | undefined {
    const kept = this.spare.get(`${Arr.name}:${size}`)?.pop();
    if (kept) this.bytes -= kept.byteLength;
    return kept;
  }

  /** The smallest kept SharedArrayBuffer that holds `size` elements and that the request fills enough of. */
  private keptShared(Arr: Arr, size: number): TypedArray | undefined {
    const bytes = size * Arr.BYTES_PER_ELEMENT;
    const at = this.sabs.findIndex((s) => s.byteLength >= bytes);
    if (at < 0 || this.sabs[at]!.byteLength * FIT > bytes) return undefined;
    const [sab] = this.sabs.splice(at, 1);
    this.letGoWhenIdle();
    return new Arr(sab as unknown as ArrayBuffer, 0, size);
  }

  /** (Re)start the idle clock; its timer never keeps the process alive. */
  private letGoWhenIdle(): void {
    if (this.idle !== undefined) timers.clearTimeout(this.idle);
    this.idle = undefined;
    if (this.sabs.length === 0) return;
    const idle = timers.setTimeout(() => {
      this.sabs = [];
      this.idle = undefined;
    }, IDLE_MS);
    if (typeof idle === 'object') idle.unref?.();
    this.idle = idle;
  }
}
