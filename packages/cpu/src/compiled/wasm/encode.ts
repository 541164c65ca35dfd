/**
 * A minimal WebAssembly binary writer: one module with one exported memory and exported functions
 * of i32 parameters, written instruction by instruction. Only what the cpu kernels use.
 */

export const I32 = 0x7f;
export const V128 = 0x7b;

const uleb = (out: number[], v: number) => {
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
};
const sleb = (out: number[], v: number) => {
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
};

/** SIMD opcodes (0xfd prefix) this package uses. */
export const SIMD = {
  load: 0x00,
  load32Splat: 0x09,
  load64Splat: 0x0a,
  store: 0x0b,
  const: 0x0c,
  shuffle: 0x0d,
  f32x4Splat: 0x13,
  f64x2Splat: 0x14,
  f32x4Add: 0xe4,
  f32x4Mul: 0xe6,
  f64x2Add: 0xf0,
  f64x2Mul: 0xf2,
  f64x2PromoteLow: 0x5f,
  load32Lane: 0x56,
  store32Lane: 0x5a,
  f32x4Gt: 0x44,
  f32x4Lt: 0x43,
  and: 0x4e,
  bitselect: 0x52,
  f32x4Nearest: 0x6a,
  i32x4Shl: 0xab,
  i32x4ShrS: 0xac,
  i32x4Add: 0xae,
  i32x4Sub: 0xb1,
  f32x4Abs: 0xe0,
  f32x4Neg: 0xe1,
  f32x4Sqrt: 0xe3,
  f32x4Sub: 0xe5,
  f32x4Div: 0xe7,
  f32x4Min: 0xe8,
  f32x4Max: 0xe9,
  f32x4Pmax: 0xeb,
  i32x4TruncSatF32x4S: 0xf8,
  i32x4Splat: 0x11,
  i32x4Eq: 0x37,
  f32x4Eq: 0x41,
  f32x4Ne: 0x42,
  f32x4Le: 0x45,
  f32x4Ge: 0x46,
  f64x2Gt: 0x4a,
  f64x2Le: 0x4b,
  not: 0x4d,
  andnot: 0x4f,
  or: 0x50,
  f64x2Abs: 0xec,
  f64x2Sub: 0xf1,
  f64x2Div: 0xf3,
} as const;

/** Scalar opcodes (no prefix) beyond the ones with their own Body method. */
export const OP = {
  i32Sub: 0x6b,
  i32ShrS: 0x75,
  i32LtS: 0x48,
  i32LeS: 0x4c,
  i32GeS: 0x4e,
  f32Load: 0x2a,
} as const;

/** A function body under construction. Locals are numbered after the parameters. */
export class Body {
  readonly code: number[] = [];
  private readonly locals: number[] = [];

  constructor(readonly params: number) {}

  /** A new local of `type`; its index. */
  local(type: number): number {
    this.locals.push(type);
    return this.params + this.locals.length - 1;
  }

