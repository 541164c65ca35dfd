import type { Graph, Node, NodeId, UnaryFn } from '../cell/graph.js';
import { liveNodes, matrixLayout, paramSpec } from '../cell/graph.js';
import { columnSparseOffset, type MatExpr, matExprNodes } from '../cell/matexpr.js';
import { describeValue, InvalidArgumentError, ShapeError } from '../errors.js';
import type { StepProgram } from './program.js';
import type { DType, TypedArray } from './types.js';

/**
 * A step program evaluated element by element on the host: closures over preallocated arrays, one
 * per live node, in the program's dtype (float32 scratch rounds every node's value as float32
 * tensor ops do). Plain on purpose: it is the reference backend's evaluator (the conformance
 * oracle), and backends whose data is on the host use it where per-op dispatch would dominate
 * (sequential evaluation, one step at a time).
 */

const ARRAY = { float32: Float32Array, float64: Float64Array } as const;

type Buf = TypedArray;

const UNARY: Record<UnaryFn, (v: number) => number> = {
  neg: (v) => -v,
  sigmoid: (v) => 1 / (1 + Math.exp(-v)),
  tanh: Math.tanh,
  exp: Math.exp,
  log: Math.log,
  softplus: (v) => (v > 30 ? v : Math.log1p(Math.exp(v))),
  // NaN stays NaN (as in every evaluator): a NaN made inside a cell must not turn into a number.
  relu: (v) => (v > 0 || Number.isNaN(v) ? v : 0),
  step: (v) => (v > 0 ? 1 : Number.isNaN(v) ? v : 0),
  sin: Math.sin,
  cos: Math.cos,
  square: (v) => v * v,
  sqrt: Math.sqrt,
  abs: Math.abs,
  sign: Math.sign,
};

/** Where one (b, t) element's inputs live. */
export interface StepSources {
  state: Buf;
  stateOffset: number;
  input?: Buf;
  inputOffset: number;
  cotangent?: Buf;
  cotangentOffset: number;
}

/**
 * A step program compiled to closures over preallocated scratch arrays: `run` evaluates every live
 * node (and the Jacobian) for one (b, t) element.
 */
export class HostStep {
  private readonly values: Buf[] = [];
  private readonly steps: (() => void)[] = [];
  private readonly loads: ((src: StepSources) => void)[] = [];
  private readonly jacobian?: { evalJ: () => void; buf: Buf; n: number; s: number };
  /** Advanced once per run so memoized matrix evaluations are redone each step. */
  private tick = 0;

  constructor(
    readonly program: StepProgram,
    params: Readonly<Record<string, Buf>>,
    readonly dtype: DType,
  ) {
    const Arr = ARRAY[dtype];
    const g = program.graph;
    const roots = [...program.outputs];
    if (program.jacobian) roots.push(...matExprNodes(program.jacobian.expr));
    const live = liveNodes(g, roots);
    for (const spec of g.params) {
      const got = Object.hasOwn(params, spec.name) ? params[spec.name] : undefined;
      if (got?.length !== spec.size) throw new ShapeError(`param '${spec.name}'`, `${spec.size} values`, got === undefined ? 'none' : `${got.length}`);
    }
    for (const id of live) {
      const node = g.nodes[id]!;
      if (node.op === 'param') this.values[id] = params[node.name]!;
      else if (node.op === 'const') this.values[id] = Arr.from(node.values);
      else this.values[id] = new Arr(node.size);
    }
    for (const id of live) this.compileNode(g, id, g.nodes[id]!, params);
    if (program.jacobian) {
      const { expr, blockSize } = program.jacobian;
      const memo = new Map<MatExpr, { buf: Buf; evalM: () => void }>();
      const m = this.compileMat(g, expr, params, memo, Arr);
      this.jacobian = { evalJ: m.evalM, buf: m.buf, n: g.stateSize, s: blockSize };
    }
  }

  value(id: NodeId): Buf {
    return this.values[id]!;
  }

  run(src: StepSources): void {
    for (const load of this.loads) load(src);
    for (const step of this.steps) step();
    this.tick++;
    this.jacobian?.evalJ();
  }

  /** Copy the Jacobian's diagonal blocks ([n/s, s, s]) of the last run to `out` at `offset`. */
  writeJacobian(out: Buf, offset: number): void {
    const { buf, n, s } = this.jacobian!;
    let o = offset;
    for (let k = 0; k < n / s; k++) {
      for (let i = 0; i < s; i++) {
        const row = (k * s + i) * n + k * s;
        for (let j = 0; j < s; j++) out[o++] = buf[row + j]!;
      }
    }
  }

