import { type BinaryFn, type Graph, matrixLayout, type Node, type NodeId, paramSpec, type UnaryFn } from '@deerjs/core';
import { bound, lit } from './common.js';

/** WGSL helpers for the unary ops that need more than a builtin. */
export const UNARY_HELPERS = `fn inf_(neg: bool) -> f32 { var b = 0x7f800000u; if (neg) { b = 0xff800000u; } return bitcast<f32>(b); }
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// Below |x| = 0.55, tanh's odd Taylor series to x¹⁵ (5e-8 relative at the edge), where 1 − e^{−2|x|}
// cancels (1e-9 had come out as 3e-8); (1 − e)/(1 + e) above.
fn tanh_(x: f32) -> f32 {
  let a = abs(x);
  let z = x * x;
  let p = x * (1.0 + z * (-0.33333333 + z * (0.13333333 + z * (-0.053968254 + z * (0.021869488 + z * (-0.0088632355 + z * (0.0035921280 + z * -0.0014558344)))))));
  let y = exp(-2.0 * a);
  return select(sign(x) * (1.0 - y) / (1.0 + y), p, a < 0.55);
}
// softplus(x) = max(x, 0) + log1p(e), e = e^{−|x|} in (0, 1]. WGSL has no log1p, and its log near 1 is
// good only to 2^-21 absolute (log(1 + e) was 5e-4 off at x = −9.2): log1p(e) = 2·atanh(z),
// z = e/(2 + e) ≤ 1/3, as the odd series to z¹⁷ (1e-10 relative).
fn softplus_(x: f32) -> f32 {
  let e = exp(-abs(x));
  let z = e / (2.0 + e);
  let w = z * z;
  let l = 2.0 * z * (1.0 + w * (0.33333333 + w * (0.2 + w * (0.14285714 + w * (0.11111111 + w * (0.090909091 + w * (0.076923077 + w * (0.066666667 + w * 0.058823529))))))));
  return max(x, 0.0) + l;
}
// NaN stays NaN, as in every evaluator (WGSL's max, min and sign may drop it): tested on the bits,
// since a compiler may assume floats are never NaN and fold x != x away.
fn nan_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn relu_(x: f32) -> f32 { return select(max(x, 0.0), x, nan_(x)); }
fn step_(x: f32) -> f32 { return select(select(0.0, 1.0, x > 0.0), x, nan_(x)); }
fn sign_(x: f32) -> f32 { return select(sign(x), x, nan_(x)); }
fn min_(a: f32, b: f32) -> f32 { return select(min(a, b), a + b, nan_(a) || nan_(b)); }
fn max_(a: f32, b: f32) -> f32 { return select(max(a, b), a + b, nan_(a) || nan_(b)); }`;

export const UNARY: Record<UnaryFn, (a: string) => string> = {
  neg: (a) => `-(${a})`,
  sigmoid: (a) => `sigmoid_(${a})`,
  // Builtin tanh overflows to NaN for large |x| on some drivers.
  tanh: (a) => `tanh_(${a})`,
  exp: (a) => `exp(${a})`,
  log: (a) => `log(${a})`,
  softplus: (a) => `softplus_(${a})`,
  relu: (a) => `relu_(${a})`,
  step: (a) => `step_(${a})`,
  sin: (a) => `sin(${a})`,
  cos: (a) => `cos(${a})`,
  square: (a) => `sq_(${a})`,
  sqrt: (a) => `sqrt(${a})`,
  abs: (a) => `abs(${a})`,
  sign: (a) => `sign_(${a})`,
};

export const BINARY: Record<BinaryFn, (a: string, b: string) => string> = {
  add: (a, b) => `${a} + ${b}`,
  sub: (a, b) => `${a} - ${b}`,
  mul: (a, b) => `${a} * ${b}`,
  div: (a, b) => `${a} / ${b}`,
  min: (a, b) => `min_(${a}, ${b})`,
  max: (a, b) => `max_(${a}, ${b})`,
};

/** Where each parameter starts in the packed parameter buffer (graph order). */
export function paramOffsets(graph: Graph): { offsets: Map<string, number>; total: number } {
  const offsets = new Map<string, number>();
  let at = 0;
  for (const p of graph.params) {
    offsets.set(p.name, at);
    at += p.size;
  }
  return { offsets, total: at };
}

/** How the per-element inputs are read: WGSL expressions given the element index `e`. */
export interface Loads {
  state(i: string): string;
  input(i: string): string;
  cotangent(i: string): string;
}

/**
 * Per-element evaluation of graph nodes as WGSL statements over private arrays `v<id>`. Params
 * are read from the packed buffer through `prm_(i)`, constants from private arrays `c<id>`.
 */
export class GraphEmitter {
  readonly uses = { params: false, state: false, input: false, cotangent: false };
  /** Module-scope declarations (constant arrays). */
  readonly decls: string[] = [];
  private readonly offsets: Map<string, number>;

  constructor(readonly graph: Graph) {
    this.offsets = paramOffsets(graph).offsets;
  }

  private node(id: NodeId): Node {
    return this.graph.nodes[id]!;
  }

