export interface Series {
  readonly label: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface Panel {
  readonly title: string;
  readonly xLabel: string;
  readonly series: readonly Series[];
  /** Fixed y range, e.g. [0, 1] for accuracy; default from the data. */
  readonly yRange?: readonly [number, number];
  /** Fixed x range (with yRange and a square panel: equal aspect, e.g. orbits); default from the data. */
  readonly xRange?: readonly [number, number];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v: number) =>
  Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0)
    ? v.toExponential(1)
    : Number(v.toPrecision(3)).toString();

/** Evenly spaced "nice" tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

/** [min, max] of the values (a loop: spreading a long series into Math.min overflows the stack), or `empty`. */
function extent(values: readonly number[], empty: readonly [number, number]): [number, number] {
  if (values.length === 0) return [empty[0], empty[1]];
  let [lo, hi] = [values[0]!, values[0]!];
  for (const v of values) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  return [lo, hi];
}

function panelSvg(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const pts = p.series.flatMap((s) => s.points);
  const xs = pts.map((q) => q[0]);
  const ys = pts.map((q) => q[1]).filter(Number.isFinite);
  const [xlo, xhi] = p.xRange ?? extent(xs, [0, 1]);
  let [ylo, yhi] = p.yRange ?? extent(ys, [0, 1]);
  if (yhi === ylo) [ylo, yhi] = [ylo - 0.5, yhi + 0.5];
  const L = 56;
  const R = 12;
  const T = 26;
  const B = 38;
  const pw = w - L - R;
  const ph = h - T - B;
  const sx = (v: number) => x0 + L + ((v - xlo) / (xhi - xlo || 1)) * pw;
  const sy = (v: number) => y0 + T + ph - ((v - ylo) / (yhi - ylo)) * ph;
  const out: string[] = [];
  out.push(
    `<text x="${x0 + L + pw / 2}" y="${y0 + 17}" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`,
  );
  out.push(`<rect x="${x0 + L}" y="${y0 + T}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  for (const t of ticks(ylo, yhi)) {
    const y = sy(t).toFixed(1);
    out.push(`<line x1="${x0 + L}" x2="${x0 + L + pw}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    out.push(
      `<text x="${x0 + L - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" font-size="11">${fmt(t)}</text>`,
    );
  }
  for (const t of ticks(xlo, xhi)) {
    const x = sx(t).toFixed(1);
    out.push(`<text x="${x}" y="${y0 + T + ph + 16}" text-anchor="middle" font-size="11">${fmt(t)}</text>`);
  }
  out.push(
    `<text x="${x0 + L + pw / 2}" y="${y0 + h - 6}" text-anchor="middle" font-size="12">${esc(p.xLabel)}</text>`,
  );
  p.series.forEach((s, k) => {
    const good = s.points.filter((q) => Number.isFinite(q[1]));
    if (good.length === 1) {
      const [x, y] = good[0]!;
      out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="4" fill="${s.color}"/>`);
    } else if (good.length > 1) {
      const d = good.map((q, i) => `${i ? 'L' : 'M'}${sx(q[0]).toFixed(1)},${sy(q[1]).toFixed(1)}`).join('');
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    }
    const ly = y0 + T + 14 + 16 * k;
    out.push(
      `<line x1="${x0 + L + pw - 130}" x2="${x0 + L + pw - 112}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"/>`,
    );
    out.push(
      `<text x="${x0 + L + pw - 106}" y="${ly}" dominant-baseline="middle" font-size="11">${esc(s.label)}</text>`,
    );
  });
  return out.join('\n');
}

/** Panels side by side in one standalone SVG document. */
export function plotSvg(
  panels: readonly Panel[],
  title: string,
  panelWidth = 460,
  panelHeight = 300,
): string {
  const W = panelWidth * panels.length;
  const H = panelHeight + 30;
  const body = panels.map((p, i) => panelSvg(p, i * panelWidth, 30, panelWidth, panelHeight)).join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="15">${esc(title)}</text>
${body}
</svg>
`;
}

/** Moving average over a trailing window, for noisy per-batch curves. */
export function smooth(points: readonly (readonly [number, number])[], window: number): [number, number][] {
  const out: [number, number][] = [];
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    sum += points[i]![1];
    if (i >= window) sum -= points[i - window]![1];
    out.push([points[i]![0], sum / Math.min(i + 1, window)]);
  }
  return out;
}
