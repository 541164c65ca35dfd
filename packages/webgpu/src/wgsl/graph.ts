import { type BinaryFn, type Graph, matrixLayout, type Node, type NodeId, operands, paramSpec, type UnaryFn } from '@deerjs/core';
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

/**
 * A fused loop with at most this many node evaluations in all is left for the driver to unroll:
 * its scalars need no registers across iterations, so it compiles quickly (llvmpipe, GRU n = 8
 * quasi-DEER solves: 1.04–1.10× faster than before fusion when unrolled, 0.90–0.94× as a loop);
 * a GRU n = 32 step unrolled took 8.1 s to compile, 2.0 s as a loop.
 */
const FUSED_UNROLL_MAX = 512;

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
  /** Nodes of the fused loop being emitted: entry i of each is the scalar `s<id>`. */
  private readonly inLoop = new Set<NodeId>();

  constructor(readonly graph: Graph) {
    this.offsets = paramOffsets(graph).offsets;
  }

  private node(id: NodeId): Node {
    return this.graph.nodes[id]!;
  }

  /** Entry i (a WGSL u32 expression) of node `id`; operands of size 1 broadcast. */
  ref(id: NodeId, i: string): string {
    if (i === 'i' && this.inLoop.has(id)) return `s${id}`;
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

  /**
   * One loop over entry i of `ids` (elementwise nodes of one size, in graph order): each node's
   * entry is a scalar `s<id>`, stored to its private array only where `arrays` holds it.
   * `load(id)` is a node's entry read from memory (a hoisted value), else undefined.
   */
  emitFused(ids: readonly NodeId[], arrays: ReadonlySet<NodeId>, loads: Loads, load: (id: NodeId) => string | undefined): string {
    const size = this.node(ids[0]!).size;
    const lines: string[] = [];
    for (const id of ids) {
      const value = load(id) ?? this.entry(id, loads);
      lines.push(`    let s${id} = ${value};`);
      if (arrays.has(id)) lines.push(`    v${id}[i] = s${id};`);
      this.inLoop.add(id);
    }
    this.inLoop.clear();
    return `  for (var i = 0u; i < ${size * ids.length <= FUSED_UNROLL_MAX ? `${size}u` : `${size}u + z`}; i++) {\n${lines.join('\n')}\n  }`;
  }

  /** Entry i of an elementwise node (see isElementwise) as an expression. */
  private entry(id: NodeId, loads: Loads): string {
    const n = this.node(id);
    switch (n.op) {
      case 'state':
        this.uses.state = true;
        return loads.state('i');
      case 'input':
        this.uses.input = true;
        return loads.input('i');
      case 'cotangent':
        this.uses.cotangent = true;
        return loads.cotangent('i');
      case 'unary':
        return UNARY[n.fn](this.ref(n.a, 'i'));
      case 'binary':
        return BINARY[n.fn](this.ref(n.a, 'i'), this.ref(n.b, 'i'));
      case 'slice':
        return this.ref(n.a, `(i + ${n.start}u)`);
      default:
        throw new Error(`webgpu: node ${id} (${n.op}) is not elementwise`);
    }
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

/** Nodes whose entry i needs only entry i of their operands (or a fixed entry of an array). */
function isElementwise(node: Node): boolean {
  switch (node.op) {
    case 'state':
    case 'input':
    case 'cotangent':
    case 'unary':
    case 'binary':
    case 'slice':
      return node.size > 0;
    default:
      return false;
  }
}

/** How a kernel body evaluates its live nodes: runs fused into one loop, or a node alone. */
export type Stage = { readonly fused: readonly NodeId[] } | { readonly alone: NodeId };

/**
 * Fuse elementwise nodes of one size into single loops whose values are scalars, so that only what
 * is read elsewhere — by another loop, a matrix product, a slice at an offset, a broadcast, or the
 * caller (`keep`) — is a private array. Matrix products, sums and concatenations go first, and an
 * elementwise node is scheduled only when one of them needs it or nothing else is left, so the
 * loops are few and long. One private array per node had been the rule: a GRU n = 32 step kernel
 * held 38 arrays of 32 floats, which llvmpipe took 16 s to compile (and GPUs spill). `loaded`
 * nodes (hoisted values) are read, not computed, and read nothing.
 */
export function planStages(
  g: Graph,
  live: readonly NodeId[],
  keep: Iterable<NodeId>,
  loaded: { has(id: NodeId): boolean },
): { stages: Stage[]; arrays: Set<NodeId> } {
  const inputsOf = (id: NodeId): readonly NodeId[] => (loaded.has(id) ? [] : operands(g.nodes[id]!));
  const fusable = (id: NodeId) => (loaded.has(id) ? g.nodes[id]!.size > 0 : isElementwise(g.nodes[id]!));
  const pending = live.filter((id) => g.nodes[id]!.op !== 'param' && g.nodes[id]!.op !== 'const');
  const done = new Set<NodeId>(live.filter((id) => !pending.includes(id)));
  const stages: Stage[] = [];
  const stageOf = new Map<NodeId, number>();
  const ready = (id: NodeId) => inputsOf(id).every((o) => done.has(o));
  const schedule = (id: NodeId) => {
    stageOf.set(id, stages.length);
    done.add(id);
    pending.splice(pending.indexOf(id), 1);
  };
  while (pending.length > 0) {
    const alone = pending.find((id) => !fusable(id) && ready(id));
    if (alone !== undefined) {
      schedule(alone);
      stages.push({ alone });
      continue;
    }
    // What the remaining products, sums and concatenations wait for (all of it when none remain).
    const others = pending.filter((id) => !fusable(id));
    const needed = new Set<NodeId>();
    const stack = others.flatMap(inputsOf);
    while (stack.length > 0) {
      const id = stack.pop()!;
      if (needed.has(id) || done.has(id)) continue;
      needed.add(id);
      stack.push(...inputsOf(id));
    }
    const wanted = (id: NodeId) => fusable(id) && (others.length === 0 || needed.has(id));
    const first = pending.find((id) => wanted(id) && ready(id))!;
    const size = g.nodes[first]!.size;
    const fused: NodeId[] = [];
    for (const id of [...pending]) {
      if (wanted(id) && g.nodes[id]!.size === size && ready(id)) {
        schedule(id);
        fused.push(id);
      }
    }
    stages.push({ fused });
  }
  const arrays = new Set<NodeId>();
  for (const id of keep) {
    const op = g.nodes[id]!.op;
    if (op !== 'param' && op !== 'const') arrays.add(id);
  }
  for (const id of live) {
    if (loaded.has(id)) continue;
    const node = g.nodes[id]!;
    const sameIndex = node.op === 'unary' || node.op === 'binary';
    for (const o of operands(node)) {
      const operand = g.nodes[o]!;
      if (operand.op === 'param' || operand.op === 'const') continue;
      if (!sameIndex || operand.size !== node.size || stageOf.get(o) !== stageOf.get(id)) arrays.add(o);
    }
  }
  return { stages, arrays };
}

export const SQ_HELPER = 'fn sq_(x: f32) -> f32 { return x * x; }';