  /** Entry i (a WGSL u32 expression) of node `id`; operands of size 1 broadcast. */
  ref(id: NodeId, i: string): string {
    const n = this.node(id);
    const idx = n.size === 1 ? '0u' : i;
    if (n.op === 'param') {
      this.uses.params = true;
      return `prm_(${this.offsets.get(n.name)}u + ${idx})`;
    }
    if (n.op === 'const') return n.size === 1 ? lit(n.values[0]!) : `c${id}[${idx}]`;
    return `v${id}[${idx}]`;
  }

  /** Private array declarations for `ids` (inside the entry point). */
  declare(ids: readonly NodeId[]): string {
    const lines: string[] = [];
    for (const id of ids) {
      const n = this.node(id);
      if (n.op === 'const' && n.size > 1) {
        // A private array's initializer must be constant: entries past f32's range (±Infinity)
        // are set at the top of the entry point instead.
        const fits = n.values.map((v) => Number.isFinite(Math.fround(v)));
        this.decls.push(
          `var<private> c${id}: array<f32, ${n.size}> = array<f32, ${n.size}>(${n.values.map((v, k) => (fits[k] ? lit(v) : '0.0')).join(', ')});`,
        );
        n.values.forEach((v, k) => {
          if (!fits[k]) lines.push(`  c${id}[${k}] = ${lit(v)};`);
        });
      } else if (n.op !== 'param' && n.op !== 'const') {
        lines.push(`  var v${id}: array<f32, ${Math.max(1, n.size)}>;`);
      }
    }
    return lines.join('\n');
  }

  /** Statements that compute node `id` from its operands (empty for params and constants). */
  emit(id: NodeId, loads: Loads): string {
    const n = this.node(id);
    const loop = (size: number, body: string) =>
      size === 0 ? '' : `  for (var i = 0u; i < ${bound(size)}; i++) { ${body} }`;
    const out = `v${id}[i]`;
    switch (n.op) {
      case 'state':
        if (n.size === 0) return '';
        this.uses.state = true;
        return loop(n.size, `${out} = ${loads.state('i')};`);
      case 'input':
        if (n.size === 0) return '';
        this.uses.input = true;
        return loop(n.size, `${out} = ${loads.input('i')};`);
      case 'cotangent':
        if (n.size === 0) return '';
        this.uses.cotangent = true;
        return loop(n.size, `${out} = ${loads.cotangent('i')};`);
      case 'param':
      case 'const':
        return '';
      case 'unary':
        return loop(n.size, `${out} = ${UNARY[n.fn](this.ref(n.a, 'i'))};`);
      case 'binary':
        return loop(n.size, `${out} = ${BINARY[n.fn](this.ref(n.a, 'i'), this.ref(n.b, 'i'))};`);
      case 'slice':
        return loop(n.size, `${out} = ${this.ref(n.a, `(i + ${n.start}u)`)};`);
      case 'concat': {
        let at = 0;
        const parts = n.parts.map((p) => {
          const size = this.node(p).size;
          const s = loop(size, `v${id}[i + ${at}u] = ${this.ref(p, 'i')};`);
          at += size;
          return s;
        });
        return parts.join('\n');
      }
      case 'sum':
        return `  { var acc = 0.0; for (var i = 0u; i < ${bound(this.node(n.a).size)}; i++) { acc += ${this.ref(n.a, 'i')}; } v${id}[0] = acc; }`;
      case 'matvec':
        return this.matvec(id, n);
    }
  }

  private matvec(id: NodeId, n: Extract<Node, { op: 'matvec' }>): string {
    this.uses.params = true;
    const { blocks, rows, cols } = matrixLayout(paramSpec(this.graph, n.param));
    const off = this.offsets.get(n.param)!;
    if (!n.transpose) {
      // out[k·rows + i] = Σ_j W[k][i][j] · v[k·cols + j]
      return `  for (var r = 0u; r < ${bound(blocks * rows, blocks * rows * cols)}; r++) {
    let k = r / ${rows}u; let i = r % ${rows}u;
    let w = ${off}u + k * ${rows * cols}u + i * ${cols}u;
    var acc = 0.0;
    for (var j = 0u; j < ${bound(cols, blocks * rows * cols)}; j++) { acc += prm_(w + j) * ${this.ref(n.v, `(k * ${cols}u + j)`)}; }
    v${id}[r] = acc;
  }`;
    }
    // out[k·cols + j] = Σ_i W[k][i][j] · v[k·rows + i]
    return `  for (var r = 0u; r < ${bound(blocks * cols, blocks * rows * cols)}; r++) {
    let k = r / ${cols}u; let j = r % ${cols}u;
    let w = ${off}u + k * ${rows * cols}u + j;
    var acc = 0.0;
    for (var i = 0u; i < ${bound(rows, blocks * rows * cols)}; i++) { acc += prm_(w + i * ${cols}u) * ${this.ref(n.v, `(k * ${rows}u + i)`)}; }
    v${id}[r] = acc;
  }`;
  }
}

export const SQ_HELPER = 'fn sq_(x: f32) -> f32 { return x * x; }';
