import { type Cell, cells } from '@deerjs/core';
import type { NodeActivation, RecurrentOp } from './recurrent.js';

export interface CellSpec {
  readonly op: RecurrentOp;
  readonly inputSize: number;
  readonly hiddenSize: number;
  readonly linearBeforeReset: 0 | 1;
  readonly clip: number | undefined;
  /** The direction's activations (f, g[, h]) with α and β resolved. */
  readonly activations?: readonly NodeActivation[];
  /** LSTM: peephole weights P present. */
  readonly peephole?: boolean;
  /** LSTM: input_forget = 1. */
  readonly inputForget?: boolean;
}

/**
 * GRU and LSTM gate pre-activations are clipped to ±FLT_MAX where a node sets no clip, as
 * onnxruntime does: a pre-activation that overflows float32 then meets a zero as a large finite
 * number (0), not as ∞ · 0 (NaN) — an LSTM with a Relu gate at weights of 1e20 gave NaN here and 0
 * there. onnxruntime's RNN does not clip (a Relu RNN overflows to ∞ there), so neither does ours.
 */
export const FLT_MAX = 3.4028234663852886e38;

/** The core cell for an ONNX node (ONNX weight layouts are the built-in cells' own). */
export function recurrentCell(spec: CellSpec): Cell {
  const { op, inputSize, hiddenSize, linearBeforeReset, activations } = spec;
  const clip = spec.clip ?? (op === 'RNN' ? undefined : FLT_MAX);
  if (op === 'GRU') return cells.gru({ inputSize, hiddenSize, linearBeforeReset, clip, activations });
  if (op === 'LSTM') {
    return cells.lstm({
      inputSize,
      hiddenSize,
      clip,
      activations,
      peephole: spec.peephole ?? false,
      inputForget: spec.inputForget ?? false,
    });
  }
  return cells.elman({ inputSize, hiddenSize, clip, activations });
}
