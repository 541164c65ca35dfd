import type { BenchReport } from './report.js';
import { logLogSvg, PALETTE, type Series } from './svg.js';

export type Baseline = 'sequential' | 'ort';

/** The paper's figure: speedup of DEER over a baseline vs T, one line per model (nh, heads, quasi). */
export function speedupSvg(report: BenchReport, baseline: Baseline): string {
  // A quasi-DEER line shares its dense twin's colour (dashed); multi-head lines come after (dotted).
  const sizes = [
    ...new Set(report.points.filter((r) => r.point.heads === undefined).map((r) => r.point.hiddenSize)),
  ];
  sizes.sort((a, b) => a - b);
  const headCounts = [
    ...new Set(report.points.flatMap((r) => (r.point.heads === undefined ? [] : [r.point.heads]))),
  ];
  headCounts.sort((a, b) => a - b);
  const colorOf = (p: BenchReport['points'][number]['point']) => {
    const i =
      p.heads === undefined ? sizes.indexOf(p.hiddenSize) : sizes.length + headCounts.indexOf(p.heads);
    return PALETTE[i % PALETTE.length]!;
  };
  const bySeries = new Map<string, Series & { points: [number, number][] }>();
  for (const r of report.points) {
    const v = baseline === 'sequential' ? r.speedupSequential : r.speedupOrt;
    if (r.status !== 'ok' || v === undefined) continue;
    const p = r.point;
    let s = bySeries.get(p.series);
    if (!s) {
      const dash = p.heads !== undefined ? 'dotted' : p.jacobian === 'diagonal' ? 'dashed' : undefined;
      s = { name: p.series, points: [], color: colorOf(p), ...(dash ? { dash } : {}) };
      bySeries.set(p.series, s);
    }
    s.points.push([p.T, v]);
  }
  for (const s of bySeries.values()) s.points.sort((a, b) => a[0] - b[0]);
  const what = baseline === 'sequential' ? 'sequential' : 'onnxruntime GRU (CPU)';
  return logLogSvg({
    title: `DEER speedup over ${what} — backend ${report.backend.name}, device ${shortDevice(report.backend.device)}`,
    subtitle: `GRU, batch ${String(report.options.batch)}, ${report.dtype}, ${report.machine.cpu} × ${report.machine.cores}`,
    xLabel: 'sequence length T',
    yLabel:
      baseline === 'sequential' ? 'speedup = sequential time / DEER time' : 'speedup = ORT time / DEER time',
    series: [...bySeries.values()],
    referenceY: 1,
  });
}

/** 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6) …' → 'llvmpipe': adapter descriptions run long; the JSON keeps it whole. */
function shortDevice(device: string): string {
  const head = device.split(':')[0]!.trim();
  return head.length > 40 ? `${head.slice(0, 39)}…` : head;
}
