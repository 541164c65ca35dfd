import onnxProto, { type onnx as OnnxTypes } from 'onnx-proto';
import { OnnxFormatError } from './errors.js';
import { decodeUtf8 } from './text.js';

// onnx-proto is CommonJS whose named export Node cannot detect: take it from the default export.
export const { onnx } = onnxProto;
export type { onnx as OnnxTypes } from 'onnx-proto';

type Long = { toNumber(): number };

/** An int64 field as a JS number (protobufjs gives a Long when the `long` package is present). */
export function toInt(v: number | Long | null | undefined, fallback = 0): number {
  if (v === null || v === undefined) return fallback;
  return typeof v === 'number' ? v : v.toNumber();
}

/** Decode ModelProto bytes; anything protobufjs rejects becomes an OnnxFormatError. */
export function decodeModel(bytes: Uint8Array): InstanceType<typeof onnx.ModelProto> {
  if (!(bytes instanceof Uint8Array)) {
    throw new OnnxFormatError(`expected the model's bytes as a Uint8Array, got ${describe(bytes)}`);
  }
  if (bytes.length === 0) throw new OnnxFormatError('the model is empty (0 bytes)');
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new OnnxFormatError(
      `not a valid ONNX ModelProto (${bytes.length} bytes; truncated or corrupt?): ${reason}`,
    );
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

/** An attribute's value as plain data, for messages. */
export function attrValue(a: OnnxTypes.IAttributeProto): unknown {
  const AType = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case AType.INT:
      return toInt(a.i);
    case AType.FLOAT:
      return a.f;
    case AType.STRING:
      return decodeUtf8(a.s);
    case AType.INTS:
      return (a.ints ?? []).map((v) => toInt(v));
    case AType.FLOATS:
      return a.floats;
    case AType.STRINGS:
      return (a.strings ?? []).map((s) => decodeUtf8(s));
    default:
      return `<attribute type ${a.type}>`;
  }
}
