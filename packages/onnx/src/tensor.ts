import { OnnxFormatError, OnnxUnsupportedError } from './errors.js';
import { type OnnxTypes, onnx, toInt } from './proto.js';

/** Element data of a host tensor: what ONNX recurrent models read and write. */
export type OnnxData = Float32Array | Float64Array | Int32Array | BigInt64Array;

/** A host tensor: row-major data and its dims (ONNX order). */
export interface OnnxTensor {
  readonly data: OnnxData;
  readonly dims: readonly number[];
}

const DT = onnx.TensorProto.DataType;

export const ELEM_NAMES: Readonly<Record<number, string>> = {
  [DT.FLOAT]: 'float32',
  [DT.DOUBLE]: 'float64',
  [DT.INT32]: 'int32',
  [DT.INT64]: 'int64',
};

export function sizeOf(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** The ONNX element type of a host array. */
export function elemTypeOf(data: OnnxData): number {
  if (data instanceof Float32Array) return DT.FLOAT;
  if (data instanceof Float64Array) return DT.DOUBLE;
  if (data instanceof Int32Array) return DT.INT32;
  return DT.INT64;
}

/** Decode an initializer (raw_data or the typed repeated field) into a host tensor. */
export function readTensorProto(t: OnnxTypes.ITensorProto): OnnxTensor {
  const name = t.name ?? '';
  const dims = (t.dims ?? []).map((d) => toInt(d));
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new OnnxFormatError(`initializer '${name}': invalid dims [${dims.join(', ')}]`);
  }
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
    throw initializerUnsupported(name, 'data_location', 'EXTERNAL', 'data stored inside the model');
  const size = sizeOf(dims);
  const type = t.dataType ?? 0;
  const raw = t.rawData && t.rawData.length > 0 ? t.rawData : undefined;
  let data: OnnxData;
  if (raw) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const width = type === DT.DOUBLE || type === DT.INT64 ? 8 : 4;
    if (ELEM_NAMES[type] === undefined) throw unsupportedType(name, type);
    if (raw.byteLength !== size * width) {
      throw new OnnxFormatError(
        `initializer '${name}': raw_data has ${raw.byteLength} bytes, dims [${dims.join(', ')}] need ${size * width}`,
      );
    }
    if (type === DT.FLOAT) data = Float32Array.from({ length: size }, (_, i) => view.getFloat32(4 * i, true));
    else if (type === DT.DOUBLE)
      data = Float64Array.from({ length: size }, (_, i) => view.getFloat64(8 * i, true));
    else if (type === DT.INT32)
      data = Int32Array.from({ length: size }, (_, i) => view.getInt32(4 * i, true));
    else data = BigInt64Array.from({ length: size }, (_, i) => view.getBigInt64(8 * i, true));
  } else if (type === DT.FLOAT) data = Float32Array.from(t.floatData ?? []);
  else if (type === DT.DOUBLE) data = Float64Array.from(t.doubleData ?? []);
  else if (type === DT.INT32) data = Int32Array.from(t.int32Data ?? []);
  else if (type === DT.INT64) data = BigInt64Array.from((t.int64Data ?? []).map((v) => BigInt(toInt(v))));
  else throw unsupportedType(name, type);
  if (data.length !== size) {
    throw new OnnxFormatError(
      `initializer '${name}': ${data.length} values, dims [${dims.join(', ')}] need ${size}`,
    );
  }
  return { data, dims };
}

function unsupportedType(name: string, type: number): OnnxUnsupportedError {
  const label = onnx.TensorProto.DataType[type] ?? String(type);
  return initializerUnsupported(name, 'data_type', label, 'FLOAT, DOUBLE, INT32 or INT64');
}

/** OnnxUnsupportedError for an initializer (its `node` is `initializer <name>`), worded as one. */
function initializerUnsupported(name: string, field: string, got: string, expected: string): OnnxUnsupportedError {
  const err = new OnnxUnsupportedError(`initializer ${name}`, field, got, expected);
  err.message = `ONNX initializer '${name}' (read by a node): ${field} ${got} is not supported (supported: ${expected})`;
  return err;
}

/** An initializer holding `data` as little-endian raw_data. */
export function makeTensorProto(
  name: string,
  data: OnnxData,
  dims: readonly number[],
): OnnxTypes.ITensorProto {
  const width = data.BYTES_PER_ELEMENT;
  const raw = new Uint8Array(data.length * width);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (data instanceof Float32Array) view.setFloat32(4 * i, v as number, true);
    else if (data instanceof Float64Array) view.setFloat64(8 * i, v as number, true);
    else if (data instanceof Int32Array) view.setInt32(4 * i, v as number, true);
    else view.setBigInt64(8 * i, v as bigint, true);
  }
  return { name, dims: [...dims], dataType: elemTypeOf(data), rawData: raw };
}

/** A host tensor's values as float64 (for upload to a backend). */
export function toFloat64(t: OnnxTensor): Float64Array {
  const out = new Float64Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Number(t.data[i]!);
  return out;
}
