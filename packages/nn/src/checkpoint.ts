import { DeerError, describeValue, InvalidArgumentError } from '@deerjs/core';
import type { Params } from './params.js';

/**
 * Checkpoint format, version 2 (all integers little-endian):
 *
 *   bytes 0..7    magic "DEERCKPT"
 *   bytes 8..11   uint32 format version (2)
 *   bytes 12..15  uint32 header length H (a multiple of 8)
 *   bytes 16..    H bytes of UTF-8 JSON (padded with spaces): CheckpointHeader
 *   then          the data section: float64 arrays, each at header.arrays[i].offset bytes from its start
 *   last 4 bytes  uint32 FNV-1a 32 checksum of every byte before it (preamble, header and data)
 *
 * header.dataBytes and the checksum catch truncated, damaged or edited files: a changed step, learning
 * rate or RNG state in the header fails the checksum like a flipped bit in the data. (Version 1 checked
 * the data section only; it is refused with a CheckpointError that says so.) Float64 keeps parameters
 * and optimizer moments bit-exact, so a resumed run continues exactly.
 */
export const CHECKPOINT_MAGIC = 'DEERCKPT';
export const CHECKPOINT_VERSION = 2;
const TRAILER = 4;

export interface Checkpoint {
  /** Optimizer steps taken so far. */
  readonly step: number;
  readonly params: Params;
  readonly optimizer: { readonly step: number; readonly m: Params; readonly v: Params };
  /** State of the training RNG (core's Rng.state). */
  readonly rng: readonly [number, number, number, number];
  /** The run's configuration (model, task, hyperparameters), JSON-serialisable. */
  readonly config: unknown;
  /** Anything else the trainer needs to continue (epoch, position in the epoch), JSON-serialisable. */
  readonly extra?: unknown;
}

interface ArrayEntry {
  readonly name: string;
  readonly dtype: 'float64';
  readonly offset: number;
  readonly length: number;
}

interface CheckpointHeader {
  readonly format: 'deerjs-checkpoint';
  readonly version: number;
  readonly step: number;
  readonly optimizerStep: number;
  readonly rng: readonly number[];
  readonly config: unknown;
  readonly extra?: unknown;
  readonly arrays: readonly ArrayEntry[];
  readonly dataBytes: number;
}

/** A checkpoint file that cannot be read: names the file and what is wrong. */
export class CheckpointError extends DeerError {
  override name = 'CheckpointError';
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`checkpoint ${file}: ${problem}`);
  }
}

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return h;
}

const GROUPS = ['param', 'adam.m', 'adam.v'] as const;

