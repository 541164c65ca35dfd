import { describe, expect, it } from 'vitest';
import { type Backend, cells, defineCell, EXPECTED_SWEEPS, hostSequential, InvalidArgumentError, lang, MIN_SHOOTING_T, planShooting, planShootingUpFront, planSolve, ShapeError, stepCost, withCapabilities } from '../src/index.js';

describe('cost model (method: auto)', () => {
  it('counts a GRU step: 6n² multiply-adds of its matrix products plus the gates', () => {
    for (const n of [1, 8, 32]) {
      const program = cells.gru({ inputSize: n, hiddenSize: n }).stepProgram();
      const cost = stepCost(program.graph, program.outputs);
      // Two [3n, n] products, 3n transcendentals (priced 10) and O(n) elementwise work.
      expect(cost).toBeGreaterThanOrEqual(6 * n * n + 30 * n);
      expect(cost).toBeLessThan(6 * n * n + 60 * n);
    }
  });

  it('prices the operations it is told are expensive', () => {
    const { add, mul, tanh } = lang;
    const cheap = defineCell({ name: 'c', state: 4, input: 4, params: { w: [4] } }, (h, x, p) => add(mul(p.w, h), x));
    const dear = defineCell({ name: 'd', state: 4, input: 4, params: { w: [4] } }, (h, x, p) =>
      tanh(add(mul(p.w, h), x)),
    );
    const cost = (c: typeof cheap) => stepCost(c.stepProgram().graph, c.stepProgram().outputs);
    expect(cost(cheap)).toBe(8);
    expect(cost(dear)).toBe(8 + 40);
  });

  it('chooses sequential evaluation where the lanes are few', () => {
    const cell = cells.gru({ inputSize: 8, hiddenSize: 8 });
    for (const lanes of [1, 2, 16]) {
      const plan = planSolve(cell, 16, 10_000, lanes, [8, 1]);
      expect(plan.choice, `${lanes} lanes`).toBe('sequential');
      expect(Math.min(...plan.deer.map((d) => d.total))).toBeGreaterThanOrEqual(plan.sequential);
      expect(plan.reason).toMatch(/→ sequential/);
    }
  });

  it('chooses DEER on a wide device: the exact Jacobian for small n, the diagonal for large n', () => {
    const small = planSolve(cells.gru({ inputSize: 2, hiddenSize: 2 }), 16, 100_000, 65536, [2, 1]);
    expect(small.choice).toBe(2);
    expect(small.reason).toMatch(/exact Jacobian/);
    const wide = planSolve(cells.gru({ inputSize: 64, hiddenSize: 64 }), 16, 10_000, 65536, [64, 1]);
    expect(wide.choice).toBe(1);
    expect(wide.reason).toMatch(/quasi/);
    // A structure that was asked for is the only candidate.
    const given = planSolve(cells.gru({ inputSize: 64, hiddenSize: 64 }), 16, 10_000, 65536, [64]);
    expect(given.deer.map((d) => d.blockSize)).toEqual([64]);
  });

  it('prefers sequential evaluation for short sequences even on a wide device', () => {
    const plan = planSolve(cells.gru({ inputSize: 8, hiddenSize: 8 }), 1, 4, 65536, [8, 1]);
    expect(plan.choice).toBe('sequential');
  });

  it("a GPU's per-iteration round trip (capabilities.iterationOverhead) keeps short sequences sequential", () => {
    // As measured on an H200 (GRU nh = 1, B = 16): sequential 2.8 ms vs DEER 7.5 ms at T = 1e4,
    // and 78 ms vs 9.4 ms at T = 1e5, where each iteration's round trip costs ~1 ms.
    const cell = cells.gru({ inputSize: 1, hiddenSize: 1 });
    expect(planSolve(cell, 16, 10_000, 65536, [1]).choice).toBe(1);
    expect(planSolve(cell, 16, 10_000, 65536, [1], { iterationOverhead: 200_000 }).choice).toBe('sequential');
    expect(planSolve(cell, 16, 100_000, 65536, [1], { iterationOverhead: 200_000 }).choice).toBe(1);
  });

  it("with the H200 calibration, 'auto' is never slower than sequential evaluation at the points measured there", () => {
    // apps/bench/results/webgpu-h200 (GRU and an 8-head GRU, B = 16, float32, ms):
    // [nh, heads, T, sequential, DEER with the faster structure, 'auto''s probe (its time beyond
    // that DEER run; NaN where 'auto' ran no DEER; at nh = 64, T = 1e5 the T = 1e4 one, whose
    // prefix is the same 64 steps)]. Sequential is the kernel 'auto' runs: one lane
    // per row up to nh = 8, a workgroup per row above. Where DEER and its probe beat sequential
    // by more than a tenth, the model should pick DEER; it never picks DEER where they lose.
    const h200 = { iterationOverhead: 200_000, sequentialStep: { spread: 12, floor: 700, fromState: 9 }, probeHorizon: 100 };
    const lanes = 4096;
    const measured: [number, number, number, number, number, number][] = [
      [1, 1, 1e4, 3.54, 14.6, Number.NaN],
      [1, 1, 1e5, 65.8, 17.2, 17.5],
      [1, 1, 1e6, 321, 94.4, 170],
      [8, 1, 1e4, 18.9, 13.9, 20.3],
      [8, 1, 1e5, 278, 76.7, 106],
      [8, 1, 1e6, 2678, 1145, Number.NaN],
      [32, 1, 1e4, 63.0, 70.4, 47],
      [32, 1, 1e5, 642, 436, 55],
      [64, 1, 1e4, 126, 132, 112],
      [64, 1, 1e5, 1363, 1189, 112],
      [64, 8, 1e4, 64.5, 125, 91],
      [64, 8, 1e5, 745, 932, Number.NaN],
    ];
    const missed: string[] = [];
    for (const [nh, heads, T, seq, deer, probe] of measured) {
      const cell =
        heads === 1 ? cells.gru({ inputSize: nh, hiddenSize: nh }) : cells.multiHeadGru({ inputSize: nh, hiddenSize: nh, heads });
      const exact = cell.exactBlockSize;
      const plan = planSolve(cell, 16, T, lanes, exact === 1 ? [1] : [exact, 1], h200);
      const withProbe = deer + (Number.isNaN(probe) ? 0 : probe);
      if (plan.choice !== 'sequential') expect(withProbe, `nh = ${nh}×${heads}, T = ${T}: DEER chosen`).toBeLessThan(seq);
      else if (withProbe < seq / 1.1) missed.push(`nh = ${nh}, T = ${T}`);
    }
    // The one point where the model leaves a measured gain (1.3×) to sequential evaluation.
    expect(missed).toEqual(['nh = 32, T = 100000']);
  });

  it('parallel shooting: about √T chunks within the lanes, sweeps within two sequential passes', () => {
    const gru = cells.gru({ inputSize: 8, hiddenSize: 8 });
    // Unstated lanes: √T chunks and every sweep the prefix argument needs (K).
    expect(planShooting(gru, 4, 2000, undefined)).toEqual({ chunks: 45, length: 45, maxSweeps: 45 });
    expect(planShooting(gru, 4, 10_000, undefined)).toEqual({ chunks: 100, length: 100, maxSweeps: 100 });
    // A GPU's lanes and round trip: the same chunks, as many sweeps as two sequential passes pay for.
    const h200 = { iterationOverhead: 200_000, sequentialStep: { spread: 12, floor: 700 } };
    const gpu = planShooting(gru, 4, 100_000, 65536, h200)!;
    expect(gpu.chunks).toBe(317);
    const step = 700;
    const sweep = gpu.length * step + 200_000;
    expect(gpu.maxSweeps).toBe(Math.min(gpu.chunks, Math.floor((2 * 100_000 * step) / sweep)));
    // Chunks limited by the lanes: 64 lanes over 16 rows hold 4 chunks.
    expect(planShooting(gru, 16, 10_000, 64)!.chunks).toBe(4);
    // One lane: a sweep costs a whole pass, no chunks to run side by side; T = 1 is one chunk.
    expect(planShooting(gru, 4, 10_000, 1)).toBeNull();
    expect(planShooting(gru, 4, 1, undefined)).toBeNull();
  });

  it("shooting up front: where rows in the lanes pay for the sweeps, never without a row gain", () => {
    const gru = cells.gru({ inputSize: 8, hiddenSize: 8 });
    expect(planShootingUpFront(gru, 1, 1_000_000, {})).toBeNull();
    const one = planShootingUpFront(gru, 1, 1_000_000, { rowGain: 5 })!;
    expect(one.chunks).toBe(1000);
    expect(one.maxSweeps).toBeGreaterThanOrEqual(EXPECTED_SWEEPS);
    expect(one.maxSweeps).toBeLessThanOrEqual(one.chunks);
    expect(one.reason).toMatch(/parallel shooting/);
    // Sixteen rows already fill what the gain buys; a gain of 2 does not pay for three sweeps;
    // short sequences pay their sweeps' fixed costs.
    expect(planShootingUpFront(gru, 16, 100_000, { rowGain: 5 })).toBeNull();
    expect(planShootingUpFront(gru, 1, 1_000_000, { rowGain: 2 })).toBeNull();
    expect(planShootingUpFront(gru, 1, MIN_SHOOTING_T - 1, { rowGain: 5 })).toBeNull();
    // The full step that confirms what the sweeps settle is priced: at 0.6 of a sequential pass
    // the sweeps no longer pay.
    expect(planShootingUpFront(gru, 1, 1_000_000, { rowGain: 5, confirm: 0.1 })).not.toBeNull();
    expect(planShootingUpFront(gru, 1, 1_000_000, { rowGain: 5, confirm: 0.6 })).toBeNull();
  });
});