  private compileNode(g: Graph, id: NodeId, node: Node, params: Readonly<Record<string, Buf>>): void {
    const out = this.values[id]!;
    const size = node.size;
    const v = (k: NodeId) => this.values[k]!;
    switch (node.op) {
      case 'state':
        this.loads.push((s) => copy(s.state, s.stateOffset, out, size));
        return;
      case 'input':
        this.loads.push((s) => copy(s.input!, s.inputOffset, out, size));
        return;
      case 'cotangent':
        this.loads.push((s) => copy(s.cotangent!, s.cotangentOffset, out, size));
        return;
      case 'param':
      case 'const':
        return;
      case 'unary': {
        const f = UNARY[node.fn];
        const a = v(node.a);
        this.steps.push(() => {
          for (let i = 0; i < size; i++) out[i] = f(a[i]!);
        });
        return;
      }
      case 'binary': {
        const a = v(node.a);
        const b = v(node.b);
        const sa = a.length === 1 && size > 1 ? 0 : 1;
        const sb = b.length === 1 && size > 1 ? 0 : 1;
        const op = node.fn;
        if (op === 'min' || op === 'max') {
          // Math.min/max return one operand exactly (NaN if either is NaN).
          const pick = op === 'min' ? Math.min : Math.max;
          this.steps.push(() => {
            for (let i = 0; i < size; i++) out[i] = pick(a[i * sa]!, b[i * sb]!);
          });
          return;
        }
        this.steps.push(() => {
          for (let i = 0; i < size; i++) {
            const x = a[i * sa]!;
            const y = b[i * sb]!;
            out[i] = op === 'add' ? x + y : op === 'sub' ? x - y : op === 'mul' ? x * y : x / y;
          }
        });
        return;
      }
      case 'matvec': {
        const W = params[node.param]!;
        const { blocks, rows, cols } = matrixLayout(paramSpec(g, node.param));
        const x = v(node.v);
        const t = node.transpose;
        this.steps.push(() => {
          for (let k = 0; k < blocks; k++) {
            const wb = k * rows * cols;
            if (!t) {
              for (let i = 0; i < rows; i++) {
                let acc = 0;
                const row = wb + i * cols;
                for (let j = 0; j < cols; j++) acc += W[row + j]! * x[k * cols + j]!;
                out[k * rows + i] = acc;
              }
            } else {
              for (let j = 0; j < cols; j++) out[k * cols + j] = 0;
              for (let i = 0; i < rows; i++) {
                const xi = x[k * rows + i]!;
                const row = wb + i * cols;
                for (let j = 0; j < cols; j++) out[k * cols + j]! += W[row + j]! * xi;
              }
            }
          }
        });
        return;
      }
      case 'slice': {
        const a = v(node.a);
        const start = node.start;
        this.steps.push(() => copy(a, start, out, size));
        return;
      }
      case 'concat': {
        const parts = node.parts.map(v);
        this.steps.push(() => {
          let at = 0;
          for (const p of parts) {
            out.set(p, at);
            at += p.length;
          }
        });
        return;
      }
      case 'sum': {
        const a = v(node.a);
        this.steps.push(() => {
          let acc = 0;
          for (let i = 0; i < a.length; i++) acc += a[i]!;
          out[0] = acc;
        });
        return;
      }
    }
  }

