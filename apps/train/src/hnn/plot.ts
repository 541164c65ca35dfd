import type { TrainConfig } from '../config.js';
import type { HnnStepRecord } from '../metrics.js';
import { plotSvg, smooth } from '../svg.js';
import { energy, STATE } from './two-body.js';

type Pt = [number, number];

/** At most `max` evenly spaced entries (plots of 10 000-point trajectories stay small). */
function thin<T>(v: readonly T[], max = 800): T[] {
  if (v.length <= max) return [...v];
  const out: T[] = [];
  for (let k = 0; k < max; k++) out.push(v[Math.round((k * (v.length - 1)) / (max - 1))]!);
  return out;
}

/** Positions of body `body` (0 or 1) of orbit `b` in [count, T, 8] states, y0 first. */
function path(y0: Float64Array, y: Float64Array, b: number, T: number, body: number): Pt[] {
  const o = 2 * body;
  const pts: Pt[] = [[y0[b * STATE + o]!, y0[b * STATE + o + 1]!]];
  for (let i = 0; i < T; i++) pts.push([y[(b * T + i) * STATE + o]!, y[(b * T + i) * STATE + o + 1]!]);
  return thin(pts);
}

/** H(y_t) − H(y_0) with the true H, orbit b. */
export function energyDrift(y0: Float64Array, y: Float64Array, b: number, t: Float64Array): Pt[] {
  const T = t.length - 1;
  const e0 = energy(y0, b * STATE);
  const pts: Pt[] = [[t[0]!, 0]];
  for (let i = 0; i < T; i++) pts.push([t[i + 1]!, energy(y, (b * T + i) * STATE) - e0]);
  return thin(pts);
}

export interface HnnPlotData {
  readonly t: Float64Array;
  readonly y0: Float64Array;
  readonly truth: Float64Array;
  readonly predicted: Float64Array;
}

/** Predicted vs true orbits of held-out orbit 0 in the x–y plane, both bodies. */
export function orbitsSvg(d: HnnPlotData, c: TrainConfig): string {
  const T = d.t.length - 1;
  const series = [
    { label: 'body 1 true', color: '#9ecae1', points: path(d.y0, d.truth, 0, T, 0) },
    { label: 'body 2 true', color: '#fdae6b', points: path(d.y0, d.truth, 0, T, 1) },
    { label: 'body 1 HNN', color: '#08519c', points: path(d.y0, d.predicted, 0, T, 0) },
    { label: 'body 2 HNN', color: '#d94801', points: path(d.y0, d.predicted, 0, T, 1) },
  ];
  // One range for x and y (equal aspect), from the true orbit plus a margin, so a diverging
  // prediction leaves the frame instead of shrinking the truth to a dot.
  const coords = series.slice(0, 2).flatMap((s) => s.points.flat());
  const lim = 1.3 * coords.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const range = [-lim, lim] as const;
  const clip = (p: Pt): Pt => [Math.max(-lim, Math.min(lim, p[0])), Math.max(-lim, Math.min(lim, p[1]))];
  return plotSvg(
    [
      {
        title: `Held-out orbit, t ∈ [0, ${c.tEnd}]`,
        xLabel: 'x',
        xRange: range,
        yRange: range,
        series: series.map((s) => ({ ...s, points: s.points.map(clip) })),
      },
    ],
    `deer-train hnn: predicted vs true (y vertical), ${c.solver} on ${c.backend}`,
    520,
    520,
  );
}

/** Training loss (log10) and the energy drift of the held-out orbit 0. */
export function hnnPlotSvg(history: readonly HnnStepRecord[], d: HnnPlotData, c: TrainConfig): string {
  const loss = history.map((h) => [h.step, Math.log10(h.loss)] as Pt);
  const w = Math.max(1, Math.round(history.length / 25));
  return plotSvg(
    [
      {
        title: 'Training loss (log10 MSE)',
        xLabel: 'step',
        series: [
          { label: 'per step', color: w > 1 ? '#9ecae1' : '#08519c', points: loss },
          ...(w > 1 ? [{ label: `mean of ${w}`, color: '#08519c', points: smooth(loss, w) }] : []),
        ],
      },
      {
        title: 'Energy drift H(y_t) − H(y_0), true H',
        xLabel: 't',
        series: [
          { label: 'HNN trajectory', color: '#d62728', points: energyDrift(d.y0, d.predicted, 0, d.t) },
          { label: 'reference (DP 1e-12)', color: '#31a354', points: energyDrift(d.y0, d.truth, 0, d.t) },
        ],
      },
    ],
    `deer-train hnn: HNN(${Array(c.layers).fill(c.hidden).join(', ')}), ${c.orbits} orbits × ${c.points} points, ${c.solver} on ${c.backend} (${c.dtype})`,
  );
}
