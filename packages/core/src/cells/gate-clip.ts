import { clip, type Vec } from '../cell/lang.js';

/** ONNX's cell clip as a function of a gate pre-activation (identity when no clip is set). */
export function gateClip(c: number | undefined): (v: Vec) => Vec {
  if (c === undefined) return (v) => v;
  if (!(c > 0) || !Number.isFinite(c)) throw new Error(`clip must be a positive finite number, got ${c}`);
  return (v) => clip(v, c);
}
