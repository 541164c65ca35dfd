import { DeerError } from '@deerjs/core';

/** A generated or given WGSL module failed to compile; names the first error's line. */
export class ShaderCompileError extends DeerError {
  override name = 'ShaderCompileError';
  constructor(
    message: string,
    readonly line: number,
    readonly lineText: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Build the error from compilation messages: "line L:C: message" and the line's text. */
export function compileError(
  label: string,
  code: string,
  messages: readonly GPUCompilationMessage[],
): ShaderCompileError {
  const errors = messages.filter((m) => m.type === 'error');
  const first = errors[0] ?? messages[0];
  const line = first?.lineNum ?? 0;
  const lineText = code.split('\n')[line - 1] ?? '';
  const detail = errors.map((m) => `  line ${m.lineNum}:${m.linePos}: ${m.message}`).join('\n');
  return new ShaderCompileError(
    `webgpu: WGSL compile error in ${label} at line ${line}: ${first?.message ?? 'unknown error'}\n` +
      `  ${line} | ${lineText}\n${detail}`,
    line,
    lineText,
    code,
  );
}
