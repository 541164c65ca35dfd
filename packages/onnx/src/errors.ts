import { DeerError, UnsupportedOptionError } from '@deerjs/core';

/** The bytes are not a readable ONNX model (empty, truncated, corrupt, or missing required parts). */
export class OnnxFormatError extends DeerError {
  override name = 'OnnxFormatError';
}

/**
 * A node, attribute or input value that deerjs cannot run exactly. `node` is the node's name (or
 * `<op>#<index>` when it has none) and `attribute` the attribute, input or property at fault.
 */
export class OnnxUnsupportedError extends UnsupportedOptionError {
  override name = 'OnnxUnsupportedError';
  constructor(
    readonly node: string,
    readonly attribute: string,
    got: unknown,
    expected: string,
  ) {
    super(`${node}.${attribute}`, got, expected);
    this.message = `ONNX node '${node}': ${attribute} ${JSON.stringify(got)} is not supported (supported: ${expected})`;
  }
}

/** A run-time input is missing, of the wrong type, or of a shape the model does not accept. */
export class OnnxInputError extends DeerError {
  override name = 'OnnxInputError';
  constructor(
    readonly input: string,
    message: string,
  ) {
    super(`ONNX input '${input}': ${message}`);
  }
}

/** onnxruntime-node could not be imported (not installed, or its native binary failed to load). */
export class OnnxRuntimeUnavailableError extends DeerError {
  override name = 'OnnxRuntimeUnavailableError';
  readonly install = 'onnxruntime-node';
  constructor(readonly reason: string) {
    super(
      `onnxruntime-node is needed for ONNX reference runs but could not be loaded (${reason}); install it with: npm install onnxruntime-node`,
    );
  }
}

/** onnxruntime-node failed while running a model it had loaded (its own message follows). */
export class OnnxRuntimeError extends DeerError {
  override name = 'OnnxRuntimeError';
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`onnxruntime failed: ${reason}`, options);
  }
}
