import { type Backend, describeValue, InvalidArgumentError, UnsupportedOptionError } from '@deerjs/core';
import { OnnxInputError, OnnxUnsupportedError } from './errors.js';
import type { OnnxRecurrentModel, OnnxValueInfo } from './model.js';
import { isRecurrentOp } from './recurrent.js';
import { CellCache, type RecurrentRunOptions, runRecurrentNode } from './run-recurrent.js';
import { isShapeOp, runShapeOp, SHAPE_OPS } from './shape-ops.js';
import { ELEM_NAMES, elemTypeOf, type OnnxData, type OnnxTensor } from './tensor.js';

/** A run-time input: a host tensor, or bare data when the model declares the input's dims statically. */
export type OnnxInput = OnnxTensor | OnnxData;

export type RunOnnxOptions = RecurrentRunOptions;

const caches = new WeakMap<OnnxRecurrentModel, CellCache>();

/**
 * Run a model whose graph holds GRU/LSTM/RNN nodes, optionally with Identity, Transpose, Squeeze and
 * Unsqueeze around them, every recurrent node solved by DEER on `backend`. Returns the graph outputs.
 */
export async function runOnnxModel(
  model: OnnxRecurrentModel,
  backend: Backend,
  inputs: Readonly<Record<string, OnnxInput>>,
  options: RunOnnxOptions = {},
): Promise<Record<string, OnnxTensor>> {
  if (
    model === null ||
    typeof model !== 'object' ||
    !Array.isArray(model.nodes) ||
    !Array.isArray(model.inputs) ||
    !(model.initializers instanceof Map)
  )
    throw new InvalidArgumentError('runOnnxModel model', 'a model from loadOnnxModel', describeValue(model));
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new InvalidArgumentError('runOnnxModel options', 'an object of options', describeValue(options));
  const { onSolve } = options;
  if (onSolve !== undefined && typeof onSolve !== 'function')
    throw new InvalidArgumentError('runOnnxModel onSolve', 'a function', describeValue(onSolve));
  for (const node of model.nodes) {
    const supported = isRecurrentOp(node.op) || isShapeOp(node.op);
    if (!supported || (node.domain !== '' && node.domain !== 'ai.onnx')) {
      const op = node.domain ? `${node.domain}.${node.op}` : node.op;
      throw new OnnxUnsupportedError(node.name, 'op_type', op, `GRU, LSTM, RNN, ${SHAPE_OPS.join(', ')}`);
    }
  }
  // The initial state and the sequence lengths come from the model's inputs (initial_h,
  // sequence_lens): deer's own options for them would be overwritten, so they are refused.
  for (const name of ['h0', 'lengths'] as const) {
    if (Object.hasOwn(options, name))
      throw new UnsupportedOptionError(name, (options as Record<string, unknown>)[name], `nothing: ${name === 'h0' ? 'initial_h (and initial_c)' : 'sequence_lens'} of the model's inputs sets it`);
  }
  if (
    backend === null ||
    typeof backend !== 'object' ||
    typeof (backend as { tensor?: unknown }).tensor !== 'function'
  )
    throw new InvalidArgumentError('runOnnxModel backend', 'a deerjs Backend', describeValue(backend));
  if (inputs === null || typeof inputs !== 'object')
    throw new OnnxInputError(
      '<inputs>',
      `expected an object of inputs by name, got ${inputs === null ? 'null' : typeof inputs}`,
    );
  const values = new Map<string, OnnxTensor>(model.initializers);
  for (const info of model.inputs) values.set(info.name, checkInput(info, inputs[info.name]));
  for (const name of Object.keys(inputs)) {
    if (model.inputs.some((i) => i.name === name)) continue;
    // Only an initializer that is also a graph input may be overridden by the caller; any other
    // initializer is a constant (ONNX IR ≥ 4), which onnxruntime keeps whatever is fed.
    const info = model.initializerInputs?.find((i) => i.name === name);
    if (!info) {
      const what = model.initializers.has(name) ? 'a constant initializer, not' : 'not';
      throw new OnnxInputError(
        name,
        `${what} an input of the model (inputs: ${[...model.inputs, ...(model.initializerInputs ?? [])].map((i) => i.name).join(', ')})`,
      );
    }
    values.set(name, checkInput(info, inputs[name]));
  }
  const value = (name: string): OnnxTensor => {
    const v = values.get(name);
    if (!v)
      throw new OnnxInputError(
        name,
        'no value: neither an initializer, a graph input nor an earlier node output',
      );
    return v;
  };
  let cells = caches.get(model);
  if (!cells) {
    cells = new CellCache();
    caches.set(model, cells);
  }
  let recurrent = 0;
  for (const node of model.nodes) {
    if (isRecurrentOp(node.op)) {
      const spec = model.recurrentNodes[recurrent++]!;
      const outs = await runRecurrentNode(backend, spec, value, cells, options);
      for (const [name, t] of outs) values.set(name, t);
    } else if (node.outputs[0]) {
      values.set(node.outputs[0], runShapeOp(node, value));
    }
  }
  const result: Record<string, OnnxTensor> = {};
  for (const out of model.outputs) result[out.name] = value(out.name);
  return result;
}

function checkInput(
  info: OnnxValueInfo | undefined,
  given: OnnxInput | undefined,
  name = info?.name ?? '',
): OnnxTensor {
  if (given === undefined)
    throw new OnnxInputError(name, 'missing: every graph input without an initializer must be given');
  let t: OnnxTensor;
  if (ArrayBuffer.isView(given)) {
    const dims = info?.dims;
    if (!dims || dims.some((d) => typeof d !== 'number')) {
      throw new OnnxInputError(
        name,
        `the model does not fix its dims (${JSON.stringify(dims)}): pass { data, dims }`,
      );
    }
    t = { data: given, dims: dims as number[] };
  } else if (
    typeof given === 'object' &&
    given !== null &&
    ArrayBuffer.isView(given.data) &&
    Array.isArray(given.dims)
  ) {
    t = given;
  } else {
    throw new OnnxInputError(
      name,
      'expected { data: Float32Array | Float64Array | Int32Array | BigInt64Array, dims: number[] }',
    );
  }
  if (
    !(
      t.data instanceof Float32Array ||
      t.data instanceof Float64Array ||
      t.data instanceof Int32Array ||
      t.data instanceof BigInt64Array
    )
  ) {
    throw new OnnxInputError(name, `unsupported data type ${(t.data as object).constructor.name}`);
  }
  const size = t.dims.reduce((a, b) => a * b, 1);
  if (t.dims.some((d) => !Number.isInteger(d) || d < 0) || size !== t.data.length) {
    throw new OnnxInputError(name, `dims [${t.dims.join(', ')}] do not match ${t.data.length} values`);
  }
  if (info) {
    const elem = ELEM_NAMES[elemTypeOf(t.data)];
    // Strict, as ONNX (and onnxruntime) is: a double model fed float32 X had run in float32 and
    // answered in float32, and a float model fed float64 in float64.
    if (elem !== info.elemType) {
      throw new OnnxInputError(name, `the model declares ${info.elemType}, got ${elem}`);
    }
    if (
      info.dims &&
      (info.dims.length !== t.dims.length ||
        info.dims.some((d, i) => typeof d === 'number' && d !== t.dims[i]))
    ) {
      throw new OnnxInputError(
        name,
        `the model declares dims [${info.dims.join(', ')}], got [${t.dims.join(', ')}]`,
      );
    }
  }
  return t;
}
