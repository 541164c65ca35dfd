import type { Params } from './params.js';

/**
 * Checkpoint format, version 1 (all integers little-endian):
 *
 *   bytes 0..7    magic "DEERCKPT"
 *   bytes 8..11   uint32 format version (1)
 *   bytes 12..15  uint32 header length H (a multiple of 8)
 *   bytes 16..    H bytes of UTF-8 JSON (padded with spaces): CheckpointHeader
 *   then          the data section: float64 arrays, each at header.arrays[i].offset bytes from its start
 *
 * header.dataBytes and header.checksum (FNV-1a 32 of the data section) catch truncated or damaged
 * files. Float64 keeps parameters and optimizer moments bit-exact, so a resumed run continues exactly.
 */
export const CHECKPOINT_MAGIC = 'DEERCKPT';
export const CHECKPOINT_VERSION = 1;

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
  readonly checksum: number;
}

/** A checkpoint file that cannot be read: names the file and what is wrong. */
export class CheckpointError extends Error {
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

/** Serialise to the bytes of format version 1. */
export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const groups: Record<(typeof GROUPS)[number], Params> = {
    param: c.params,
    'adam.m': c.optimizer.m,
    'adam.v': c.optimizer.v,
  };
  const arrays: ArrayEntry[] = [];
  let offset = 0;
  for (const g of GROUPS) {
    for (const [name, v] of Object.entries(groups[g])) {
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
    checksum: fnv1a(data),
  };
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(16 + json.length + data.length);
  out.set(new TextEncoder().encode(CHECKPOINT_MAGIC), 0);
  const ov = new DataView(out.buffer);
  ov.setUint32(8, CHECKPOINT_VERSION, true);
  ov.setUint32(12, json.length, true);
  out.set(json, 16);
  out.set(data, 16 + json.length);
  return out;
}

/** Parse format version 1; `file` names the source in errors. */
export function decodeCheckpoint(bytes: Uint8Array, file = '<bytes>'): Checkpoint {
  if (bytes.length < 16)
    throw new CheckpointError(file, `too short (${bytes.length} bytes) to hold the 16-byte preamble`);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== CHECKPOINT_MAGIC)
    throw new CheckpointError(file, `bad magic ${JSON.stringify(magic)}, expected "${CHECKPOINT_MAGIC}"`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== CHECKPOINT_VERSION)
    throw new CheckpointError(
      file,
      `format version ${version} is not supported (this reader knows ${CHECKPOINT_VERSION})`,
    );
  const H = view.getUint32(12, true);
  if (16 + H > bytes.length)
    throw new CheckpointError(file, `truncated: header of ${H} bytes does not fit in ${bytes.length} bytes`);
  let header: CheckpointHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + H))) as CheckpointHeader;
  } catch (err) {
    throw new CheckpointError(file, `header is not valid JSON (${(err as Error).message})`);
  }
  if (header.format !== 'deerjs-checkpoint' || !Array.isArray(header.arrays))
    throw new CheckpointError(file, 'header is not a deerjs checkpoint header');
  const start = 16 + H;
  if (bytes.length - start !== header.dataBytes) {
    throw new CheckpointError(
      file,
      `truncated or padded: data section has ${bytes.length - start} bytes, header says ${header.dataBytes}`,
    );
  }
  const data = bytes.subarray(start);
  if (fnv1a(data) !== header.checksum)
    throw new CheckpointError(file, 'checksum mismatch: the data section is damaged');
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const groups: Record<string, Params> = { param: {}, 'adam.m': {}, 'adam.v': {} };
  for (const e of header.arrays) {
    const slash = e.name.indexOf('/');
    const group = groups[e.name.slice(0, slash)];
    if (slash < 0 || !group || e.dtype !== 'float64' || e.offset + e.length * 8 > data.length) {
      throw new CheckpointError(file, `bad array entry ${JSON.stringify(e)}`);
    }
    const v = new Float64Array(e.length);
    for (let i = 0; i < e.length; i++) v[i] = dv.getFloat64(e.offset + i * 8, true);
    group[e.name.slice(slash + 1)] = v;
  }
  const rng = header.rng;
  if (!Array.isArray(rng) || rng.length !== 4)
    throw new CheckpointError(file, 'rng state must be 4 unsigned integers');
  return {
    step: header.step,
    params: groups.param!,
    optimizer: { step: header.optimizerStep, m: groups['adam.m']!, v: groups['adam.v']! },
    rng: [rng[0]!, rng[1]!, rng[2]!, rng[3]!],
    config: header.config,
    ...(header.extra !== undefined ? { extra: header.extra } : {}),
  };
}
