import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeerError, InvalidArgumentError, Rng } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import {
  AdamW,
  type Checkpoint,
  CheckpointError,
  decodeCheckpoint,
  encodeCheckpoint,
  readCheckpoint,
  removeStaleStaging,
  SequenceClassifier,
  STALE_STAGING_MS,
  stageCheckpoint,
  stagingPath,
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

  it('the checksum covers the header: an edited step, lr or RNG state is rejected', () => {
    const bytes = encodeCheckpoint(sample(7));
    const text = new TextDecoder('latin1').decode(bytes);
    const rngAt = text.indexOf('"rng":[') + 7;
    const digit = text[rngAt] === '9' ? '8' : '9';
    for (const [from, to] of [
      ['"step":1,', '"step":9,'],
      ['"lr":0.001', '"lr":0.002'],
      [text.slice(rngAt - 7, rngAt + 1), `"rng":[${digit}`],
    ] as const) {
      const at = text.indexOf(from);
      expect(at).toBeGreaterThan(0);
      expect(to).toHaveLength(from.length);
      const edited = Uint8Array.from(bytes);
      edited.set(new TextEncoder().encode(to), at);
      expect(edited).not.toEqual(bytes);
      expect(() => decodeCheckpoint(edited, 'e.ckpt')).toThrow(/e\.ckpt: checksum mismatch.*header/);
    }
  });

  it('a consistent checksum does not vouch for the layout: overlapping arrays or a header of another version are refused', () => {
    // A file rebuilt around an edited header, checksum and all (what a hand-edit or a buggy writer makes).
    const rebuild = (bytes: Uint8Array, edit: (h: { version: number; arrays: { offset: number }[] }) => void) => {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const H = view.getUint32(12, true);
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + H)));
      edit(header);
      const json = new TextEncoder().encode(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8));
      const data = bytes.subarray(16 + H, bytes.length - 4);
      const out = new Uint8Array(16 + json.length + data.length + 4);
      out.set(bytes.subarray(0, 16));
      const ov = new DataView(out.buffer);
      ov.setUint32(12, json.length, true);
      out.set(json, 16);
      out.set(data, 16 + json.length);
      let h = 0x811c9dc5;
      for (let i = 0; i < out.length - 4; i++) h = Math.imul(h ^ out[i]!, 0x01000193) >>> 0;
      ov.setUint32(out.length - 4, h >>> 0, true);
      return out;
    };
    const bytes = encodeCheckpoint(sample(3));
    // The rebuild itself keeps a good file good.
    expect(decodeCheckpoint(rebuild(bytes, () => {}), 'same.ckpt').step).toBe(decodeCheckpoint(bytes).step);
    const overlapping = rebuild(bytes, (h) => {
      h.arrays[1]!.offset = h.arrays[0]!.offset;
    });
    expect(() => decodeCheckpoint(overlapping, 'o.ckpt')).toThrow(/o\.ckpt: array .* overlaps the one before/);
    const version = rebuild(bytes, (h) => {
      h.version = 3;
    });
    expect(() => decodeCheckpoint(version, 'v.ckpt')).toThrow(/v\.ckpt: header says format version 3, the preamble 2/);
  });

  it('refuses format version 1 with a typed error that says why', () => {
    const bytes = encodeCheckpoint(sample(8));
    new DataView(bytes.buffer).setUint32(8, 1, true);
    let err: unknown;
    try {
      decodeCheckpoint(bytes, 'v1.ckpt');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err).toBeInstanceOf(DeerError);
    expect((err as Error).message).toMatch(/v1\.ckpt: format version 1 is no longer read/);
  });

  it('every flipped byte and every truncation gives a CheckpointError, never another error', () => {
    const bytes = encodeCheckpoint(sample(9));
    const rng = new Rng(42);
    for (let k = 0; k < 300; k++) {
      const b = Uint8Array.from(bytes);
      const at = Math.floor(rng.uniform() * b.length);
      b[at]! ^= 1 + Math.floor(rng.uniform() * 255);
      expect(() => decodeCheckpoint(b, 'f.ckpt')).toThrow(CheckpointError);
      const cut = bytes.subarray(0, Math.floor(rng.uniform() * bytes.length));
      expect(() => decodeCheckpoint(cut, 't.ckpt')).toThrow(CheckpointError);
    }
  });

  it('staging files of a killed write are removed by the next write or read; live ones are kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deer-ckpt-stale-'));
    const path = join(dir, 'run.ckpt');
    // A process that has exited: its pid names a writer that can no longer finish.
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    const killed = join(dir, `.run.ckpt.tmp-${dead}-0badf00d`);
    const legacy = join(dir, `.run.ckpt.tmp-${dead}`); // the old naming, without the random suffix
    const live = join(dir, `.run.ckpt.tmp-${process.ppid}-12345678`);
    const old = join(dir, `.run.ckpt.tmp-${process.ppid}-87654321`);
    const unrelated = join(dir, '.other.ckpt.tmp-1-00000000');
    for (const f of [killed, legacy, live, old, unrelated]) writeFileSync(f, 'partial');
    const longAgo = (Date.now() - 2 * STALE_STAGING_MS) / 1000;
    utimesSync(old, longAgo, longAgo);
    await writeCheckpoint(path, sample(10));
    expect(readdirSync(dir).sort()).toEqual(
      ['.other.ckpt.tmp-1-00000000', `.run.ckpt.tmp-${process.ppid}-12345678`, 'run.ckpt'].sort(),
    );
    // On open too.
    writeFileSync(killed, 'partial');
    await readCheckpoint(path);
    expect(readdirSync(dir)).not.toContain(killed.split('/').pop());
    // Once the live writer's file is stale, it goes as well.
    utimesSync(live, longAgo, longAgo);
    expect(await removeStaleStaging(path)).toEqual([live]);
  });

  it('staging names are unique per write', () => {
    expect(stagingPath('/x/a.ckpt')).not.toBe(stagingPath('/x/a.ckpt'));
    expect(stagingPath('/x/a.ckpt')).toMatch(/^\/x\/\.a\.ckpt\.tmp-\d+-[0-9a-f]{8}$/);
  });

  it('encode refuses what decode would refuse or JSON would not keep', () => {
    const c = sample(11);
    const params = JSON.parse('{"__proto__": [1, 2]}') as Record<string, Float64Array>;
    expect(() => encodeCheckpoint({ ...c, params })).toThrow(InvalidArgumentError);
    expect(() => encodeCheckpoint({ ...c, params })).toThrow(/__proto__/);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const config of [{ n: 1n }, { lr: Number.NaN }, [Number.POSITIVE_INFINITY], cycle]) {
      expect(() => encodeCheckpoint({ ...c, config })).toThrow(InvalidArgumentError);
      expect(() => encodeCheckpoint({ ...c, config })).toThrow(/checkpoint config/);
    }
    expect(() => encodeCheckpoint({ ...c, extra: { at: Number.NaN } })).toThrow(/checkpoint extra/);
  });

  it('decodes an ArrayBuffer and refuses what is not bytes with a typed error', () => {
    const c = sample(12);
    const bytes = encodeCheckpoint(c);
    expect(decodeCheckpoint(bytes.slice().buffer).step).toBe(c.step);
    expect(() => decodeCheckpoint(null as never)).toThrow(InvalidArgumentError);
  });

  it('write failures are CheckpointErrors naming the path, and leave no staging file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deer-ckpt-'));
    const missing = join(dir, 'missing', 'm.ckpt');
    const err = await writeCheckpoint(missing, sample(13)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as CheckpointError).file).toBe(missing);
    expect((err as Error).message).toMatch(/cannot be written \(ENOENT\)/);
    const adir = join(dir, 'adir');
    mkdirSync(adir);
    const err2 = await writeCheckpoint(adir, sample(13)).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(CheckpointError);
    expect((err2 as CheckpointError).file).toBe(adir);
    expect(readdirSync(dir)).toEqual(['adir']);
  });
});