/** Serialise to the bytes of format version 2. */
export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  if (c === null || typeof c !== 'object') throw new InvalidArgumentError('checkpoint', 'an object { step, params, optimizer, rng, config }', String(c));
  for (const [what, v] of [
    ['params', c.params],
    ['optimizer', c.optimizer],
    ['optimizer.m', c.optimizer?.m],
    ['optimizer.v', c.optimizer?.v],
  ] as const) {
    if (v === null || typeof v !== 'object') throw new InvalidArgumentError(`checkpoint ${what}`, 'an object', String(v));
  }
  // What decodeCheckpoint would refuse is refused here, before a file that cannot be read back is written.
  for (const [what, v] of [
    ['step', c.step],
    ['optimizer.step', c.optimizer.step],
  ] as const) {
    if (!isCount(v)) throw new InvalidArgumentError(`checkpoint ${what}`, 'an integer ≥ 0', String(v));
  }
  if (!isRngState(c.rng)) throw new InvalidArgumentError('checkpoint rng', '4 32-bit integers', JSON.stringify(c.rng));
  const groups: Record<(typeof GROUPS)[number], Params> = {
    param: c.params,
    'adam.m': c.optimizer.m,
    'adam.v': c.optimizer.v,
  };
  checkJson('checkpoint config', c.config);
  checkJson('checkpoint extra', c.extra);
  const arrays: ArrayEntry[] = [];
  let offset = 0;
  for (const g of GROUPS) {
    for (const [name, v] of Object.entries(groups[g])) {
      // decodeCheckpoint refuses this name: it would set the object's prototype.
      if (name === '__proto__')
        throw new InvalidArgumentError(`checkpoint ${g} name`, 'a name other than "__proto__"', '"__proto__"');
      arrays.push({ name: `${g}/${name}`, dtype: 'float64', offset, length: v.length });
      offset += v.length * 8;
    }
  }
  const data = new Uint8Array(offset);
  const view = new DataView(data.buffer);
  let k = 0;
  for (const g of GROUPS) {
    for (const v of Object.values(groups[g])) {
      const e = arrays[k++]!;
      for (let i = 0; i < v.length; i++) view.setFloat64(e.offset + i * 8, v[i]!, true);
    }
  }
  const header: CheckpointHeader = {
    format: 'deerjs-checkpoint',
    version: CHECKPOINT_VERSION,
    step: c.step,
    optimizerStep: c.optimizer.step,
    rng: [...c.rng],
    config: c.config,
    ...(c.extra !== undefined ? { extra: c.extra } : {}),
    arrays,
    dataBytes: data.length,
  };
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const body = 16 + json.length + data.length;
  const out = new Uint8Array(body + TRAILER);
  out.set(new TextEncoder().encode(CHECKPOINT_MAGIC), 0);
  const ov = new DataView(out.buffer);
  ov.setUint32(8, CHECKPOINT_VERSION, true);
  ov.setUint32(12, json.length, true);
  out.set(json, 16);
  out.set(data, 16 + json.length);
  ov.setUint32(body, fnv1a(out.subarray(0, body)), true);
  return out;
}

/**
 * `v` must come back from JSON as it is: JSON.stringify throws a raw TypeError for a BigInt or a
 * cycle, and writes NaN and ±Infinity as null.
 */
function checkJson(what: string, v: unknown): void {
  try {
    JSON.stringify(v, (key, x: unknown) => {
      if (typeof x === 'bigint' || (typeof x === 'number' && !Number.isFinite(x))) {
        const at = key === '' ? '' : ` (at key ${JSON.stringify(key)})`;
        throw new InvalidArgumentError(
          `${what}${at}`,
          'JSON-serialisable values (finite numbers, no BigInt, no cycles)',
          describeValue(x),
        );
      }
      return x;
    });
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    throw new InvalidArgumentError(
      what,
      'JSON-serialisable values (finite numbers, no BigInt, no cycles)',
      `a value JSON.stringify refuses (${String((err as Error).message).split('\n')[0]})`,
    );
  }
}

const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
/** An Rng state as a checkpoint holds it: 4 integers of 32 bits (signed or not). */
export const isRngState = (r: unknown): r is [number, number, number, number] =>
  Array.isArray(r) && r.length === 4 && r.every((x) => Number.isInteger(x) && x >= -(2 ** 31) && x <= 0xffffffff);

