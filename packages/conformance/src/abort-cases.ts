import {
  cells,
  type DeerGradients,
  deer,
  deerWithGrad,
  defineCell,
  dopri5,
  type IvpGradients,
  lang,
  rk4,
  sequential,
  solveIvp,
  solveIvpWithGrad,
  type Tensor,
  UnsupportedOptionError,
} from '@deerjs/core';
import { expect } from 'vitest';
import type { SuiteContext } from './context.js';
import { maxAbsDiff, sequenceData } from './fixtures.js';

/** The reason every case aborts with: the solve must reject with this very object. */
class Stop extends Error {
  override readonly name = 'Stop';
}

const oscillator = () =>
  defineCell({ name: 'oscillator', state: 2, input: 0, params: {} }, (y) =>
    lang.concat(lang.slice(y, 1, 1), lang.neg(lang.slice(y, 0, 1))),
  );

/** A GRU with its weights scaled ×3: contractive, but Newton needs ~10 iterations (deer-study). */
function slowGru(seed: number) {
  const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
  const params = cell.init({ seed });
  for (const k of Object.keys(params)) params[k] = params[k]!.map((v) => 3 * v);
  return { cell, params };
}

/** A GRU n = 4 (input 3) with seeded data and its x on the backend under test (the caller disposes x). */
function gruOn(ctx: SuiteContext, seed: number, B: number, T: number) {
  const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
  const data = sequenceData(seed, B, T, cell, ctx.dtype);
  return { cell, data, x: ctx.backend().tensor(data.x, [B, T, 3], ctx.dtype) };
}

/** Every tensor a backward pass returned. */
function gradientTensors(g: DeerGradients | IvpGradients): Tensor[] {
  const own = 'h0' in g ? [g.x, g.h0] : [g.y0, ...(g.x ? [g.x] : [])];
  return [...Object.values(g.params), ...own];
}

