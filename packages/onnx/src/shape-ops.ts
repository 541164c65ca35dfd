import { OnnxInputError, OnnxUnsupportedError } from './errors.js';
import type { OnnxNode } from './model.js';
import { attrValue, onnx, toInt } from './proto.js';
import type { OnnxData, OnnxTensor } from './tensor.js';

/** The data-movement ops that may surround a recurrent node (PyTorch exports use them). */
export const SHAPE_OPS = ['Identity', 'Transpose', 'Squeeze', 'Unsqueeze'] as const;

export function isShapeOp(op: string): boolean {
  return (SHAPE_OPS as readonly string[]).includes(op);
}

/** The attributes each shape op takes (all lists of integers); any other is refused. */
const SHAPE_OP_ATTRIBUTES: Readonly<Record<(typeof SHAPE_OPS)[number], readonly string[]>> = {
  Identity: [],
  Transpose: ['perm'],
  Squeeze: ['axes'],
  Unsqueeze: ['axes'],
};

/**
 * A shape op's attributes: a name it does not take (a misspelt `perm` had been ignored, and the
 * default reversal transposed the input) or a value that is not a list of integers is refused, as
 * onnxruntime refuses the model.
 */
function checkShapeOpAttributes(node: OnnxNode): void {
  const takes = SHAPE_OP_ATTRIBUTES[node.op as (typeof SHAPE_OPS)[number]];
  for (const a of node.attributes) {
    const name = a.name ?? '';
    if (!takes.includes(name))
      throw new OnnxUnsupportedError(node.name, name, attrValue(a), takes.length ? `${node.op} takes only ${takes.join(', ')}` : `${node.op} takes no attributes`);
    if (a.type !== onnx.AttributeProto.AttributeType.INTS)
      throw new OnnxUnsupportedError(node.name, name, attrValue(a), 'a list of integers (INTS)');
  }
}

/**
 * Squeeze and Unsqueeze take their axes as an attribute before opset 13 and as a second input from
 * 13 on (Unsqueeze must have them); the other form is refused, as onnxruntime refuses the model.
 * Every shape op's attributes are checked too (checkShapeOpAttributes).
 */
export function checkShapeOpForms(nodes: readonly OnnxNode[], opset: number): void {
  for (const node of nodes) {
    if (node.domain !== '' && node.domain !== 'ai.onnx') continue;
    if (isShapeOp(node.op)) checkShapeOpAttributes(node);
    if (node.op !== 'Squeeze' && node.op !== 'Unsqueeze') continue;
    const attr = node.attributes.some((a) => a.name === 'axes');
    const input = Boolean(node.inputs[1]);
    const asInput = opset >= 13;
    const form = asInput ? 'an input (opset ≥ 13)' : 'an attribute (opset < 13)';
    if (asInput ? attr : input)
      throw new OnnxUnsupportedError(node.name, 'axes', asInput ? 'an attribute' : 'an input', `axes as ${form}; the model imports opset ${opset}`);
    if (node.op === 'Unsqueeze' && !(asInput ? input : attr))
      throw new OnnxUnsupportedError(node.name, 'axes', 'none', `axes as ${form}: Unsqueeze needs them`);
  }
}

/** Evaluate a shape op on host tensors; `value(name)` gives its inputs. */
export function runShapeOp(node: OnnxNode, value: (name: string) => OnnxTensor): OnnxTensor {
  const x = value(node.inputs[0] ?? '');
  if (node.op === 'Identity') return x;
  if (node.op === 'Transpose') return transpose(node, x);
  const axes = readAxes(node, value);
  const rank = node.op === 'Squeeze' ? x.dims.length : x.dims.length + axes.length;
  const norm = axes.map((a) => (a < 0 ? a + rank : a));
  if (norm.some((a) => a < 0 || a >= rank) || new Set(norm).size !== norm.length) {
    throw new OnnxUnsupportedError(node.name, 'axes', axes, `distinct axes in [${-rank}, ${rank - 1}]`);
  }
  if (node.op === 'Squeeze') {
    const drop = axes.length > 0 ? new Set(norm) : new Set(x.dims.flatMap((d, i) => (d === 1 ? [i] : [])));
    for (const a of drop) {
      if (x.dims[a] !== 1)
        throw new OnnxInputError(
          node.inputs[0] ?? '',
          `${node.name} squeezes axis ${a} of size ${x.dims[a]}`,
        );
    }
    return { data: x.data, dims: x.dims.filter((_, i) => !drop.has(i)) };
  }
  const inserted = new Set(norm);
  const dims: number[] = [];
  let src = 0;
  for (let i = 0; i < rank; i++) dims.push(inserted.has(i) ? 1 : x.dims[src++]!);
  return { data: x.data, dims };
}

function readAxes(node: OnnxNode, value: (name: string) => OnnxTensor): number[] {
  const attr = node.attributes.find((a) => a.name === 'axes');
  if (attr) return (attr.ints ?? []).map((v) => toInt(v));
  const name = node.inputs[1];
  if (!name) return [];
  const data = value(name).data;
  return Array.from({ length: data.length }, (_, i) => Number(data[i]!));
}

function transpose(node: OnnxNode, x: OnnxTensor): OnnxTensor {
  const rank = x.dims.length;
  const attr = node.attributes.find((a) => a.name === 'perm');
  const perm = attr
    ? (attr.ints ?? []).map((v) => toInt(v))
    : Array.from({ length: rank }, (_, i) => rank - 1 - i);
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new OnnxUnsupportedError(node.name, 'perm', perm, `a permutation of 0..${rank - 1}`);
  }
  const dims = perm.map((p) => x.dims[p]!);
  const srcStrides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) srcStrides[i] = srcStrides[i + 1]! * x.dims[i + 1]!;
  const strides = perm.map((p) => srcStrides[p]!);
  const out = new (x.data.constructor as new (n: number) => OnnxData)(x.data.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let s = 0;
    for (let i = 0; i < rank; i++) s += idx[i]! * strides[i]!;
    (out as unknown as number[])[o] = (x.data as unknown as number[])[s]!;
    for (let i = rank - 1; i >= 0; i--) {
      if (++idx[i]! < dims[i]!) break;
      idx[i] = 0;
    }
  }
  return { data: out, dims };
}
