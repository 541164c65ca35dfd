import { allocating, type TypedArray } from '@deerjs/core';
import { sharedArray } from './threads.js';

/** Bytes of disposed buffers kept for reuse. */
const SPARE_BYTES = 256 * 2 ** 20;

/**
 * Arrays for tensors (SharedArrayBuffer-backed when `shared`), reused after dispose: a fresh buffer
 * costs its page faults every time (about 1.4 ms per 4 MB against 0.4 ms to zero a kept one),
 * and a Newton iteration makes and drops several tensors of the problem's size. Only arrays made
 * here are taken back, so none is shared with anything else.
 */
export class SharedBuffers {
  constructor(private readonly shared = true) {}

  private readonly spare = new Map<string, TypedArray[]>();
  private readonly mine = new WeakSet<TypedArray>();
  private bytes = 0;

  /**
   * An array of `size` elements: a copy of `data` when given, else zeroed, or, with `zero` false
   * (the caller writes every element), whatever a reused array held. OutOfMemoryError where a new
   * one cannot be made.
   */
  take(
    Arr: Float64ArrayConstructor | Float32ArrayConstructor,
    size: number,
    data?: TypedArray,
    zero = true,
  ): TypedArray {
    const list = this.spare.get(`${Arr.name}:${size}`);
    const kept = list?.pop();
    let out: TypedArray;
    if (kept) {
      this.bytes -= kept.byteLength;
      if (data) kept.set(data);
      else if (zero) kept.fill(0);
      out = kept;
    } else {
      out = this.shared
        ? sharedArray(Arr, size, data)
        : allocating('cpu', size * Arr.BYTES_PER_ELEMENT, () => new Arr(size));
      if (data && !this.shared) out.set(data);
    }
    this.mine.add(out);
    return out;
  }

  /** Keep `a` for reuse when it was made here (and is no longer read by anyone). */
  give(a: TypedArray): void {
    if (!this.mine.has(a) || this.bytes + a.byteLength > SPARE_BYTES) return;
    this.mine.delete(a);
    const key = `${a.constructor.name}:${a.length}`;
    const list = this.spare.get(key);
    if (list) list.push(a);
    else this.spare.set(key, [a]);
    this.bytes += a.byteLength;
  }

  clear(): void {
    this.spare.clear();
    this.bytes = 0;
  }
}