  op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }
  get(i: number): this {
    this.code.push(0x20);
    uleb(this.code, i);
    return this;
  }
  set(i: number): this {
    this.code.push(0x21);
    uleb(this.code, i);
    return this;
  }
  tee(i: number): this {
    this.code.push(0x22);
    uleb(this.code, i);
    return this;
  }
  i32(v: number): this {
    this.code.push(0x41);
    sleb(this.code, v | 0);
    return this;
  }
  add(): this {
    return this.op(0x6a);
  }
  mul(): this {
    return this.op(0x6c);
  }
  ltU(): this {
    return this.op(0x49);
  }
  /** `loop` (empty block type) … `end`. */
  loop(body: () => void): this {
    this.code.push(0x03, 0x40);
    body();
    this.code.push(0x0b);
    return this;
  }
  brIf(depth: number): this {
    this.code.push(0x0d);
    uleb(this.code, depth);
    return this;
  }
  /** `block` (empty block type) … `end`: `br` to it jumps past its end. */
  block(body: () => void): this {
    this.code.push(0x02, 0x40);
    body();
    this.code.push(0x0b);
    return this;
  }
  /** A scalar memory access (f32.load and the like) with alignment log2 `align` and byte `offset`. */
  scalarMem(opcode: number, offset: number, align = 2): this {
    this.code.push(opcode);
    uleb(this.code, align);
    uleb(this.code, offset);
    return this;
  }
  /** v128.load32_lane / store32_lane: a memory access and a lane index. */
  lane(opcode: number, offset: number, laneIndex: number): this {
    this.mem(opcode, offset, 2);
    this.code.push(laneIndex);
    return this;
  }
  /** v128.const with four f32 lanes of `v` (rounded to float32). */
  f32x4(v: number): this {
    this.simd(SIMD.const);
    const b = new Uint8Array(new Float32Array([v, v, v, v]).buffer);
    for (const x of b) this.code.push(x);
    return this;
  }
  /** v128.const with two f64 lanes of `v`. */
  f64x2(v: number): this {
    this.simd(SIMD.const);
    const b = new Uint8Array(new Float64Array([v, v]).buffer);
    for (const x of b) this.code.push(x);
    return this;
  }
  /** v128.const with four i32 lanes of `v`. */
  i32x4(v: number): this {
    this.simd(SIMD.const);
    const b = new Uint8Array(new Int32Array([v, v, v, v]).buffer);
    for (const x of b) this.code.push(x);
    return this;
  }
  /** A SIMD instruction without immediates. */
  simd(opcode: number): this {
    this.code.push(0xfd);
    uleb(this.code, opcode);
    return this;
  }
  /** A SIMD load/store with alignment log2 `align` and constant byte `offset`. */
  mem(opcode: number, offset: number, align = 0): this {
    this.simd(opcode);
    uleb(this.code, align);
    uleb(this.code, offset);
    return this;
  }
  /** i8x16.shuffle of the two vectors on the stack. */
  shuffle(lanes: readonly number[]): this {
    this.simd(SIMD.shuffle);
    this.code.push(...lanes);
    return this;
  }
  /** v128.const of zeros. */
  zero(): this {
    this.simd(SIMD.const);
    for (let i = 0; i < 16; i++) this.code.push(0);
    return this;
  }

  /** The body in binary: local declarations, code, `end`. */
  encode(): number[] {
    const out: number[] = [];
    const runs: [number, number][] = [];
    for (const t of this.locals) {
      const last = runs.at(-1);
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    uleb(out, runs.length);
    for (const [n, t] of runs) {
      uleb(out, n);
      out.push(t);
    }
    append(out, this.code);
    out.push(0x0b);
    const sized: number[] = [];
    uleb(sized, out.length);
    return [...sized, ...out];
  }
}

const section = (id: number, content: number[]) => {
  const out = [id];
  uleb(out, content.length);
  return [...out, ...content];
};
/** `out.push(...items)` without spreading: a large body's code (hidden 512) overflowed the stack as call arguments. */
function append(out: number[], items: readonly number[]): void {
  for (let i = 0; i < items.length; i++) out.push(items[i]!);
}

const vec = (items: number[][]) => {
  const out: number[] = [];
  uleb(out, items.length);
  for (const it of items) append(out, it);
  return out;
};
const name = (s: string) => {
  const out: number[] = [];
  uleb(out, s.length);
  for (const c of s) out.push(c.charCodeAt(0));
  return out;
};

/** A module exporting memory "mem" (1 page to start) and the given functions (i32 params, no results). */
export function moduleBytes(fns: readonly { readonly name: string; readonly body: Body }[]): Uint8Array {
  const types = fns.map((f) => [0x60, ...vec(Array.from({ length: f.body.params }, () => [I32])), 0x00]);
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(
      3,
      vec(
        fns.map((_, i) => {
          const o: number[] = [];
          uleb(o, i);
          return o;
        }),
      ),
    ),
    ...section(5, vec([[0x00, 0x01]])),
    ...section(
      7,
      vec([
        [...name('mem'), 0x02, 0x00],
        ...fns.map((f, i) => {
          const o = [...name(f.name), 0x00];
          uleb(o, i);
          return o;
        }),
      ]),
    ),
    ...section(10, vec(fns.map((f) => f.body.encode()))),
  ];
  return Uint8Array.from(bytes);
}