/** Parse format version 2; `file` names the source in errors. */
export function decodeCheckpoint(input: Uint8Array | ArrayBuffer, file = '<bytes>'): Checkpoint {
  let bytes: Uint8Array;
  if (input instanceof Uint8Array) bytes = input;
  else if (input instanceof ArrayBuffer) bytes = new Uint8Array(input);
  else if (ArrayBuffer.isView(input))
    bytes = new Uint8Array((input as ArrayBufferView).buffer, (input as ArrayBufferView).byteOffset, (input as ArrayBufferView).byteLength);
  else throw new InvalidArgumentError('decodeCheckpoint bytes', 'a Uint8Array or an ArrayBuffer', describeValue(input));
  if (bytes.length < 16)
    throw new CheckpointError(file, `too short (${bytes.length} bytes) to hold the 16-byte preamble`);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== CHECKPOINT_MAGIC)
    throw new CheckpointError(file, `bad magic ${JSON.stringify(magic)}, expected "${CHECKPOINT_MAGIC}"`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version === 1)
    throw new CheckpointError(
      file,
      `format version 1 is no longer read (its checksum did not cover the header); this reader needs version ${CHECKPOINT_VERSION}: start the run afresh`,
    );
  if (version !== CHECKPOINT_VERSION)
    throw new CheckpointError(
      file,
      `format version ${version} is not supported (this reader knows ${CHECKPOINT_VERSION})`,
    );
  const H = view.getUint32(12, true);
  if (16 + H + TRAILER > bytes.length)
    throw new CheckpointError(
      file,
      `truncated: header of ${H} bytes and the ${TRAILER}-byte checksum do not fit in ${bytes.length} bytes`,
    );
  const body = bytes.length - TRAILER;
  let header: CheckpointHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + H))) as CheckpointHeader;
  } catch (err) {
    throw new CheckpointError(file, `header is not valid JSON (${(err as Error).message})`);
  }
  if (
    header === null ||
    typeof header !== 'object' ||
    header.format !== 'deerjs-checkpoint' ||
    !Array.isArray(header.arrays)
  )
    throw new CheckpointError(file, 'header is not a deerjs checkpoint header');
  if (header.version !== version)
    throw new CheckpointError(file, `header says format version ${JSON.stringify(header.version)}, the preamble ${version}`);
  const start = 16 + H;
  if (body - start !== header.dataBytes) {
    throw new CheckpointError(
      file,
      `truncated or padded: data section has ${body - start} bytes, header says ${header.dataBytes}`,
    );
  }
  if (fnv1a(bytes.subarray(0, body)) !== view.getUint32(body, true))
    throw new CheckpointError(
      file,
      'checksum mismatch: the file is damaged or was edited (the checksum covers header and data)',
    );
  const data = bytes.subarray(start, body);
  if (!isCount(header.step) || !isCount(header.optimizerStep))
    throw new CheckpointError(
      file,
      `step ${JSON.stringify(header.step)} / optimizer step ${JSON.stringify(header.optimizerStep)}: expected integers ≥ 0`,
    );
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const groups: Record<string, Params> = { param: {}, 'adam.m': {}, 'adam.v': {} };
  // Each array has bytes of its own: entries that overlap would read one array's values as another's.
  let end = 0;
  for (const e of header.arrays) {
    const slash = typeof e?.name === 'string' ? e.name.indexOf('/') : -1;
    const g = slash < 0 ? '' : e.name.slice(0, slash);
    const group = Object.hasOwn(groups, g) ? groups[g] : undefined;
    if (
      typeof e?.name !== 'string' ||
      slash < 0 ||
      !group ||
      e.dtype !== 'float64' ||
      !isCount(e.offset) ||
      !isCount(e.length) ||
      e.offset + e.length * 8 > data.length
    ) {
      throw new CheckpointError(file, `bad array entry ${JSON.stringify(e)}`);
    }
    if (e.offset < end) throw new CheckpointError(file, `array ${JSON.stringify(e.name)} at byte ${e.offset} overlaps the one before (which ends at ${end})`);
    end = e.offset + e.length * 8;
    const name = e.name.slice(slash + 1);
    // A name that is already there, or one that would set the object's prototype, is a bad file.
    if (name === '__proto__' || Object.hasOwn(group, name)) throw new CheckpointError(file, `array ${JSON.stringify(e.name)}: duplicate or reserved name`);
    const v = new Float64Array(e.length);
    for (let i = 0; i < e.length; i++) v[i] = dv.getFloat64(e.offset + i * 8, true);
    group[name] = v;
  }
  const rng = header.rng;
  if (!isRngState(rng)) throw new CheckpointError(file, `rng state ${JSON.stringify(rng)}: expected 4 32-bit integers`);
  return {
    step: header.step,
    params: groups.param!,
    optimizer: { step: header.optimizerStep, m: groups['adam.m']!, v: groups['adam.v']! },
    rng: [rng[0]!, rng[1]!, rng[2]!, rng[3]!],
    config: header.config,
    ...(header.extra !== undefined ? { extra: header.extra } : {}),
  };
}