describe('withCapabilities', () => {
  const backend = { name: 'fake', capabilities: { dtypes: ['float64'], defaultDType: 'float64', maxBufferBytes: 2 ** 20, syncRead: true, device: 'fake', parallelism: 1 } } as unknown as Backend;
  it('refuses sizes and rates the planners divide by that are NaN, zero or negative', () => {
    for (const bad of [{ memoryBytes: Number.NaN }, { maxBufferBytes: 0 }, { parallelism: -1 }, { iterationOverhead: Number.POSITIVE_INFINITY }]) {
      expect(() => withCapabilities(backend, bad), JSON.stringify(bad)).toThrow(InvalidArgumentError);
    }
    expect(withCapabilities(backend, { parallelism: 1e9 }).capabilities.parallelism).toBe(1e9);
  });
});

describe('the planners refuse sizes they cannot price', () => {
  const gru = cells.gru({ inputSize: 2, hiddenSize: 4 });
  it('NaN, zero or negative B, T or lanes, and no candidates: InvalidArgumentError (they had given NaN plans)', () => {
    expect(() => planSolve(gru, 1, 100, 0, [4, 1])).toThrow(InvalidArgumentError);
    expect(() => planSolve(gru, 1, Number.NaN, 8, [4, 1])).toThrow(InvalidArgumentError);
    expect(() => planSolve(gru, 1, -5, 8, [4, 1])).toThrow(InvalidArgumentError);
    expect(() => planSolve(gru, 1, 100, 8, [])).toThrow(InvalidArgumentError);
    expect(() => planShooting(gru, 1, Number.NaN, 8)).toThrow(InvalidArgumentError);
    expect(() => planShootingUpFront(gru, 1, Number.POSITIVE_INFINITY, { rowGain: 8 })).toThrow(InvalidArgumentError);
    expect(planSolve(gru, 1, 100, Number.POSITIVE_INFINITY, [4, 1]).choice).toBeDefined();
  });
});

