import type { WasmKernels } from './kernel-module.js';

/**
 * An instance of a module of `wasmKernels`, its consts written: its exports, a float32 view of its
 * memory (renewed when `ensure` grows it to a byte size; growing keeps the contents).
 * Self-contained (no free variables): the runners that go to worker threads take its source.
 */
export function wasmInstance(k: Pick<WasmKernels, 'bytes' | 'consts' | 'dataEnd'>): {
  readonly exports: Record<string, unknown>;
  readonly mem: { readonly buffer: ArrayBuffer };
  F: Float32Array;
  ensure(bytes: number): void;
} {
  const WA = (
    globalThis as unknown as {
      WebAssembly: {
        Instance: new (m: object) => { exports: Record<string, unknown> };
        Module: new (b: Uint8Array) => object;
      };
    }
  ).WebAssembly;
  const { exports } = new WA.Instance(new WA.Module(k.bytes));
  const mem = exports.mem as { buffer: ArrayBuffer; grow(pages: number): number };
  const inst = {
    exports,
    mem,
    F: new Float32Array(mem.buffer),
    ensure(b: number) {
      const have = mem.buffer.byteLength;
      if (b > have) mem.grow(Math.ceil((b - have) / 65536));
      if (inst.F.buffer !== mem.buffer) inst.F = new Float32Array(mem.buffer);
    },
  };
  inst.ensure(k.dataEnd);
  for (const c of k.consts) inst.F.set(c.values, c.offset / 4);
  return inst;
}

export type WasmInstance = ReturnType<typeof wasmInstance>;
