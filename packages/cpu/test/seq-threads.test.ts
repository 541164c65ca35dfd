import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Cell, cells, Rng, type Tensor } from '@deerjs/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Kernel } from '../src/compiled/codegen.js';
import { makeSeqPlan, SEQ_PARALLEL_MIN } from '../src/compiled/backend.js';
import { sharedArray, ThreadPool } from '../src/compiled/threads.js';
import { FastCpuBackend } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The backend's pool (private), to see whether one was started. */
const poolOf = (be: FastCpuBackend) => (be as unknown as { pool?: ThreadPool }).pool;

/** Sequential evaluation from a random h0, on `threads` threads; the output and whether it was split by rows. */
async function run(cell: Cell, dtype: 'float32' | 'float64', threads: number, B: number, T: number, seed: number) {
  const r = new Rng(seed);
  const params = cell.init({ seed });
  const x = r.normalArray(B * T * cell.inputSize, 1);
  const h0 = r.normalArray(B * cell.stateSize, 0.5);
  const be = new FastCpuBackend({ threads, dtype });
  // Split by rows: the JavaScript kernels' `rows`, or the WebAssembly runner's job `calls`.
  const rows = vi.spyOn(ThreadPool.prototype, 'rows');
  const calls = vi.spyOn(ThreadPool.prototype, 'calls');
  try {
    const p: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(params)) p[k] = be.tensor(v, [v.length]);
    const y = be.runSequential(cell.stepProgram(), {
      input: be.tensor(x, [B, T, cell.inputSize]),
      y0: be.tensor(h0, [B, cell.stateSize]),
      params: p,
    });
    const out = Float64Array.from(await be.read(y));
    const split = rows.mock.calls.length + calls.mock.calls.length > 0;
    const started = poolOf(be) !== undefined;
    const destroy = vi.spyOn(ThreadPool.prototype, 'destroy');
    be.destroy();
    // destroy() stops the workers and forgets the pool.
    expect(destroy).toHaveBeenCalledTimes(started ? 1 : 0);
    expect(poolOf(be)).toBeUndefined();
    return { out, split, threads: be.threads };
  } finally {
    vi.restoreAllMocks();
  }
}

describe('sequential evaluation split by batch rows', () => {
  afterEach(() => vi.restoreAllMocks());
  // Odd row counts (uneven shares), T just long enough for the problem to be split.
  const CASES: [string, Cell, number][] = [
    ['gru n=16 (hoisted input projection)', cells.gru({ inputSize: 5, hiddenSize: 16 }), 5],
    ['gru lbr0, clipped', cells.gru({ inputSize: 2, hiddenSize: 4, linearBeforeReset: 0, clip: 0.5 }), 7],
    ['multi-head gru', cells.gru({ inputSize: 3, hiddenSize: 8, heads: 4 }), 3],
    ['lstm', cells.lstm({ inputSize: 2, hiddenSize: 5 }), 9],
    ['elman', cells.elman({ inputSize: 2, hiddenSize: 5 }), 5],
    ['mlp', cells.mlp({ stateSize: 4, inputSize: 2, hidden: [6] }), 3],
  ];
  for (const [name, cell, B] of CASES)
    for (const dtype of ['float32', 'float64'] as const) {
      it(`${name}, B=${B}, ${dtype}: 2 threads give one thread's values bit for bit`, async () => {
        const plan = makeSeqPlan(cell.stepProgram(), dtype === 'float32');
        if (name.startsWith('gru n=16')) expect(plan.hoist).toBeDefined();
        const T = Math.ceil((1.05 * SEQ_PARALLEL_MIN) / (B * plan.work));
        const one = await run(cell, dtype, 1, B, T, 5);
        const two = await run(cell, dtype, 2, B, T, 5);
        expect(one.split).toBe(false);
        // Split exactly where a second thread is available.
        expect(two.split).toBe(two.threads > 1);
        expect(two.out.length).toBe(B * T * cell.stateSize);
        expect(two.out.every(Number.isFinite)).toBe(true);
        expect(Array.from(two.out)).toEqual(Array.from(one.out));
      });
    }

  it('runs on the calling thread below the threshold (no pool started)', async () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
    const { out, split } = await run(cell, 'float32', 2, 4, 300, 6);
    expect(split).toBe(false);
    expect(out.length).toBe(4 * 300 * 4);
  });

  it("a worker's error is thrown on the calling thread", () => {
    const pool = new ThreadPool(2);
    try {
      const plan = makeSeqPlan(cells.elman({ inputSize: 1, hiddenSize: 1 }).stepProgram(), false);
      // Runs here; its source, compiled in the worker, throws.
      const bad: Kernel = { ...plan.step, uid: -1, source: "return function kernel() { throw new Error('test: boom'); };" };
      const y = sharedArray(Float64Array, 2 * 3);
      const args = {
        hTile: 1,
        T: 3,
        n: 1,
        m: 0,
        P: [],
        hP: undefined,
        hN: 0,
        x: undefined,
        y0: new Float64Array(2),
        y,
        fSizes: [],
        hasState: true,
        budget: 1024,
      };
      const quiet = vi.spyOn(console, 'error').mockImplementation(() => {});
      expect(() => pool.rows([0, 1, 2], { ...bad, run: () => {} }, [], undefined, undefined, args)).toThrow(
        /worker thread failed/,
      );
      quiet.mockRestore();
    } finally {
      pool.destroy();
    }
  });

  it('a split evaluation does not keep Node alive (no destroy)', () => {
    // Run through the built package, as a user would, in a process of its own.
    const dir = mkdtempSync(join(here, '.seq-exit-'));
    try {
      const file = join(dir, 'exit.mjs');
      writeFileSync(
        file,
        `import { cells, sequential } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
const be = createCpuBackend({ dtype: 'float32', threads: 2 });
const cell = cells.gru({ inputSize: 8, hiddenSize: 8 });
const p = Object.fromEntries(Object.entries(cell.init({ seed: 1 })).map(([k, v]) => [k, be.tensor(v, [v.length])]));
const x = be.tensor(new Float64Array(4 * 2000 * 8).fill(0.5), [4, 2000, 8]);
const r = await sequential(be, cell, p, x);
console.log('done', (await be.read(r.y)).length);
`,
      );
      const out = execFileSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 });
      expect(out).toContain(`done ${4 * 2000 * 8}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
