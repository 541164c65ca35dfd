import { DeerError, describeValue, InvalidArgumentError, type Rng } from '@deerjs/core';
import type { Params } from './params.js';

/**
 * Checkpoint format, version 2 (all integers little-endian):
 *
 *   bytes 0..7    magic "DEERCKPT"
 *   bytes 8..11   uint32 format version (2)
 *   bytes 12..15  uint32 header length H (a multiple of 8, so that the data is 8-byte aligned)
 *   bytes 16..    H bytes of UTF-8 JSON (padded with spaces): CheckpointHeader
 *   then          the data section: float64 arrays, each at header.arrays[i].offset bytes from its
 *                 start, one after another in the order of header.arrays, no byte unused
 *   last 4 bytes  uint32 FNV-1a 32 checksum of every byte before it (preamble, header and data)
 *
 * header.dataBytes and the checksum catch truncated, damaged or edited files: a changed step, learning
 * rate or RNG state in the header fails the checksum like a flipped bit in the data. (Version 1 checked
 * the data section only; it is refused with a CheckpointError that says so.) Float64 keeps parameters
 * and optimizer moments bit-exact, so a resumed run continues exactly. The header's `rng` is core's
 * `Rng.state`: 4 words, and a fifth entry — the normal `Rng.normal()` has cached — when there is one
 * (files with the 4-word form, written before the state carried it, still load: no cached normal).
 */
export const CHECKPOINT_MAGIC = 'DEERCKPT';
export const CHECKPOINT_VERSION = 2;
const TRAILER = 4;

/** core's `Rng.state`: 4 words of 32 bits, and the cached normal when there is one. */
type RngState = Rng['state'];

