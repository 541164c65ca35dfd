export interface Series {
  readonly name: string;
  /** [x, y] with x, y > 0 (log axes); other points are dropped. */
  readonly points: readonly (readonly [number, number])[];
  /** 'dashed' or 'dotted' lines; solid by default. */
  readonly dash?: 'dashed' | 'dotted';
  /** A CSS colour; by default the next one of the palette. */
  readonly color?: string;
}

export interface LogLogChart {
  readonly title: string;
  readonly subtitle?: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  /** A dashed horizontal rule at this y (e.g. 1: break-even). */
  readonly referenceY?: number;
  readonly width?: number;
  readonly height?: number;
}

export const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const fmt = (v: number) => (Math.round(v * 100) / 100).toString();

/** Whole decades covering [lo, hi], at least one decade wide. */
function decades(lo: number, hi: number): [number, number] {
  let a = Math.floor(Math.log10(lo) + 1e-9);
  let b = Math.ceil(Math.log10(hi) - 1e-9);
  if (b <= a) b = a + 1;
  if (!Number.isFinite(a) || !Number.isFinite(b)) [a, b] = [0, 1];
  return [a, b];
}

function tickLabel(e: number): string {
  if (e >= -3 && e <= 2) return String(10 ** e);
  return `1e${e}`;
}

function minorLabel(k: number, e: number): string {
  return e >= -3 && e <= 3 ? String(Number((k * 10 ** e).toPrecision(1))) : `${k}e${e}`;
}

/** A self-contained SVG line chart with logarithmic axes, a legend and one polyline per series. */
export function logLogSvg(c: LogLogChart): string {
  const W = c.width ?? 760;
  const H = c.height ?? 460;
  const m = { left: 72, right: 190, top: c.subtitle ? 62 : 46, bottom: 56 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const series = c.series.map((s) => ({
    ...s,
    points: s.points.filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(x) && Number.isFinite(y)),
  }));
  const all = series.flatMap((s) => s.points);
  const ys = all.map((p) => p[1]).concat(c.referenceY === undefined ? [] : [c.referenceY]);
  const [x0, x1] = decades(Math.min(...all.map((p) => p[0]), 1e3), Math.max(...all.map((p) => p[0]), 1e3));
  const [y0, y1] = decades(Math.min(...ys, 1), Math.max(...ys, 1));
  const sx = (x: number) => m.left + ((Math.log10(x) - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.top + ph - ((Math.log10(y) - y0) / (y1 - y0)) * ph;
  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(c.title)}</text>`,
  );
  if (c.subtitle)
    out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${escapeXml(c.subtitle)}</text>`);
  out.push(`<g class="minor" stroke="#f3f3f3">`);
  for (let e = x0; e < x1; e++) {
    for (let k = 2; k < 10; k++) {
      const x = fmt(sx(k * 10 ** e));
      out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}"/>`);
    }
  }
  for (let e = y0; e < y1; e++) {
    for (let k = 2; k < 10; k++) {
      const y = fmt(sy(k * 10 ** e));
      out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}"/>`);
    }
  }
  out.push(`</g>`);
  out.push(`<g class="grid" stroke="#dddddd">`);
  for (let e = x0; e <= x1; e++)
    out.push(`<line x1="${fmt(sx(10 ** e))}" y1="${m.top}" x2="${fmt(sx(10 ** e))}" y2="${m.top + ph}"/>`);
  for (let e = y0; e <= y1; e++)
    out.push(`<line x1="${m.left}" y1="${fmt(sy(10 ** e))}" x2="${m.left + pw}" y2="${fmt(sy(10 ** e))}"/>`);
  out.push(`</g>`);
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<g class="ticks" fill="#333">`);
  for (let e = x0; e <= x1; e++)
    out.push(
      `<text x="${fmt(sx(10 ** e))}" y="${m.top + ph + 18}" text-anchor="middle">${tickLabel(e)}</text>`,
    );
  for (let e = y0; e <= y1; e++)
    out.push(`<text x="${m.left - 8}" y="${fmt(sy(10 ** e) + 4)}" text-anchor="end">${tickLabel(e)}</text>`);
  // Few decades on y: label 2 and 5 as well, or speedups are hard to read off.
  if (y1 - y0 <= 2) {
    for (let e = y0; e < y1; e++) {
      for (const k of [2, 5]) {
        const y = fmt(sy(k * 10 ** e) + 4);
        out.push(`<text x="${m.left - 8}" y="${y}" text-anchor="end" fill="#777">${minorLabel(k, e)}</text>`);
      }
    }
  }
  out.push(`</g>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 14}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`);
  out.push(
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(c.yLabel)}</text>`,
  );
  if (c.referenceY !== undefined) {
    const y = fmt(sy(c.referenceY));
    out.push(
      `<line class="reference" x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#888" stroke-dasharray="2 3"/>`,
    );
  }
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    const pts = s.points.map(([x, y]) => `${fmt(sx(x))},${fmt(sy(y))}`).join(' ');
    const dash =
      s.dash === 'dashed' ? ' stroke-dasharray="6 4"' : s.dash === 'dotted' ? ' stroke-dasharray="2 3"' : '';
    out.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    for (const [x, y] of s.points)
      out.push(`<circle cx="${fmt(sx(x))}" cy="${fmt(sy(y))}" r="3" fill="${color}"/>`);
    out.push(`</g>`);
    const ly = m.top + 10 + i * 20;
    const lx = m.left + pw + 16;
    out.push(
      `<g class="legend"><line x1="${lx}" y1="${ly}" x2="${lx + 26}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/><text x="${lx + 32}" y="${ly + 4}">${escapeXml(s.name)}</text></g>`,
    );
  });
  out.push(`</svg>`);
  return `${out.join('\n')}\n`;
}