describe('host helpers refuse what they would misread', () => {
  const gru = cells.gru({ inputSize: 2, hiddenSize: 3 });
  const program = gru.stepProgram();

  it('stepCost with a node id that is not in the graph: InvalidArgumentError (it had been a TypeError)', () => {
    for (const bad of [program.graph.nodes.length, -1, 0.5, Number.NaN]) {
      expect(() => stepCost(program.graph, [bad]), String(bad)).toThrow(InvalidArgumentError);
    }
  });

  it('hostSequential with a short input, y0 or parameter: ShapeError (it had returned NaN)', () => {
    const params = Object.fromEntries(
      Object.entries(gru.init({ seed: 1 })).map(([k, v]) => [k, Float64Array.from(v as ArrayLike<number>)]),
    );
    const B = 2;
    const T = 4;
    const x = new Float64Array(B * T * 2).fill(0.3);
    const y0 = new Float64Array(B * 3);
    const y = hostSequential(program, params, x, y0, B, T, 'float64');
    expect(y.every(Number.isFinite)).toBe(true);
    expect(() => hostSequential(program, params, x.subarray(1), y0, B, T, 'float64')).toThrow(ShapeError);
    expect(() => hostSequential(program, params, x, y0.subarray(1), B, T, 'float64')).toThrow(ShapeError);
    expect(() => hostSequential(program, params, undefined, y0, B, T, 'float64')).toThrow(ShapeError);
    const [name, value] = Object.entries(params)[0]!;
    expect(() => hostSequential(program, { ...params, [name]: value.subarray(1) }, x, y0, B, T, 'float64')).toThrow(ShapeError);
    const { [name]: _missing, ...without } = params;
    expect(() => hostSequential(program, without, x, y0, B, T, 'float64')).toThrow(ShapeError);
    expect(() => hostSequential(program, params, x, y0, B, 1.5, 'float64')).toThrow(InvalidArgumentError);
  });
});
