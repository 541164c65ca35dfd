import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataFormatError } from '../errors.js';

/** Largest decompressed IDX file accepted: 1 GiB (Fashion-MNIST's training images are 47 MB). */
export const MAX_IDX_BYTES = 2 ** 30;

export interface IdxArray {
  readonly dims: readonly number[];
  readonly data: Uint8Array;
}

/** Read a file, gunzipping it when it starts with the gzip magic. */
export function readMaybeGzip(file: string): Uint8Array {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    throw new DataFormatError(
      file,
      `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      // Cap the output: a gzip bomb (or a corrupt length) must not exhaust memory.
      return gunzipSync(raw, { maxOutputLength: MAX_IDX_BYTES });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
        throw new DataFormatError(
          file,
          `decompresses to more than ${MAX_IDX_BYTES} bytes, expected an IDX file`,
        );
      throw new DataFormatError(file, `corrupt or truncated gzip stream (${(err as Error).message})`);
    }
  }
  return raw;
}

/**
 * Parse an IDX file of unsigned bytes (type 0x08): magic 00 00 08 D, then D big-endian uint32
 * dimensions, then the data. `expectDims` is the rank the caller needs.
 */
export function parseIdx(bytes: Uint8Array, file: string, expectDims: number): IdxArray {
  if (bytes.length < 4)
    throw new DataFormatError(file, `truncated: ${bytes.length} bytes, too short for the IDX magic`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DataFormatError(
      file,
      `bad IDX magic 0x${[...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join('')} (must start 0x0000)`,
    );
  }
  if (bytes[2] !== 0x08)
    throw new DataFormatError(
      file,
      `IDX element type 0x${bytes[2]!.toString(16)} is not unsigned byte (0x08)`,
    );
  const D = bytes[3]!;
  if (D !== expectDims) throw new DataFormatError(file, `IDX rank ${D}, expected ${expectDims}`);
  const headerBytes = 4 + 4 * D;
  if (bytes.length < headerBytes)
    throw new DataFormatError(file, `truncated: header needs ${headerBytes} bytes, file has ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < D; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const zero = dims.indexOf(0);
  if (zero >= 0)
    throw new DataFormatError(
      file,
      `dimension ${zero + 1} of [${dims.join(', ')}] is 0 (${zero === 0 ? 'no items' : 'items of no size'}), expected at least 1`,
    );
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length - headerBytes !== count) {
    throw new DataFormatError(
      file,
      `${bytes.length - headerBytes < count ? 'truncated' : 'trailing bytes'}: dimensions [${dims.join(', ')}] need ${count} data bytes, file has ${bytes.length - headerBytes}`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes, headerBytes + count) };
}

/** `dir/name.gz` if present, else `dir/name`; `hint` (where to get the files) ends the error otherwise. */
export function findIdx(dir: string, name: string, hint?: string): string {
  const gz = join(dir, `${name}.gz`);
  if (existsSync(gz)) return gz;
  const raw = join(dir, name);
  if (existsSync(raw)) return raw;
  throw new DataFormatError(gz, `not found (nor ${raw})${hint ? `: ${hint}` : ''}`);
}
