import { type Cell, cells } from '@deerjs/core';
import type { RecurrentOp } from './recurrent.js';

export interface CellSpec {
  readonly op: RecurrentOp;
  readonly inputSize: number;
  readonly hiddenSize: number;
  readonly linearBeforeReset: 0 | 1;
  readonly clip: number | undefined;
}

/** The core cell for an ONNX node (ONNX weight layouts are the built-in cells' own). */
export function recurrentCell(spec: CellSpec): Cell {
  const { op, inputSize, hiddenSize, linearBeforeReset, clip } = spec;
  if (op === 'GRU') return cells.gru({ inputSize, hiddenSize, linearBeforeReset, clip });
  if (op === 'LSTM') return cells.lstm({ inputSize, hiddenSize, clip });
  return cells.elman({ inputSize, hiddenSize, clip });
}
