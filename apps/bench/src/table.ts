import { formatDiff, formatMiB, formatMs, formatSpeedup, renderTable } from './format.js';
import { formatT } from './grid.js';
import { type BenchReport, isTiming, type PointResult } from './report.js';

export const COLUMNS = [
  'model',
  'T',
  'jacobian',
  'DEER',
  'sequential',
  'ORT',
  'seq/DEER',
  'ORT/DEER',
  'auto',
  'shoot',
  'iters',
  '|Δ| DEER',
  '|Δ| ORT',
  'RSS MiB',
  'note',
] as const;

/** As core's stats name it: dense, diagonal or block(s). */
function structureName(s: number, n: number): string {
  return s === n ? 'dense' : s === 1 ? 'diagonal' : `block(${s})`;
}

function row(r: PointResult): string[] {
  const p = r.point;
  const head = [p.series, formatT(p.T)];
  if (r.status !== 'ok' || !r.deer || !r.sequential) {
    return [
      ...head,
      structureName(p.blockSize, p.hiddenSize),
      '',
      '',
      '',
      '',
      '',
      '',
      '',
      '',
      '',
      '',
      '',
      `${r.status}: ${r.reason ?? ''}`,
    ];
  }
  const d = r.deer;
  const ort = r.ort;
  const notes = [
    d.converged ? '' : 'not converged',
    d.fellBack ? 'fell back' : '',
    d.windows > 1 ? `${d.windows} windows` : '',
    d.note ? `DEER ${d.note}` : '',
    r.sequential.note ? `seq ${r.sequential.note}` : '',
    ort && !isTiming(ort) ? `ORT failed: ${ort.error}` : '',
  ].filter((s) => s !== '');
  return [
    ...head,
    d.structure,
    formatMs(d.medianMs),
    formatMs(r.sequential.medianMs),
    isTiming(ort) ? formatMs(ort.medianMs) : '–',
    formatSpeedup(r.speedupSequential!),
    r.speedupOrt === undefined ? '–' : formatSpeedup(r.speedupOrt),
    r.auto ? `${formatMs(r.auto.medianMs)} (${r.auto.choice})` : '–',
    r.shoot ? `${formatMs(r.shoot.medianMs)} (${r.shoot.sweeps} sw${r.shoot.converged ? '' : ', fell back'})` : '–',
    String(d.iterations),
    formatDiff(r.maxDiffDeer!),
    r.maxDiffOrt === undefined ? '–' : formatDiff(r.maxDiffOrt),
    r.memory ? formatMiB(r.memory.rssBytes) : '',
    notes.join('; '),
  ];
}

export function resultsTable(points: readonly PointResult[]): string {
  return renderTable(COLUMNS, points.map(row), [0, COLUMNS.length - 1]);
}

export function reportHeader(report: BenchReport): string {
  const m = report.machine;
  const b = report.backend;
  const o = report.options;
  return [
    `deer-bench · backend ${b.name} · device ${b.device} · ${report.dtype}`,
    `${m.cpu}, ${m.cores} cores, ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB · node ${m.node}` +
      ` · onnxruntime ${report.onnxruntime ?? 'not run'}`,
    `GRU, batch ${o.batch}, input size = hidden size, median of ${o.repeats} runs after ${o.warmup} warm-up` +
      ` (fewer past ${o.budgetSeconds} s per method)`,
  ].join('\n');
}

/** One line per finished point, for stderr while the grid runs. */
/** "; solve 1.2 s + read 30 ms, device 1.1 s, 1 submit/it" where measured. */
function deerParts(d: NonNullable<PointResult['deer']>): string {
  const parts: string[] = [];
  if (d.solveMs !== undefined && d.readbackMs !== undefined)
    parts.push(`solve ${formatMs(d.solveMs)} + read ${formatMs(d.readbackMs)}`);
  if (d.deviceMs !== undefined) parts.push(`device ${formatMs(d.deviceMs)}`);
  if (d.deviceKernels) {
    const top = Object.entries(d.deviceKernels)
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, 3)
      .map(([k, v]) => `${k} ${formatMs(v.ms)}`);
    if (top.length > 0) parts.push(`top kernels: ${top.join(', ')}`);
  }
  if (d.device) parts.push(`${d.device.submitsPerIteration.toFixed(2)} submits/it`);
  return parts.length > 0 ? `; ${parts.join(', ')}` : '';
}

export function progressLine(r: PointResult, index: number, total: number): string {
  const p = r.point;
  const head = `[${String(index + 1).padStart(String(total).length)}/${total}] ${p.series} T=${formatT(p.T)} ${p.jacobian}`;
  if (r.status !== 'ok' || !r.deer || !r.sequential) return `${head}: ${r.status}, ${r.reason ?? ''}`;
  const ort = isTiming(r.ort) ? `, ORT ${formatMs(r.ort.medianMs)}` : '';
  const auto = r.auto ? `, auto ${formatMs(r.auto.medianMs)} (${r.auto.choice})` : '';
  const shoot = r.shoot ? `, shoot ${formatMs(r.shoot.medianMs)} (${r.shoot.sweeps} sweeps${r.shoot.converged ? '' : ', fell back'})` : '';
  return (
    `${head}: DEER ${formatMs(r.deer.medianMs)} (${r.deer.iterations} it${deerParts(r.deer)}), seq ${formatMs(r.sequential.medianMs)}${ort}${auto}${shoot}` +
    ` → ${formatSpeedup(r.speedupSequential!)} (${formatMs(r.wallMs)} wall)`
  );
}

/** The paper's table: rows are models, columns T, cells the speedup over a baseline. */
export function speedupPivot(points: readonly PointResult[], baseline: 'sequential' | 'ort'): string {
  const Ts = [...new Set(points.map((r) => r.point.T))].sort((a, b) => a - b);
  const series = [...new Set(points.map((r) => r.point.series))];
  const rows = series.map((s) => [
    s,
    ...Ts.map((T) => {
      const r = points.find((q) => q.point.series === s && q.point.T === T);
      if (!r) return '';
      if (r.status !== 'ok') return r.status;
      const v = baseline === 'sequential' ? r.speedupSequential : r.speedupOrt;
      return v === undefined ? '–' : formatSpeedup(v);
    }),
  ]);
  const title = baseline === 'sequential' ? 'seq/DEER' : 'ORT/DEER';
  return renderTable([`${title}  T →`, ...Ts.map(formatT)], rows);
}
