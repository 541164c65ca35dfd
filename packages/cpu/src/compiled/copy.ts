import type { TypedArray } from '@deerjs/core';
import { type Call, jobFromFunction, type ThreadPool } from './threads.js';

/** Fewest elements a copy is split over threads for (below, one memcpy is as fast). */
export const COPY_PARALLEL_MIN = 1 << 18;

/** One piece of a copy: `len` elements from src[from] to dst[to]. */
export type CopySegment = readonly [from: number, to: number, len: number];

const copyRange = (src: TypedArray, dst: TypedArray, from: number, to: number, len: number) => {
  dst.set(src.subarray(from, from + len), to);
};
let job: ReturnType<typeof jobFromFunction> | undefined;

/**
 * The segments copied from src to dst: with a pool (src and dst shared), over its threads in pieces
 * of equal length — a copy this large is bound by one core's share of memory bandwidth, and on a
 * long single row (B = 1) it is the only part of DEER's composed step no thread shares.
 */
export function copySegments(
  pool: ThreadPool | undefined,
  src: TypedArray,
  dst: TypedArray,
  segments: readonly CopySegment[],
): void {
  if (!pool) {
    for (const [from, to, len] of segments) copyRange(src, dst, from, to, len);
    return;
  }
  job ??= jobFromFunction(copyRange);
  const total = segments.reduce((k, s) => k + s[2], 0);
  const P = pool.size;
  const per = Math.ceil(total / P);
  const work: Call[][] = Array.from({ length: P }, () => []);
  let thread = 0;
  let room = per;
  for (const [from, to, len] of segments) {
    for (let done = 0; done < len; ) {
      const k = Math.min(len - done, room);
      work[thread]!.push([job, [src, dst, from + done, to + done, k]]);
      done += k;
      room -= k;
      if (room === 0 && thread < P - 1) {
        thread++;
        room = per;
      }
    }
  }
  pool.calls(work);
}
