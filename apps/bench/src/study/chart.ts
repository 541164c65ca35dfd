import { escapeXml, PALETTE } from '../svg.js';
import type { StudyProblem } from './convergence.js';

/**
 * Two panels over the weight scale (log x): the fraction of rows each method solved without the
 * sequential fallback (linear y), and its time over sequential evaluation (log y). One line per
 * method and cell family (solid GRU, dashed Elman).
 */
export function studySvg(problems: readonly StudyProblem[], title: string): string {
  const methods = [...new Set(problems.flatMap((p) => p.runs.map((r) => r.method)))];
  const families = [...new Set(problems.map((p) => p.family))];
  const scales = [...new Set(problems.map((p) => p.scale))].sort((a, b) => a - b);
  const W = 1080;
  const H = 420;
  const panel = { w: 360, h: 290, top: 70 };
  const lefts = [70, 520];
  const lx = (s: number) => (Math.log(s) - Math.log(scales[0]!)) / Math.max(1e-9, Math.log(scales.at(-1)!) - Math.log(scales[0]!));
  const mean = (family: string, method: string, pick: (p: StudyProblem, i: number) => number) =>
    scales.map((s) => {
      const ps = problems.filter((p) => p.family === family && p.scale === s);
      const vals = ps.map((p) => pick(p, p.runs.findIndex((r) => r.method === method)));
      return [s, vals.reduce((a, b) => a + b, 0) / Math.max(1, vals.length)] as const;
    });
  const ratios = problems.flatMap((p) => p.runs.map((r) => r.timeRatio)).filter((v) => v > 0 && Number.isFinite(v));
  const [r0, r1] = [Math.floor(Math.log10(Math.min(...ratios, 0.5))), Math.ceil(Math.log10(Math.max(...ratios, 2)))];
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  const panels = [
    { label: 'rows solved without fallback (fraction)', y: (v: number) => 1 - v, ticks: [0, 0.25, 0.5, 0.75, 1].map((v) => [v, String(v)] as const) },
    {
      label: 'time / sequential (log)',
      y: (v: number) => 1 - (Math.log10(v) - r0) / (r1 - r0),
      ticks: Array.from({ length: r1 - r0 + 1 }, (_, k) => [10 ** (r0 + k), `${10 ** (r0 + k)}`] as const),
    },
  ];
  panels.forEach((pn, k) => {
    const x0 = lefts[k]!;
    const X = (s: number) => x0 + lx(s) * panel.w;
    const Y = (v: number) => panel.top + pn.y(v) * panel.h;
    out.push(`<rect x="${x0}" y="${panel.top}" width="${panel.w}" height="${panel.h}" fill="none" stroke="#999"/>`);
    out.push(`<text x="${x0 + panel.w / 2}" y="${panel.top - 10}" text-anchor="middle">${escapeXml(pn.label)}</text>`);
    for (const [v, t] of pn.ticks) {
      out.push(`<line x1="${x0}" x2="${x0 + panel.w}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/>`);
      out.push(`<text x="${x0 - 6}" y="${Y(v) + 4}" text-anchor="end">${t}</text>`);
    }
    for (const s of scales) out.push(`<text x="${X(s)}" y="${panel.top + panel.h + 16}" text-anchor="middle">${s}×</text>`);
    out.push(`<text x="${x0 + panel.w / 2}" y="${panel.top + panel.h + 34}" text-anchor="middle">weight scale (× default)</text>`);
    methods.forEach((m, mi) => {
      families.forEach((f, fi) => {
        const pts =
          k === 0
            ? mean(f, m, (p, i) => (p.runs[i]?.convergedRows ?? 0) / (p.runs[i]?.rows ?? 1))
            : mean(f, m, (p, i) => p.runs[i]?.timeRatio ?? Number.NaN);
        const d = pts
          .filter(([, v]) => Number.isFinite(v) && (k === 0 || v > 0))
          .map(([s, v], i) => `${i === 0 ? 'M' : 'L'}${X(s).toFixed(1)},${Y(v).toFixed(1)}`)
          .join(' ');
        out.push(`<path d="${d}" fill="none" stroke="${PALETTE[mi % PALETTE.length]}" stroke-width="2"${fi === 1 ? ' stroke-dasharray="6 4"' : ''}/>`);
      });
    });
  });
  methods.forEach((m, mi) => {
    const y = 60 + mi * 18;
    out.push(`<line x1="${W - 160}" x2="${W - 140}" y1="${y}" y2="${y}" stroke="${PALETTE[mi % PALETTE.length]}" stroke-width="2"/>`);
    out.push(`<text x="${W - 136}" y="${y + 4}">${escapeXml(m)}</text>`);
  });
  out.push(`<text x="${W - 160}" y="${60 + methods.length * 18 + 8}" font-size="11">solid ${escapeXml(families[0] ?? '')}, dashed ${escapeXml(families[1] ?? '')}</text>`);
  out.push('</svg>');
  return out.join('\n');
}
