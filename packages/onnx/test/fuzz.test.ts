import { DeerError, Rng } from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import onnxProto from 'onnx-proto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildRecurrentModel,
  loadOnnxModel,
  type OnnxTensor,
  ortReference,
  type RecurrentModelSpec,
  randomRecurrentWeights,
  runOnnxModel,
} from '../src/index.js';

/**
 * A bounded, seeded fuzz of the loader and the runner: a few hundred mutated models (flipped
 * bytes, truncations, attributes of the wrong type or value, wrong shapes and element types,
 * renamed edges). Every outcome must be a typed error (a DeerError: the OnnxError classes and
 * core's errors) or a result equal to onnxruntime's on the same bytes — never a TypeError,
 * RangeError or a hang.
 */
const { onnx } = onnxProto;
type Model = InstanceType<typeof onnx.ModelProto>;
const AType = onnx.AttributeProto.AttributeType;

const m = 3;
const n = 4;
const T = 5;
const B = 2;
const backend = createCpuBackend({ dtype: 'float32' });
afterAll(() => backend.destroy());

function base(rng: Rng): { bytes: Uint8Array; spec: RecurrentModelSpec } {
  const ops = ['GRU', 'LSTM', 'RNN'] as const;
  const op = ops[Math.floor(rng.uniform() * 3)]!;
  const direction = (['forward', 'reverse', 'bidirectional'] as const)[Math.floor(rng.uniform() * 3)]!;
  const spec: RecurrentModelSpec = {
    op,
    inputSize: m,
    hiddenSize: n,
    direction,
    linearBeforeReset: rng.uniform() < 0.5 ? 0 : 1,
    weights: randomRecurrentWeights({
      op,
      inputSize: m,
      hiddenSize: n,
      direction,
      seed: 1,
      peephole: op === 'LSTM' && rng.uniform() < 0.3,
    }),
    initialState: rng.uniform() < 0.5,
    sequenceLens: rng.uniform() < 0.3,
    ...(rng.uniform() < 0.3 ? { clip: 1.5 } : {}),
  };
  // Copies (Uint8Array.from): encoded messages are Node Buffers, whose slice() is a view.
  return { bytes: Uint8Array.from(buildRecurrentModel(spec)), spec };
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)]!;

