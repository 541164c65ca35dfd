import type { BenchOptions } from './args.js';
import { checkHeads } from './args.js';

/** How DEER linearises the cell at a point. */
export type JacobianKind = 'dense' | 'diagonal' | 'block';

export interface GridPoint {
  /** Stable id, e.g. 'gru-n8-T1e4-dense'. */
  readonly id: string;
  /** The series this point belongs to in the plot, e.g. 'nh=8', 'nh=64 · 8 heads', 'nh=8 quasi'. */
  readonly series: string;
  readonly hiddenSize: number;
  readonly inputSize: number;
  /** undefined: the dense GRU. */
  readonly heads: number | undefined;
  readonly jacobian: JacobianKind;
  /** The Jacobian's block size s (n for dense, 1 for diagonal, n/heads for multi-head). */
  readonly blockSize: number;
  readonly T: number;
  readonly batch: number;
}

/** 1000 → '1e3', 1500 → '1500'. */
export function formatT(T: number): string {
  const e = Math.log10(T);
  return Number.isInteger(e) && e >= 3 ? `1e${e}` : String(T);
}

function point(
  nh: number,
  heads: number | undefined,
  jacobian: JacobianKind,
  T: number,
  batch: number,
): GridPoint {
  const blockSize = jacobian === 'diagonal' ? 1 : heads === undefined ? nh : nh / heads;
  const model = heads === undefined ? `gru-n${nh}` : `mhgru-n${nh}h${heads}`;
  const series =
    heads !== undefined
      ? `nh=${nh} · ${heads} heads`
      : jacobian === 'diagonal'
        ? `nh=${nh} quasi`
        : `nh=${nh}`;
  return {
    id: `${model}-T${formatT(T)}-${jacobian}`,
    series,
    hiddenSize: nh,
    inputSize: nh,
    heads,
    jacobian,
    blockSize,
    T,
    batch,
  };
}

/**
 * The benchmark grid, shortest sequences first so results arrive early. A quasi-DEER point follows
 * its dense twin, whose sequential and onnxruntime timings it reuses.
 */
export function buildGrid(
  o: Pick<BenchOptions, 'nh' | 'T' | 'batch' | 'heads' | 'headsSize' | 'quasi'>,
): GridPoint[] {
  checkHeads(o.heads, o.headsSize);
  const Ts = [...new Set(o.T)].sort((a, b) => a - b);
  const nhs = [...new Set(o.nh)].sort((a, b) => a - b);
  const heads = [...new Set(o.heads)].sort((a, b) => a - b);
  const grid: GridPoint[] = [];
  for (const T of Ts) {
    for (const nh of nhs) {
      grid.push(point(nh, undefined, 'dense', T, o.batch));
      // For n = 1 the diagonal is the dense Jacobian: no quasi twin.
      if (o.quasi && nh > 1) grid.push(point(nh, undefined, 'diagonal', T, o.batch));
    }
    for (const h of heads) grid.push(point(o.headsSize, h, 'block', T, o.batch));
  }
  return grid;
}

/**
 * Bytes a DEER solve holds at once: the Jacobian blocks T·B·n·s plus about six [B, T, n]
 * sequences (x, iterate, shifted iterate, F, c, new iterate), and the sequential result.
 */
export function estimateBytes(p: GridPoint, bytesPerNumber: number): number {
  const seq = p.batch * p.T * p.hiddenSize;
  return (p.batch * p.T * p.hiddenSize * p.blockSize + 7 * seq) * bytesPerNumber;
}
