/** 0.4 → '0.40 ms', 1234 → '1.23 s'. */
export function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 100_000 ? 0 : 2)} s`;
  return `${ms.toFixed(ms >= 100 ? 0 : ms >= 10 ? 1 : 2)} ms`;
}

export function formatSpeedup(x: number): string {
  if (x >= 0.1) return `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)}×`;
  return `${x.toPrecision(2)}×`;
}

export function formatDiff(x: number): string {
  return x === 0 ? '0' : x.toExponential(1);
}

/** 300·1024 → '300 KiB', 1.5·2³⁰ → '1.5 GiB', 1000 → '1000 B': the largest unit that keeps a whole part, about three digits. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let k = 0;
  while (k < units.length - 1 && bytes >= 1024 ** (k + 1)) k++;
  const v = bytes / 1024 ** k;
  const digits = v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2);
  return `${digits.includes('.') ? digits.replace(/\.?0+$/, '') : digits} ${units[k]}`;
}

export function formatMiB(bytes: number): string {
  return `${Math.round(bytes / 2 ** 20)}`;
}

/** Columns in `left` are left-aligned, the others (numbers) right-aligned; a rule under the header. */
export function renderTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  left: readonly number[] = [0],
): string {
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (left.includes(i) ? c.padEnd(width[i]!) : c.padStart(width[i]!)))
      .join('  ')
      .trimEnd();
  const rule = width.map((w) => '─'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.map((r) => line(header.map((_, i) => r[i] ?? '')))].join('\n');
}