  /** Compile a matrix expression to a dense rows×cols buffer and its evaluation (empty when static). */
  private compileMat(
    g: Graph,
    m: MatExpr,
    params: Readonly<Record<string, Buf>>,
    memo: Map<MatExpr, { buf: Buf; evalM: () => void }>,
    Arr: Float64ArrayConstructor | Float32ArrayConstructor,
  ): { buf: Buf; evalM: () => void } {
    const hit = memo.get(m);
    if (hit) return hit;
    const { rows, cols } = m;
    const buf = new Arr(rows * cols);
    let evalM: () => void = () => {};
    const sub = (e: MatExpr) => this.compileMat(g, e, params, memo, Arr);
    switch (m.kind) {
      case 'zero':
        break;
      case 'select':
        for (let i = 0; i < rows; i++) {
          const j = i + m.offset;
          if (j >= 0 && j < cols) buf[i * cols + j] = 1;
        }
        break;
      case 'rowscale': {
        const inner = sub(m.m);
        const d = this.values[m.d]!;
        const sd = d.length === 1 ? 0 : 1;
        evalM = () => {
          inner.evalM();
          const ib = inner.buf;
          for (let i = 0; i < rows; i++) {
            const di = d[i * sd]!;
            const r = i * cols;
            for (let j = 0; j < cols; j++) buf[r + j] = di * ib[r + j]!;
          }
        };
        break;
      }
      case 'add': {
        const terms = m.terms.map(sub);
        evalM = () => {
          buf.fill(0);
          for (const t of terms) {
            t.evalM();
            const tb = t.buf;
            for (let k = 0; k < buf.length; k++) buf[k]! += tb[k]!;
          }
        };
        break;
      }
      case 'matmul': {
        const inner = sub(m.m);
        const W = params[m.param]!;
        const { blocks, rows: pr, cols: pc } = matrixLayout(paramSpec(g, m.param));
        const t = m.transpose;
        const outRows = t ? pc : pr; // per block
        const inRows = t ? pr : pc;
        // P[i][k] within block b, with i, k local to the block.
        const P = (b: number, i: number, k: number) => (t ? W[b * pr * pc + k * pc + i]! : W[b * pr * pc + i * pc + k]!);
        const offset = columnSparseOffset(m.m);
        evalM = () => {
          inner.evalM();
          const ib = inner.buf;
          buf.fill(0);
          if (offset !== undefined) {
            // Each column j of the inner matrix has its only nonzero at row j − offset.
            for (let j = 0; j < cols; j++) {
              const kk = j - offset;
              if (kk < 0 || kk >= inner.buf.length / cols) continue;
              const val = ib[kk * cols + j]!;
              if (val === 0) continue;
              const b = Math.floor(kk / inRows);
              const k = kk - b * inRows;
              for (let i = 0; i < outRows; i++) buf[(b * outRows + i) * cols + j] = P(b, i, k) * val;
            }
            return;
          }
          for (let b = 0; b < blocks; b++) {
            for (let i = 0; i < outRows; i++) {
              const r = (b * outRows + i) * cols;
              for (let k = 0; k < inRows; k++) {
                const p = P(b, i, k);
                if (p === 0) continue;
                const ir = (b * inRows + k) * cols;
                for (let j = 0; j < cols; j++) buf[r + j]! += p * ib[ir + j]!;
              }
            }
          }
        };
        break;
      }
      case 'slicerows': {
        const inner = sub(m.m);
        const from = m.start * cols;
        evalM = () => {
          inner.evalM();
          copy(inner.buf, from, buf, rows * cols);
        };
        break;
      }
      case 'concatrows': {
        const parts = m.parts.map(sub);
        evalM = () => {
          let at = 0;
          for (const p of parts) {
            p.evalM();
            buf.set(p.buf, at);
            at += p.buf.length;
          }
        };
        break;
      }
      case 'sumrows': {
        const inner = sub(m.m);
        const innerRows = m.m.rows;
        evalM = () => {
          inner.evalM();
          buf.fill(0);
          for (let i = 0; i < innerRows; i++) for (let j = 0; j < cols; j++) buf[j]! += inner.buf[i * cols + j]!;
        };
        break;
      }
      case 'broadcastrows': {
        const inner = sub(m.m);
        evalM = () => {
          inner.evalM();
          for (let i = 0; i < rows; i++) buf.set(inner.buf, i * cols);
        };
        break;
      }
    }
    // A subexpression shared by several parents is evaluated once per step.
    let stamp = -1;
    const once = evalM;
    const entry = {
      buf,
      evalM: () => {
        if (stamp === this.tick) return;
        stamp = this.tick;
        once();
      },
    };
    memo.set(m, entry);
    return entry;
  }
}

function copy(src: Buf, from: number, dst: Buf, len: number): void {
  for (let i = 0; i < len; i++) dst[i] = src[from + i]!;
}

/**
 * Sequential evaluation of a one-output step program on host arrays: y[b, t] = f(y[b, t − 1], x[b, t])
 * from y0 ([B, n]), x [B, T, m] (absent: T = 1 and no input), params by name; y [B, T, n] in `dtype`.
 */
export function hostSequential(
  program: StepProgram,
  params: Readonly<Record<string, TypedArray>>,
  x: TypedArray | undefined,
  y0: TypedArray,
  B: number,
  T: number,
  dtype: DType,
): TypedArray {
  const n = program.graph.stateSize;
  const m = program.graph.inputSize;
  for (const [what, v] of [['B', B], ['T', T]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new InvalidArgumentError(`hostSequential ${what}`, 'an integer ≥ 0', describeValue(v));
  }
  if (y0.length !== B * n) throw new ShapeError('hostSequential y0', `[${B}, ${n}] (${B * n} values)`, `${y0.length} values`);
  const xLength = x?.length ?? 0;
  if (m > 0 ? xLength !== B * T * m : x !== undefined && xLength !== 0) {
    throw new ShapeError('hostSequential x', `[${B}, ${T}, ${m}] (${B * T * m} values)`, `${xLength} values`);
  }
  const step = new HostStep(program, params, dtype);
  const y = new ARRAY[dtype](B * T * n);
  const f = program.outputs[0]!;
  const src: StepSources = { state: y0, stateOffset: 0, input: x, inputOffset: 0, cotangent: undefined, cotangentOffset: 0 };
  for (let b = 0; b < B; b++) {
    src.state = y0;
    src.stateOffset = b * n;
    for (let t = 0; t < T; t++) {
      src.inputOffset = (b * T + t) * m;
      step.run(src);
      y.set(step.value(f), (b * T + t) * n);
      src.state = y;
      src.stateOffset = (b * T + t) * n;
    }
  }
  return y;
}