/** One structural mutation of the decoded model. */
function mutateProto(rng: Rng, model: Model): string {
  const graph = model.graph!;
  const node = graph.node![0]!;
  const attrs = node.attribute!;
  const kind = Math.floor(rng.uniform() * 9);
  switch (kind) {
    case 0: {
      // An attribute of another type.
      const a = pick(rng, attrs);
      a.type = pick(rng, [
        AType.FLOAT,
        AType.INT,
        AType.STRING,
        AType.INTS,
        AType.FLOATS,
        AType.STRINGS,
        AType.TENSOR,
        99 as typeof AType.INT,
      ]);
      if (a.type === AType.FLOAT) a.f = pick(rng, [Number.NaN, -1, 1e30, 0.5]);
      return `attribute ${a.name} retyped ${a.type}`;
    }
    case 1: {
      // An attribute of a bad value.
      const a = pick(rng, attrs);
      if (a.type === AType.INT) a.i = pick(rng, [-1, 0, 2, 7, 2 ** 40, 1e6]) as never;
      else if (a.type === AType.STRING)
        a.s = new TextEncoder().encode(pick(rng, ['sideways', '', 'FORWARD', '\u0000']));
      else if (a.type === AType.FLOAT) a.f = pick(rng, [Number.NaN, Number.POSITIVE_INFINITY, -3, 0]);
      return `attribute ${a.name} value`;
    }
    case 2: {
      // Extra attributes, including the activation ones with wrong contents.
      const extra = pick(rng, [
        {
          name: 'activations',
          type: AType.STRINGS,
          strings: [new TextEncoder().encode(pick(rng, ['Gelu', 'relu', 'HardSigmoid', '']))],
        },
        { name: 'activations', type: AType.INT, i: 3 },
        { name: 'activation_alpha', type: AType.FLOATS, floats: [Number.NaN] },
        { name: 'activation_alpha', type: AType.STRING, s: new TextEncoder().encode('x') },
        { name: 'activation_beta', type: AType.FLOATS, floats: [1, 2, 3, 4, 5, 6, 7, 8] },
        { name: 'input_forget', type: AType.INT, i: pick(rng, [0, 1, 2, -1]) },
        { name: 'input_forget', type: AType.FLOAT, f: 1 },
        { name: 'clip', type: AType.FLOAT, f: pick(rng, [0, -1, Number.NaN, 1e-30, 3]) },
        { name: 'hidden_size', type: AType.INT, i: pick(rng, [0, -4, 3, 5, 2 ** 31]) },
        { name: 'layout', type: AType.INT, i: pick(rng, [0, 1, 2]) },
        { name: 'bogus', type: AType.INT, i: 1 },
      ]);
      attrs.push(extra as never);
      return `extra attribute ${extra.name}`;
    }
    case 3: {
      // Initializer dims.
      const t = pick(rng, graph.initializer!);
      const dims = t.dims as number[];
      const i = Math.floor(rng.uniform() * (dims.length + 1));
      if (i === dims.length) dims.push(pick(rng, [1, 2, 0]));
      else dims[i] = pick(rng, [0, 1, -1, dims[i]! + 1, 2 ** 40]);
      return `initializer ${t.name} dims`;
    }
    case 4: {
      // Initializer element type.
      const t = pick(rng, graph.initializer!);
      t.dataType = pick(rng, [0, 2, 6, 7, 10, 11, 16, 99]);
      return `initializer ${t.name} type ${t.dataType}`;
    }
    case 5: {
      // Initializer data.
      const t = pick(rng, graph.initializer!);
      const raw = t.rawData!;
      t.rawData = raw.slice(0, Math.floor(rng.uniform() * raw.length));
      return `initializer ${t.name} raw_data cut`;
    }
    case 6: {
      // Node inputs and outputs renamed, dropped or added.
      const ins = node.input!;
      const i = Math.floor(rng.uniform() * (ins.length + 2));
      if (i < ins.length) ins[i] = pick(rng, ['', 'nope', 'X', 'W']);
      else ins.push(pick(rng, ['X', '', 'extra']));
      return 'node inputs';
    }
    case 7: {
      // Declared input shapes and types.
      const v = pick(rng, graph.input!);
      const tt = v.type!.tensorType!;
      if (rng.uniform() < 0.5) tt.elemType = pick(rng, [0, 6, 7, 10, 11]);
      else tt.shape!.dim = tt.shape!.dim!.slice(0, Math.floor(rng.uniform() * 4));
      return `input ${v.name} type/shape`;
    }
    default: {
      // The op itself.
      node.opType = pick(rng, ['GRU', 'LSTM', 'RNN', 'Gru', '']);
      node.domain = pick(rng, ['', 'ai.onnx', 'com.example']);
      return `op ${node.opType}/${node.domain}`;
    }
  }
}

function mutateBytes(rng: Rng, bytes: Uint8Array): { bytes: Uint8Array; what: string } {
  if (rng.uniform() < 0.4) {
    const cut = Math.floor(rng.uniform() * bytes.length);
    return { bytes: Uint8Array.from(bytes.subarray(0, cut)), what: `truncated to ${cut} bytes` };
  }
  const out = Uint8Array.from(bytes);
  const flips = 1 + Math.floor(rng.uniform() * 4);
  for (let k = 0; k < flips; k++)
    out[Math.floor(rng.uniform() * out.length)]! ^= 1 << Math.floor(rng.uniform() * 8);
  return { bytes: out, what: `${flips} bits flipped` };
}

/** Run-time inputs for the model's declared inputs (original, unmutated shapes). */
function inputsFor(spec: RecurrentModelSpec, rng: Rng): Record<string, OnnxTensor> {
  const nd = spec.direction === 'bidirectional' ? 2 : 1;
  const draw = (dims: number[]) => ({
    data: Float32Array.from(rng.uniformArray(dims.reduce((a, b) => a * b, 1))),
    dims,
  });
  const inputs: Record<string, OnnxTensor> = { X: draw([T, B, m]) };
  if (spec.initialState) {
    inputs.initial_h = draw([nd, B, n]);
    if (spec.op === 'LSTM') inputs.initial_c = draw([nd, B, n]);
  }
  if (spec.sequenceLens) {
    inputs.sequence_lens = { data: Int32Array.from({ length: B }, () => Math.floor(rng.uniform() * (T + 1))), dims: [B] };
  }
  return inputs;
}

