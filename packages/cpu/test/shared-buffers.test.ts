import { afterEach, describe, expect, it, vi } from 'vitest';
import { SharedBuffers } from '../src/compiled/shared-buffers.js';

describe('the cpu backend’s buffer pool', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('keeps every SharedArrayBuffer it is given back (V8 does not collect them on its own) and serves requests that fill at least half of one', () => {
    const pool = new SharedBuffers(true);
    const big = pool.take(Float64Array, 1000);
    expect(big.buffer).toBeInstanceOf(SharedArrayBuffer);
    pool.give(big);
    pool.give(pool.take(Float32Array, 10));
    expect(pool.keptBytes()).toBe(8000 + 40);
    // 1200 float32 = 4800 bytes: the 8000-byte buffer, as a view of its first bytes, zeroed.
    big.fill(7);
    const again = pool.take(Float32Array, 1200);
    expect(again.buffer).toBe(big.buffer);
    expect([again.length, again.byteOffset, Math.max(...again)]).toEqual([1200, 0, 0]);
    // 100 float64 = 800 bytes: too small for what is left (the 40-byte one too small to hold it).
    const small = pool.take(Float64Array, 100);
    expect(small.buffer).not.toBe(big.buffer);
    pool.give(again);
    pool.give(again); // once only
    expect(pool.keptBytes()).toBe(8000 + 40);
    // An array the pool did not make is not taken.
    pool.give(new Float64Array(new SharedArrayBuffer(64)));
    expect(pool.keptBytes()).toBe(8000 + 40);
    pool.clear();
    expect(pool.keptBytes()).toBe(0);
    // After clear() (the backend's destroy) a tensor disposed late is not kept.
    pool.give(small);
    expect(pool.keptBytes()).toBe(0);
  });

  it('lets its SharedArrayBuffers go once it has been idle for a while', () => {
    vi.useFakeTimers();
    const pool = new SharedBuffers(true);
    pool.give(pool.take(Float64Array, 500));
    vi.advanceTimersByTime(1000);
    pool.give(pool.take(Float64Array, 500)); // in use again: the clock restarts
    vi.advanceTimersByTime(1500);
    expect(pool.keptBytes()).toBe(4000);
    vi.advanceTimersByTime(1000);
    expect(pool.keptBytes()).toBe(0);
  });

  it('keeps plain arrays up to its byte cap, by exact type and length', () => {
    const pool = new SharedBuffers(false);
    const a = pool.take(Float64Array, 100);
    expect(a.buffer).toBeInstanceOf(ArrayBuffer);
    pool.give(a);
    expect(pool.take(Float32Array, 100)).not.toBe(a);
    expect(pool.take(Float64Array, 100)).toBe(a);
  });
});
