import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import {
  AdamW,
  type Checkpoint,
  CheckpointError,
  decodeCheckpoint,
  encodeCheckpoint,
  readCheckpoint,
  SequenceClassifier,
  stageCheckpoint,
  writeCheckpoint,
} from '../src/index.js';

function sample(seed: number): Checkpoint {
  const model = new SequenceClassifier({
    inputSize: 2,
    classes: 3,
    cell: 'mhgru',
    heads: 2,
    hiddenSize: 4,
    layers: 2,
    residual: true,
    pooling: 'mean',
  });
  const params = model.init(seed);
  const opt = new AdamW(params);
  const rng = new Rng(seed);
  const grads = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, rng.normalArray(v.length)]));
  opt.step(params, grads, 1e-3);
  params['head.b']![0] = -0; // signed zero and awkward values survive too
  params['head.b']![1] = 5e-324;
  return {
    step: 1,
    params,
    optimizer: opt.state,
    rng: rng.state,
    config: { model: model.config, lr: 1e-3 },
    extra: { epoch: 0, index: 8 },
  };
}

const bits = (v: Float64Array) => Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length * 2));

describe('checkpoints', () => {
  it('round-trip bit-exact, including the RNG state', () => {
    const c = sample(1);
    const d = decodeCheckpoint(encodeCheckpoint(c));
    expect(d.step).toBe(1);
    expect(d.config).toEqual(c.config);
    expect(d.extra).toEqual(c.extra);
    expect(d.optimizer.step).toBe(1);
    for (const [k, v] of Object.entries(c.params)) expect(bits(d.params[k]!)).toEqual(bits(v));
    for (const [k, v] of Object.entries(c.optimizer.m)) expect(bits(d.optimizer.m[k]!)).toEqual(bits(v));
    for (const [k, v] of Object.entries(c.optimizer.v)) expect(bits(d.optimizer.v[k]!)).toEqual(bits(v));
    const a = new Rng(0);
    a.state = [...c.rng] as [number, number, number, number];
    const b = new Rng(0);
    b.state = [...d.rng] as [number, number, number, number];
    expect(a.nextU32()).toBe(b.nextU32());
  });

  it('rejects damaged files with the file name and the problem', () => {
    const bytes = encodeCheckpoint(sample(2));
    expect(() => decodeCheckpoint(bytes.subarray(0, bytes.length - 3), 'x.ckpt')).toThrow(
      /x\.ckpt: truncated/,
    );
    const bad = Uint8Array.from(bytes);
    bad[0] = 0x41;
    expect(() => decodeCheckpoint(bad, 'y.ckpt')).toThrow(CheckpointError);
    const flipped = Uint8Array.from(bytes);
    flipped[flipped.length - 1]! ^= 1;
    expect(() => decodeCheckpoint(flipped, 'z.ckpt')).toThrow(/checksum/);
  });

  it('write is atomic: a crash before the rename leaves the previous checkpoint intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deer-ckpt-'));
    const path = join(dir, 'model.ckpt');
    const first = sample(3);
    await writeCheckpoint(path, first);
    const before = readFileSync(path);
    // Simulated crash: the new checkpoint is staged (written, flushed) but never renamed into place.
    const tmp = await stageCheckpoint(path, sample(4));
    expect(readdirSync(dir).sort()).toEqual([tmp.split('/').pop(), 'model.ckpt'].sort());
    expect(readFileSync(path).equals(before)).toBe(true);
    const back = await readCheckpoint(path);
    expect(bits(back.params['head.W']!)).toEqual(bits(first.params['head.W']!));
    // A crash mid-way through staging leaves a partial temp file; the checkpoint is still readable.
    writeFileSync(tmp, encodeCheckpoint(sample(5)).subarray(0, 100));
    expect((await readCheckpoint(path)).step).toBe(1);
    // The next successful write replaces it.
    await writeCheckpoint(path, { ...sample(6), step: 7 });
    expect((await readCheckpoint(path)).step).toBe(7);
    expect(readdirSync(dir)).toEqual(['model.ckpt']);
  });
});