function close(a: OnnxTensor, b: OnnxTensor): boolean {
  if (a.dims.join() !== b.dims.join()) return false;
  for (let i = 0; i < a.data.length; i++) {
    const x = Number(a.data[i]);
    const y = Number(b.data[i]);
    if (Number.isNaN(x) && Number.isNaN(y)) continue;
    if (!(Math.abs(x - y) <= 1e-4 * Math.max(1, Math.abs(y)))) return false;
  }
  return true;
}

describe('ONNX loader fuzz (seeded, bounded)', () => {
  it('every mutated model gives a typed error or onnxruntime’s result', async () => {
    const rng = new Rng(20251130);
    const outcomes: Record<string, number> = {};
    const untyped: string[] = [];
    const wrong: string[] = [];
    const started = Date.now();
    const COUNT = 400;
    for (let k = 0; k < COUNT; k++) {
      const { bytes: good, spec } = base(rng);
      let bytes: Uint8Array;
      let what: string;
      if (rng.uniform() < 0.4) ({ bytes, what } = mutateBytes(rng, good));
      else {
        const model = onnx.ModelProto.decode(good);
        what = mutateProto(rng, model);
        if (rng.uniform() < 0.3) what += `; ${mutateProto(rng, model)}`;
        bytes = Uint8Array.from(onnx.ModelProto.encode(model).finish());
      }
      const label = `#${k} ${spec.op} ${spec.direction}: ${what}`;
      const inputs = inputsFor(spec, rng);
      let outcome: string;
      try {
        const model = loadOnnxModel(bytes);
        const got = await runOnnxModel(model, backend, inputs, { maxIter: 50 });
        // Ran: the result must be onnxruntime's on the same bytes, where onnxruntime runs them.
        let ref: Record<string, OnnxTensor> | undefined;
        // onnxruntime's protobuf parser is stricter than protobufjs about some corrupt bytes: then
        // it runs the model as deerjs read it (decoded and encoded again).
        const readBack = Uint8Array.from(onnx.ModelProto.encode(onnx.ModelProto.decode(bytes)).finish());
        for (const candidate of [bytes, readBack]) {
          try {
            ref = await ortReference(candidate, inputs);
            break;
          } catch (e) {
            if (process.env.FUZZ_VERBOSE) console.log(`${label} ORT: ${(e as Error).message.slice(0, 200)}`);
          }
        }
        if (ref === undefined) {
          // onnxruntime is stricter about some declarations (value types, shapes): then the result
          // must be onnxruntime's on the unmutated model, i.e. the mutation did not change the math.
          const original = await ortReference(good, inputs);
          const ok = Object.keys(original).every(
            (name) => got[name] === undefined || close(got[name]!, original[name]!),
          );
          if (!ok) wrong.push(`${label} (onnxruntime rejects it; differs from the unmutated model)`);
          if (process.env.FUZZ_VERBOSE) console.log(label);
          outcome = 'ran, equal to onnxruntime on the unmutated model';
        } else {
          const names = Object.keys(ref);
          const ok = names.every((name) => got[name] !== undefined && close(got[name]!, ref![name]!));
          if (!ok) wrong.push(label);
          outcome = 'ran, equal to onnxruntime';
        }
      } catch (err) {
        if (err instanceof DeerError) outcome = err.name;
        else {
          outcome = `untyped ${(err as Error)?.name}`;
          untyped.push(`${label}: ${(err as Error)?.name}: ${(err as Error)?.message}`);
        }
      }
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    console.log(
      `fuzz outcomes over ${COUNT} models in ${Date.now() - started} ms: ${JSON.stringify(outcomes)}`,
    );
    expect(untyped).toEqual([]);
    expect(wrong).toEqual([]);
  }, 120_000);
});