export interface Checkpoint {
  /** Optimizer steps taken so far. */
  readonly step: number;
  readonly params: Params;
  readonly optimizer: { readonly step: number; readonly m: Params; readonly v: Params };
  /**
   * State of the training RNG: core's `Rng.state`, 4 words and, when the generator has a normal
   * cached, that value (restoring it continues the stream exactly, normals included).
   */
  readonly rng: Readonly<RngState>;
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
  const rngProblem = rngStateProblem(c.rng);
  if (rngProblem !== undefined) throw new InvalidArgumentError('checkpoint rng', rngProblem, describeValue(c.rng));
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
      checkValues(`checkpoint ${GROUP_NAMES[g]} ${JSON.stringify(name)}`, v);
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
    // A fifth entry of undefined means no cached normal (JSON would write it as null).
    rng: c.rng[4] === undefined ? [c.rng[0], c.rng[1], c.rng[2], c.rng[3]] : [c.rng[0], c.rng[1], c.rng[2], c.rng[3], c.rng[4]],
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

const GROUP_NAMES: Readonly<Record<(typeof GROUPS)[number], string>> = {
  param: 'param',
  'adam.m': 'optimizer.m',
  'adam.v': 'optimizer.v',
};

const VALUES_EXPECTED = 'a Float64Array (or an array or typed array of numbers)';

/**
 * What an array entry of the data section is written from: a typed array of numbers (not BigInt), or
 * an array whose every entry is a number. Anything else had written NaN (strings, holes), thrown a
 * raw RangeError or TypeError (a number, an object, null, BigInts), or gone in coerced ('1' as 1).
 */
function checkValues(what: string, v: unknown): void {
  if (ArrayBuffer.isView(v)) {
    if (v instanceof DataView || v instanceof BigInt64Array || v instanceof BigUint64Array)
      throw new InvalidArgumentError(what, VALUES_EXPECTED, `a ${v.constructor.name}`);
    return;
  }
  if (!Array.isArray(v)) throw new InvalidArgumentError(what, VALUES_EXPECTED, describeValue(v));
  for (let i = 0; i < v.length; i++) {
    if (!(i in v)) throw new InvalidArgumentError(what, VALUES_EXPECTED, `an array with a hole at index ${i}`);
    const x: unknown = v[i];
    if (typeof x !== 'number') throw new InvalidArgumentError(what, VALUES_EXPECTED, `${describeValue(x)} (a ${typeof x}) at index ${i}`);
  }
}

/** Where a key is, as a message names it: `a.b`, `a["odd key"]`. */
const keyPath = (path: string, k: string) =>
  /^[A-Za-z_$][\w$]*$/.test(k) ? (path === '' ? k : `${path}.${k}`) : `${path}[${JSON.stringify(k)}]`;

const JSON_EXPECTED =
  'values JSON keeps as they are (plain objects and arrays of finite numbers, strings, booleans and null; no -0, BigInt, undefined inside, functions, symbols, class instances such as Date, Map or Set, or cycles)';

/**
 * `v` must come back from JSON as it is. JSON.stringify throws a raw TypeError for a BigInt or a
 * cycle, writes NaN, ±Infinity and holes as null and -0 as 0, drops undefined, functions and
 * symbols inside objects (and symbol keys), and writes a Date as a string and a Map, a Set or a
 * typed array as something else: each is refused, naming where it is. Undefined at the top level is
 * kept (the key is left out and reads back as undefined).
 */
function checkJson(what: string, v: unknown): void {
  const ancestors = new Set<object>();
  const refuse = (path: string, got: string): never => {
    throw new InvalidArgumentError(`${what}${path === '' ? '' : ` (at ${path})`}`, JSON_EXPECTED, got);
  };
  const walk = (x: unknown, path: string): void => {
    switch (typeof x) {
      case 'string':
      case 'boolean':
        return;
      case 'number':
        if (!Number.isFinite(x) || Object.is(x, -0)) refuse(path, describeValue(x));
        return;
      case 'undefined':
        if (path !== '') refuse(path, 'undefined');
        return;
      case 'bigint':
      case 'symbol':
      case 'function':
        refuse(path, describeValue(x));
    }
    if (x === null) return;
    const o = x as object;
    if (ancestors.has(o)) refuse(path, 'a cycle (an object that contains itself)');
    const proto = Object.getPrototypeOf(o) as unknown;
    const isArray = Array.isArray(o);
    if (!isArray && proto !== Object.prototype && proto !== null)
      refuse(path, `an instance of ${(o as { constructor?: { name?: string } }).constructor?.name || 'a class'}`);
    if (Object.getOwnPropertySymbols(o).some((k) => Object.prototype.propertyIsEnumerable.call(o, k)))
      refuse(path, 'an object with symbol keys (JSON leaves them out)');
    ancestors.add(o);
    if (isArray) {
      const a = o as unknown[];
      if (Object.keys(a).length !== a.length) {
        for (let i = 0; i < a.length; i++) if (!(i in a)) refuse(`${path}[${i}]`, 'a hole (JSON writes it as null)');
        refuse(path, 'an array with named properties (JSON leaves them out)');
      }
      for (let i = 0; i < a.length; i++) walk(a[i], `${path}[${i}]`);
    } else {
      for (const [k, value] of Object.entries(o)) walk(value, keyPath(path, k));
    }
    ancestors.delete(o);
  };
  walk(v, '');
}

const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

const RNG_EXPECTED =
  "core's Rng.state: 4 32-bit integers, optionally followed by the cached normal (a finite number other than -0, which JSON would write as 0)";

/** Why `r` is not an Rng state a checkpoint can hold (the rules of core's `Rng.state` setter), or undefined. */
function rngStateProblem(r: unknown): string | undefined {
  const word = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= -(2 ** 31) && x <= 0xffffffff;
  if (!Array.isArray(r) || (r.length !== 4 && r.length !== 5) || !r.slice(0, 4).every(word)) return RNG_EXPECTED;
  const spare: unknown = r[4];
  if (spare !== undefined && (typeof spare !== 'number' || !Number.isFinite(spare) || Object.is(spare, -0))) return RNG_EXPECTED;
  // xoshiro128**'s fixed point: a generator in it gives uniform() = 0 forever.
  if (r.slice(0, 4).every((x) => (x as number) >>> 0 === 0)) return 'a state with a nonzero word (all zeros is the fixed point of xoshiro128**)';
  return undefined;
}

/**
 * An Rng state as a checkpoint holds it (core's `Rng.state`): 4 integers of 32 bits (signed or not),
 * not all zero, optionally followed by the normal the generator has cached (a finite number; not -0,
 * which JSON would not keep). The 4-word form is a state with no cached normal.
 */
export const isRngState = (r: unknown): r is RngState => rngStateProblem(r) === undefined;

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
  // The encoder pads the header to a multiple of 8, so that the float64 data is aligned.
  if (H % 8 !== 0) throw new CheckpointError(file, `header length ${H} is not a multiple of 8`);
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
    // The encoder writes the arrays back to back: bytes between them are data no array holds.
    if (e.offset > end)
      throw new CheckpointError(file, `array ${JSON.stringify(e.name)} at byte ${e.offset} leaves bytes ${end}..${e.offset - 1} of the data section unused`);
    end = e.offset + e.length * 8;
    const name = e.name.slice(slash + 1);
    // A name that is already there, or one that would set the object's prototype, is a bad file.
    if (name === '__proto__' || Object.hasOwn(group, name)) throw new CheckpointError(file, `array ${JSON.stringify(e.name)}: duplicate or reserved name`);
    const v = new Float64Array(e.length);
    for (let i = 0; i < e.length; i++) v[i] = dv.getFloat64(e.offset + i * 8, true);
    group[name] = v;
  }
  if (end !== data.length)
    throw new CheckpointError(file, `bytes ${end}..${data.length - 1} of the data section are unused (no array holds them)`);
  const rng: unknown = header.rng;
  const rngProblem = rngStateProblem(rng);
  if (rngProblem !== undefined) throw new CheckpointError(file, `rng state ${JSON.stringify(rng)}: expected ${rngProblem}`);
  const r = rng as RngState;
  return {
    step: header.step,
    params: groups.param!,
    optimizer: { step: header.optimizerStep, m: groups['adam.m']!, v: groups['adam.v']! },
    rng: r[4] === undefined ? [r[0], r[1], r[2], r[3]] : [r[0], r[1], r[2], r[3], r[4]],
    config: header.config,
    ...(header.extra !== undefined ? { extra: header.extra } : {}),
  };
}
