import { describe, expect, it } from 'vitest';
import { BufferPool } from '../src/pool.js';

/** Stand-ins for GPU buffers: the pool only keeps and compares them. */
function fakes() {
  const destroyed: number[] = [];
  let made = 0;
  const allocate = (bytes: number) => ({ id: made++, size: bytes }) as unknown as GPUBuffer;
  const discard = (b: GPUBuffer) => destroyed.push((b as unknown as { id: number }).id);
  return { allocate, discard, destroyed, made: () => made };
}

describe('BufferPool', () => {
  it('keeps a working set larger than its minimum whole, so an iteration reuses every buffer', () => {
    const f = fakes();
    const pool = new BufferPool(f.allocate, 2 ** 30, f.discard, 1024);
    for (let iter = 0; iter < 3; iter++) {
      const held = [4096, 8192, 8192, 65536].map((b) => pool.acquire(b));
      for (const b of held) pool.release(b);
    }
    expect(f.made()).toBe(4);
    expect(f.destroyed).toEqual([]);
    expect(pool.liveBytes).toBe(0);
  });

  it('evicts free buffers of other sizes before growing past the largest working set', () => {
    const f = fakes();
    const pool = new BufferPool(f.allocate, 2 ** 30, f.discard, 1024);
    const a = pool.acquire(65536);
    pool.release(a);
    // A later solve of another size: the free 64 KiB buffer goes rather than being kept beside it.
    const b = pool.acquire(40000);
    expect(f.destroyed).toEqual([0]);
    pool.release(b);
    expect(pool.pooledBytes).toBe(pool.sizeClass(40000));
  });

  it('hands out a released buffer again at once (commands run in recording order)', () => {
    const f = fakes();
    const pool = new BufferPool(f.allocate, 2 ** 30, f.discard);
    const a = pool.acquire(1000);
    pool.release(a);
    expect(pool.acquire(1000)).toBe(a);
  });
});