/** `signal` on every solver: checked before any work, during Newton, and between tasks. */
export function defineAbortCases(ctx: SuiteContext): void {
  ctx.test('abort/already-aborted', async () => {
    const backend = ctx.backend();
    const reason = new Stop('cancelled before the start');
    const controller = new AbortController();
    controller.abort(reason);
    const signal = controller.signal;
    const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
    const data = sequenceData(1, 2, 20, cell, ctx.dtype);
    const x = backend.tensor(data.x, [2, 20, 3], ctx.dtype);
    const field = oscillator();
    const problem = { y0: [1, 0], t: [0, 0.5, 1] };
    try {
      const calls: [string, () => Promise<unknown>][] = [
        ['deer', () => deer(backend, cell, data.params, x, { signal })],
        ['deer (auto)', () => deer(backend, cell, data.params, x, { signal, method: 'auto' })],
        ['deerWithGrad', () => deerWithGrad(backend, cell, data.params, x, { signal })],
        ['sequential', () => sequential(backend, cell, data.params, x, { signal })],
        ['solveIvp', () => solveIvp(backend, field, {}, problem, { signal })],
        ['solveIvpWithGrad', () => solveIvpWithGrad(backend, field, {}, problem, { signal })],
        ['rk4', () => rk4(backend, field, {}, problem, { signal })],
        ['dopri5', () => dopri5(backend, field, {}, problem, { signal })],
      ];
      for (const [what, call] of calls) await expect(call(), what).rejects.toBe(reason);
    } finally {
      backend.dispose(x);
    }
  });

  ctx.test('abort/at-every-check-frees-everything', async () => {
    // A signal that reads aborted from its k-th look on, for every k up to the solve's last check:
    // each abort rejects with its reason and leaves no tensor behind (parallel shooting's residual
    // check had leaked the merged trajectory).
    const backend = ctx.backend();
    const { cell, data, x } = gruOn(ctx, 11, 2, 200);
    const abortingAt = (k: number, reason: Stop) => {
      let looks = 0;
      return {
        get aborted() {
          return ++looks >= k;
        },
        reason,
        throwIfAborted() {
          if (++looks >= k) throw reason;
        },
        addEventListener() {},
        removeEventListener() {},
      };
    };
    try {
      for (const method of ['deer', 'elk', 'shoot'] as const) {
        let finished = false;
        for (let k = 1; k <= 200 && !finished; k++) {
          const before = backend.liveTensors();
          const reason = new Stop(`${method}, look ${k}`);
          const outcome = await deer(backend, cell, data.params, x, { method, signal: abortingAt(k, reason) as unknown as AbortSignal }).then(
            (r) => {
              backend.dispose(r.y);
              return 'resolved';
            },
            (e: unknown) => e,
          );
          if (outcome === 'resolved') finished = true;
          else expect(outcome, `${method}, aborted at look ${k}`).toBe(reason);
          expect(backend.liveTensors(), `${method}, aborted at look ${k}`).toBe(before);
        }
        expect(finished, `${method} finished within 200 looks`).toBe(true);
      }
    } finally {
      backend.dispose(x);
    }
  });

  ctx.test('abort/during-newton', async () => {
    const backend = ctx.backend();
    const { cell, params } = slowGru(3);
    const B = 2;
    const T = 200;
    const data = sequenceData(7, B, T, cell, ctx.dtype);
    const x = backend.tensor(data.x, [B, T, 3], ctx.dtype);
    try {
      for (const method of ['deer', 'elk'] as const) {
        const reason = new Stop(`cancelled in ${method}'s second iteration`);
        const controller = new AbortController();
        let calls = 0;
        const solve = deer(backend, cell, params, x, {
          method,
          signal: controller.signal,
          onIteration: () => {
            if (++calls === 2) controller.abort(reason);
          },
        });
        await expect(solve, method).rejects.toBe(reason);
        expect(calls, `${method}: no progress call after the abort`).toBe(2);
      }
      // The backend goes on as before: the same problem, unaborted, gives the sequential answer.
      const { y } = await deer(backend, cell, params, x, { signal: new AbortController().signal });
      const { y: ref } = await sequential(backend, cell, params, x);
      try {
        expect(maxAbsDiff(await backend.read(y), await backend.read(ref))).toBeLessThanOrEqual(ctx.tolerance);
      } finally {
        backend.dispose(y);
        backend.dispose(ref);
      }
    } finally {
      backend.dispose(x);
    }
  });

  ctx.test('abort/during-ode-newton', async () => {
    const backend = ctx.backend();
    const field = oscillator();
    const t = Array.from({ length: 41 }, (_, i) => i / 4);
    const reason = new Stop('cancelled in the ODE solve');
    const controller = new AbortController();
    let calls = 0;
    const solve = solveIvp(backend, field, {}, { y0: [1, 0], t }, {
      signal: controller.signal,
      onIteration: () => {
        if (++calls === 1) controller.abort(reason);
      },
    });
    await expect(solve).rejects.toBe(reason);
    expect(calls).toBe(1);
  });

  ctx.test('abort/from-a-task', async () => {
    // The abort arrives as a timer task while every progress call blocks the thread for 25 ms:
    // the solve must let tasks run between its steps (on a CPU backend its reads resolve at once,
    // so it would otherwise never leave the microtask queue until the end).
    const backend = ctx.backend();
    const { cell, params } = slowGru(5);
    const B = 2;
    const T = 200;
    const data = sequenceData(9, B, T, cell, ctx.dtype);
    const x = backend.tensor(data.x, [B, T, 3], ctx.dtype);
    try {
      const free = await deer(backend, cell, params, x, { method: 'deer', fallback: 'none' });
      backend.dispose(free.y);
      // Precondition: the problem takes enough iterations for an abort to land inside it.
      expect(free.stats.iterations).toBeGreaterThanOrEqual(5);
      const reason = new Stop('cancelled by a timer');
      const controller = new AbortController();
      setTimeout(() => controller.abort(reason), 0);
      let calls = 0;
      const solve = deer(backend, cell, params, x, {
        method: 'deer',
        fallback: 'none',
        signal: controller.signal,
        onIteration: () => {
          calls++;
          const until = Date.now() + 25;
          while (Date.now() < until) {
            // Blocks, as a long step on the calling thread does.
          }
        },
      });
      await expect(solve).rejects.toBe(reason);
      expect(calls).toBeLessThan(free.stats.iterations);
    } finally {
      backend.dispose(x);
    }
  });

  ctx.test('abort/backward-pass', async () => {
    // A backward pass takes the forward solve's signal unless given its own.
    const backend = ctx.backend();
    const B = 2;
    const T = 30;
    const { cell, data, x } = gruOn(ctx, 4, B, T);
    const dy = backend.tensor(
      Float64Array.from({ length: B * T * 4 }, (_, i) => Math.sin(i)),
      [B, T, 4],
      ctx.dtype,
    );
    const field = oscillator();
    const problem = { y0: [1, 0], t: [0, 0.25, 0.5, 0.75, 1] };
    const ody = backend.tensor(Float64Array.from({ length: 4 * 2 }, (_, i) => Math.cos(i)), [1, 4, 2], ctx.dtype);
    try {
      for (const [what, solve] of [
        ['deerWithGrad', (signal?: AbortSignal) => deerWithGrad(backend, cell, data.params, x, signal ? { signal } : {})],
        ['solveIvpWithGrad', (signal?: AbortSignal) => solveIvpWithGrad(backend, field, {}, problem, signal ? { signal } : {})],
      ] as const) {
        const cot = what === 'deerWithGrad' ? dy : ody;
        const plain = await solve();
        const want = await plain.vjp(cot);
        const reason = new Stop(`cancelled before ${what}'s backward pass`);
        const controller = new AbortController();
        const run = await solve(controller.signal);
        try {
          controller.abort(reason);
          await expect(run.vjp(cot), `${what}: the forward signal`).rejects.toBe(reason);
          const own = new Stop('its own signal');
          const other = new AbortController();
          other.abort(own);
          await expect(run.vjp(cot, { signal: other.signal }), `${what}: its own signal`).rejects.toBe(own);
          await expect(run.vjp(cot, { signal: 'stop' } as unknown as { signal: AbortSignal })).rejects.toThrow(UnsupportedOptionError);
          await expect(run.vjp(cot, { sigal: other.signal } as unknown as { signal: AbortSignal })).rejects.toThrow(/sigal/);
          // An unaborted signal of its own: the same gradients as without any.
          const got = await run.vjp(cot, { signal: new AbortController().signal });
          const [a, b] = [gradientTensors(got), gradientTensors(want)];
          try {
            expect(a.length).toBe(b.length);
            for (const [i, g] of a.entries())
              expect(maxAbsDiff(await backend.read(g), await backend.read(b[i]!)), `${what} gradient ${i}`).toBe(0);
          } finally {
            for (const t of [...a, ...b]) backend.dispose(t);
          }
        } finally {
          run.dispose();
          plain.dispose();
        }
      }
    } finally {
      backend.dispose(x);
      backend.dispose(dy);
      backend.dispose(ody);
    }
  });

  ctx.test('abort/within-one-window-of-the-ode-adjoint', async () => {
    // The ODE adjoint checked its signal once per window of time, and one window is the default:
    // an abort that came while that window ran (on a cpu, as a task: a timer) went unseen until
    // the gradients were returned. Here the abort comes from inside the adjoint's reverse scan.
    const backend = ctx.backend();
    const field = oscillator();
    const t = Array.from({ length: 21 }, (_, i) => i / 20);
    const dy = backend.tensor(Float64Array.from({ length: 20 * 2 }, (_, i) => Math.cos(i)), [1, 20, 2], ctx.dtype);
    const run = await solveIvpWithGrad(backend, field, {}, { y0: [1, 0], t });
    const own = Object.getOwnPropertyDescriptor(backend, 'scan');
    try {
      const reason = new Stop('aborted inside the adjoint');
      const controller = new AbortController();
      const scan = backend.scan;
      let reverse = 0;
      const aborting: typeof backend.scan = function (this: typeof backend, args) {
        if (args.reverse) {
          reverse++;
          controller.abort(reason);
        }
        return scan.call(this, args);
      };
      Object.defineProperty(backend, 'scan', { value: aborting, configurable: true, writable: true });
      await expect(run.vjp(dy, { signal: controller.signal })).rejects.toBe(reason);
      expect(reverse, 'one window: one reverse scan').toBe(1);
    } finally {
      if (own) Object.defineProperty(backend, 'scan', own);
      else delete (backend as { scan?: unknown }).scan;
      run.dispose();
      backend.dispose(dy);
    }
  });

  ctx.test('abort/not-a-signal', async () => {
    const backend = ctx.backend();
    const cell = cells.gru({ inputSize: 3, hiddenSize: 4 });
    const data = sequenceData(2, 1, 5, cell, ctx.dtype);
    const x = backend.tensor(data.x, [1, 5, 3], ctx.dtype);
    try {
      for (const signal of [{}, true, 'abort', { aborted: false }] as unknown[]) {
        const options = { signal } as { signal: AbortSignal };
        await expect(deer(backend, cell, data.params, x, options)).rejects.toThrow(UnsupportedOptionError);
        await expect(sequential(backend, cell, data.params, x, options)).rejects.toThrow(UnsupportedOptionError);
        await expect(rk4(backend, oscillator(), {}, { y0: [1, 0], t: [0, 1] }, options)).rejects.toThrow(UnsupportedOptionError);
      }
    } finally {
      backend.dispose(x);
    }
  });
}
