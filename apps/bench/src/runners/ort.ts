import type { GridPoint } from '../grid.js';
import type { Problem } from '../problem.js';
import type { Run } from '../timing.js';

interface HostTensor {
  readonly data: Float32Array | Float64Array | Int32Array | BigInt64Array;
  readonly dims: readonly number[];
}
interface OrtSession {
  run(inputs: Readonly<Record<string, HostTensor>>): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}
/** The part of @deerjs/onnx used here. */
interface OnnxPackage {
  buildRecurrentModel(spec: {
    op: 'GRU';
    inputSize: number;
    hiddenSize: number;
    direction: 'forward';
    layout: 0 | 1;
    linearBeforeReset: 0 | 1;
    weights: { W: ArrayLike<number>; R: ArrayLike<number>; B: ArrayLike<number> };
  }): Uint8Array;
  openOrtSession(model: Uint8Array): Promise<OrtSession>;
}

/** onnxruntime is optional: a bench without it still runs, with the ORT column empty. */
export async function loadOnnxPackage(): Promise<OnnxPackage> {
  return (await import('@deerjs/onnx')) as unknown as OnnxPackage;
}

/**
 * The GRU's weights as one ONNX GRU node (linear_before_reset = 1). A multi-head GRU becomes a
 * dense R with its per-head blocks on the diagonal and zeros elsewhere: the same function.
 */
export function onnxGruWeights(
  p: GridPoint,
  params: Readonly<Record<string, Float64Array>>,
): { W: Float64Array; R: Float64Array; B: Float64Array } {
  const n = p.hiddenSize;
  const get = (name: string) => {
    const v = params[name];
    if (!v) throw new Error(`GRU parameter ${name} missing`);
    return v;
  };
  const B = new Float64Array(6 * n);
  B.set(get('Wb'), 0);
  B.set(get('Rb'), 3 * n);
  if (p.heads === undefined) return { W: get('W'), R: get('R'), B };
  const s = n / p.heads;
  const R = new Float64Array(3 * n * n);
  ['Rz', 'Rr', 'Rh'].forEach((name, gate) => {
    const blocks = get(name);
    for (let k = 0; k < p.heads!; k++) {
      for (let i = 0; i < s; i++) {
        for (let j = 0; j < s; j++) {
          R[(gate * n + k * s + i) * n + k * s + j] = blocks[(k * s + i) * s + j]!;
        }
      }
    }
  });
  return { W: get('W'), R, B };
}

/** [B, T, m] → [T, B, m] (ONNX layout 0), or back with the dims swapped. */
export function swapBatchTime(src: ArrayLike<number>, B: number, T: number, m: number): Float32Array {
  const out = new Float32Array(B * T * m);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const from = (b * T + t) * m;
      const to = (t * B + b) * m;
      for (let k = 0; k < m; k++) out[to + k] = src[from + k]!;
    }
  }
  return out;
}

/** An onnxruntime session over one point's GRU, opened once and run many times. */
export interface OrtRunner {
  /** Y as [B, T, n] float32 (transposed back from ONNX layout after the timed part). */
  run(): Promise<Run<Float32Array>>;
  release(): Promise<void>;
}

export async function openOrtRunner(onnx: OnnxPackage, problem: Problem): Promise<OrtRunner> {
  const p = problem.point;
  const model = onnx.buildRecurrentModel({
    op: 'GRU',
    inputSize: p.inputSize,
    hiddenSize: p.hiddenSize,
    direction: 'forward',
    layout: 0,
    linearBeforeReset: 1,
    weights: onnxGruWeights(p, problem.params),
  });
  const session = await onnx.openOrtSession(model);
  const X: HostTensor = {
    data: swapBatchTime(problem.xHost, p.batch, p.T, p.inputSize),
    dims: [p.T, p.batch, p.inputSize],
  };
  return {
    async run() {
      const t0 = performance.now();
      const out = await session.run({ X });
      const ms = performance.now() - t0;
      const Y = out.Y;
      if (!Y) throw new Error('onnxruntime returned no Y');
      // Y is [T, 1, B, n]: with one direction that is [T, B, n].
      return { ms, output: swapBatchTime(Y.data as Float32Array, p.T, p.batch, p.hiddenSize) };
    },
    release: () => session.release(),
  };
}
