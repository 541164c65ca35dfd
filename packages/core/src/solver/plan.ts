import { InvalidArgumentError } from '../errors.js';
import type { Cell } from '../cell/cell.js';
import { type Graph, liveNodes, matrixLayout, type NodeId, paramSpec, type UnaryFn } from '../cell/graph.js';
import { probePrefix, probeReads, probeSteps } from './probes.js';
import type { Chunking } from './shooting.js';

/**
 * The cost model behind `method: 'auto'`: which Jacobian structure DEER should use, and whether
 * DEER can beat plain sequential evaluation at all on this backend. Costs are counted in
 * multiply-add equivalents and turned into time by the backend's `capabilities.parallelism`
 * (lanes computing at once). The constants are rough by design — the model only has to tell
 * apart cases that differ by large factors (a 2-core CPU, where DEER's extra work can never pay,
 * from a GPU with 10⁴ idle lanes), and its estimates are reported so that its choices can be checked.
 */

/** Unary functions priced like a transcendental (a few dozen instructions). */
const EXPENSIVE: ReadonlySet<UnaryFn> = new Set(['sigmoid', 'tanh', 'exp', 'log', 'softplus', 'sin', 'cos', 'sqrt']);
const TRANSCENDENTAL = 10;
/**
 * Fixed cost of one Newton iteration's passes (launches, reads), whatever its size: about 5 µs at
 * one multiply-add per nanosecond — what keeps short sequences sequential. Backends whose
 * iterations cost more (a GPU's submission and read round trip) say so in
 * `capabilities.iterationOverhead`.
 */
export const ITERATION_OVERHEAD = 5000;
/** Newton iterations assumed with the exact Jacobian, and with a coarser one (quasi-DEER). */
export const EXACT_ITERATIONS = 6;
export const QUASI_ITERATIONS = 15;

/** Multiply-add equivalents of one evaluation of `roots` for one (b, t) element. */
export function stepCost(graph: Graph, roots: readonly NodeId[]): number {
  let cost = 0;
  for (const id of liveNodes(graph, roots)) {
    const node = graph.nodes[id]!;
    switch (node.op) {
      case 'matvec': {
        const { blocks, rows, cols } = matrixLayout(paramSpec(graph, node.param));
        cost += blocks * rows * cols;
        break;
      }
      case 'unary':
        cost += node.size * (EXPENSIVE.has(node.fn) ? TRANSCENDENTAL : 1);
        break;
      case 'binary':
        cost += node.size * (node.fn === 'div' ? 4 : 1);
        break;
      case 'sum':
        cost += graph.nodes[node.a]!.size;
        break;
      default:
        break;
    }
  }
  return cost;
}

export interface DeerEstimate {
  readonly blockSize: number;
  readonly iterations: number;
  /** Estimated time units of one Newton iteration (work / lanes + serial depth of the scan + overhead). */
  readonly perIteration: number;
  /** 'auto''s probe before the Newton work (0 where none runs). */
  readonly probe: number;
  /** iterations × perIteration, plus the final residual check and the probe. */
  readonly total: number;
}

/** What a backend says about its costs beyond its lanes (see BackendCapabilities). */
export interface CostOptions {
  readonly iterationOverhead?: number | undefined;
  readonly sequentialStep?: { readonly spread: number; readonly floor: number; readonly fromState?: number } | undefined;
  /** `sequentialRowGain` for the solve's dtype. */
  readonly rowGain?: number | undefined;
  /**
   * 'auto' probes the rows (probes.ts) before any Newton work, with this horizon (the iteration
   * budget): its sequential steps, reads and host walk over the Jacobians are priced into every
   * DEER estimate. Absent: not priced (deer.ts prices it where the backend states
   * `iterationOverhead`, as on a GPU, where it was measured).
   */
  readonly probeHorizon?: number | undefined;
  /**
   * `planShootingUpFront`: what the full Newton step that confirms shooting's answer costs, as a
   * fraction of the sequential pass (deer.ts takes it from `planSolve`'s estimates).
   */
  readonly confirm?: number | undefined;
}

/**
 * Units per float the probe reads back and walks on the host (Jacobians, the prefix and the
 * perturbed runs): fitted to the H200 run, where the probe took 20–170 ms beyond its sequential
 * steps (apps/bench/results/webgpu-h200: 'auto' against DEER with the structure it chose).
 */
const PROBE_FLOAT_COST = 5;

/** Sweeps parallel shooting is priced at when 'auto' weighs it up front: two finish a row that forgets within a chunk, one more for margin. */
export const EXPECTED_SWEEPS = 3;

/**
 * Shortest sequence 'auto' shoots up front: below, a sweep's fixed host work (folding, a few
 * copies, the check's read) is not small against the pass (cpu, float32, one GRU row, nh = 1, 8,
 * 32: 0.6–0.8× sequential's speed at T = 300, 1.3–2.2× at T = 1000).
 */
export const MIN_SHOOTING_T = 1000;

export interface SolvePlan {
  /**
   * 'sequential', 'shoot' (parallel shooting up front, where sequential evaluation was the
   * alternative: `planShootingUpFront`), or the block size DEER should use.
   */
  readonly choice: 'sequential' | 'shoot' | number;
  /** Estimated time units of sequential evaluation: T serial steps, batch rows spread over lanes. */
  readonly sequential: number;
  /** One estimate per candidate structure. */
  readonly deer: readonly DeerEstimate[];
  readonly reason: string;
}

/** The planners' sizes: B and T positive integers, rows an integer ≥ 0, lanes > 0 (Infinity too). */
function checkPlanInputs(fn: string, sizes: Readonly<Record<string, number | undefined>>): void {
  for (const [name, v] of Object.entries(sizes)) {
    if (v === undefined) continue;
    // rows may be 0: 'auto' asks whether shooting could pay before it knows of any row to shoot.
    const min = name === 'rows' ? 0 : 1;
    const ok = name === 'lanes' ? v > 0 : Number.isSafeInteger(v) && v >= min;
    if (!ok) throw new InvalidArgumentError(`${fn} ${name}`, name === 'lanes' ? 'a number > 0' : `an integer ≥ ${min}`, String(v));
  }
}

/**
 * The plan for B rows of T steps of `cell` on a backend running `lanes` lanes at once, choosing
 * among the block sizes `candidates` (the exact one first).
 */
export function planSolve(
  cell: Cell,
  B: number,
  T: number,
  lanes: number,
  candidates: readonly number[],
  costs: CostOptions = {},
): SolvePlan {
  checkPlanInputs('planSolve', { B, T, lanes });
  if (candidates.length === 0 || !candidates.every((c) => Number.isSafeInteger(c) && c >= 1))
    throw new InvalidArgumentError('planSolve candidates', 'block sizes (positive integers), the exact one first', `[${candidates.join(', ')}]`);
  const iterationOverhead = costs.iterationOverhead ?? ITERATION_OVERHEAD;
  const n = cell.stateSize;
  const program = cell.stepProgram();
  const f = stepCost(program.graph, program.outputs);
  const exact = candidates[0]!;
  const perStep = sequentialStepCost(n, f, costs);
  // The probe: its sequential steps (rows over the lanes), its reads' round trips, and the floats
  // it reads and walks on the host: the prefix's Jacobians (exact structure), the prefix and the
  // perturbed runs.
  // The probe always reads the cell's exact Jacobian structure, whatever the candidates.
  const horizon = costs.probeHorizon;
  const sProbe = cell.exactBlockSize;
  const probe =
    horizon === undefined
      ? 0
      : probeSteps(T, B, n, sProbe, horizon) * perStep * Math.ceil(B / lanes) +
        probeReads(T, B, n, sProbe, horizon) * iterationOverhead +
        probePrefix(T, B, n, sProbe, horizon) * B * n * (sProbe + 3) * PROBE_FLOAT_COST;
  const deer = candidates.map((s): DeerEstimate => {
    const perIteration = iterationWork(n, f, s, B, T, lanes) + iterationOverhead;
    const iterations = s === exact ? EXACT_ITERATIONS : QUASI_ITERATIONS;
    const check = (B * T * f) / lanes;
    return { blockSize: s, iterations, perIteration, probe, total: iterations * perIteration + check + probe };
  });
  const sequential = T * perStep * Math.ceil(B / lanes);
  const best = deer.reduce((a, b) => (b.total < a.total ? b : a));
  const ratio = best.total / sequential;
  const fmt = (v: number) => (v >= 10 ? v.toFixed(0) : v.toPrecision(2));
  if (ratio >= 1) {
    return {
      choice: 'sequential',
      sequential,
      deer,
      reason: `cost model (${lanes} lanes): DEER estimated ${fmt(ratio)}× sequential → sequential`,
    };
  }
  const what = best.blockSize === exact ? 'exact Jacobian' : `block size ${best.blockSize} (quasi)`;
  return {
    choice: best.blockSize,
    sequential,
    deer,
    reason: `cost model (${lanes} lanes): DEER with the ${what} estimated ${fmt(1 / ratio)}× faster than sequential`,
  };
}

/** A Newton iteration's work over the lanes, its fixed overhead aside (time units). */
function iterationWork(n: number, f: number, s: number, B: number, T: number, lanes: number): number {
  // Linearisation (f and ~3 terms per Jacobian entry), the chunked scan (fix-up n·s² and
  // summaries (s + 1) times that; diagonal: 3n) and the update (~4n).
  const scan = s === 1 ? 3 * n : n * s * s * (s + 2);
  const work = f + 3 * n * s + scan + 4 * n;
  // The scan's serial span: about 2√T chunk steps of s² each.
  const depth = 2 * Math.sqrt(T) * s * s;
  return (B * T * work) / lanes + depth;
}

/** Most Newton iterations run between two convergence checks (`unreadIterations`). */
export const MAX_UNREAD = 3;

/**
 * Newton iterations to run before each convergence check without reading their measures, where a
 * read costs a round trip (`iterationOverhead`, stated by backends such as a GPU's): as many as
 * together cost no more than one round trip, at most MAX_UNREAD. A solve then runs at most that
 * many iterations past the one that converged — at most one round trip's time — and reads about
 * 1 / (unread + 1) as often. 0 where the backend states no overhead or lanes.
 */
export function unreadIterations(cell: Cell, B: number, T: number, blockSize: number, lanes: number | undefined, iterationOverhead: number | undefined): number {
  if (lanes === undefined || iterationOverhead === undefined) return 0;
  const program = cell.stepProgram();
  const work = iterationWork(cell.stateSize, stepCost(program.graph, program.outputs), blockSize, B, T, lanes);
  return Math.max(0, Math.min(MAX_UNREAD, Math.floor(iterationOverhead / work)));
}

/** One step of sequential evaluation of a state of n with step work f (see `sequentialStep`). */
function sequentialStepCost(n: number, f: number, costs: CostOptions): number {
  const spread = costs.sequentialStep;
  return spread && n >= (spread.fromState ?? 8) ? Math.max(f / spread.spread, spread.floor) : f;
}

/** `sequentialStepCost` of the cell's own step program. */
function cellStepCost(cell: Cell, costs: CostOptions): number {
  const program = cell.stepProgram();
  return sequentialStepCost(cell.stateSize, stepCost(program.graph, program.outputs), costs);
}

/** How parallel shooting cuts time, and the sweeps it may take. */
export interface ShootingPlan extends Chunking {
  readonly maxSweeps: number;
}

/**
 * Parallel shooting (`shooting.ts`) for `rows` rows of T steps: about √T chunks, which balances a
 * sweep's depth (L steps) against the sweeps a row needs (about its memory / L + 2), no more than
 * the lanes hold; and as many sweeps as cost at most twice a sequential pass of the same rows
 * (each sweep runs rows · K chunks of L steps side by side and pays the round trip of its check),
 * never more than K, by which every chunk is exact. Unlimited lanes where none are stated.
 * Null where shooting cannot pay: one chunk, or fewer than two sweeps (one cannot confirm a guess).
 */
export function planShooting(
  cell: Cell,
  rows: number,
  T: number,
  lanes: number | undefined,
  costs: CostOptions = {},
): ShootingPlan | null {
  checkPlanInputs('planShooting', { rows, T, lanes });
  const { chunks, length } = shootingChunks(T, lanes === undefined ? undefined : Math.max(1, Math.floor(lanes / Math.max(1, rows))));
  let maxSweeps = chunks;
  if (lanes !== undefined) {
    const perStep = cellStepCost(cell, costs);
    const sequential = T * perStep * Math.ceil(rows / lanes);
    const sweep = length * perStep * Math.ceil((rows * chunks) / lanes) + (costs.iterationOverhead ?? ITERATION_OVERHEAD);
    maxSweeps = Math.min(maxSweeps, Math.floor((2 * sequential) / sweep));
  }
  return chunks < 2 || maxSweeps < 2 ? null : { chunks, length, maxSweeps };
}

/** T cut into about √T chunks (at most `most`), each of L = ⌈T / K⌉ steps but the last. */
export function shootingChunks(T: number, most?: number): Chunking {
  let K = Math.max(1, Math.ceil(Math.sqrt(T)));
  if (most !== undefined) K = Math.max(1, Math.min(K, most));
  const length = Math.ceil(T / K);
  return { chunks: Math.ceil(T / length), length };
}

/**
 * Parallel shooting as 'auto''s choice before any Newton work, where sequential evaluation would
 * be (`planSolve` chose it): B rows of T steps fold into B·K rows of L steps, and a backend whose
 * sequential step costs about the same for up to `rowGain` rows as for one (SIMD lanes, threads,
 * batching: `sequentialRowGain`) runs a sweep in L·max(1, B·K / gain) row-step times against
 * T·max(1, B / gain) for the sequential pass. Chosen where EXPECTED_SWEEPS sweeps cost less than
 * that pass — which needs a gain above 3·B: on the cpu backend one float32 row on two or more
 * threads — with no probe first; the sweeps allowed cost at most one more pass, so a row that does
 * not forget (or is chaotic) costs at most about twice sequential before sequential evaluation
 * answers it. A full Newton step then confirms what the sweeps settled (`costs.confirm`, its price
 * against the sequential pass): where it is dear, as for a dense Jacobian on a CPU, shooting does
 * not pay. Null otherwise.
 */
export function planShootingUpFront(
  cell: Cell,
  B: number,
  T: number,
  costs: CostOptions = {},
): (ShootingPlan & { readonly reason: string }) | null {
  checkPlanInputs('planShootingUpFront', { B, T });
  const gain = costs.rowGain;
  if (gain === undefined || gain <= 1 || T < MIN_SHOOTING_T) return null;
  const { chunks, length } = shootingChunks(T);
  const perStep = cellStepCost(cell, costs);
  const sequential = T * perStep * Math.max(1, B / gain);
  const sweep = length * perStep * Math.max(1, (B * chunks) / gain) + (costs.iterationOverhead ?? ITERATION_OVERHEAD);
  // The sweeps, and the full step that confirms what they settle (engine.ts, shootFailedRows).
  const ratio = (EXPECTED_SWEEPS * sweep) / sequential + (costs.confirm ?? 0);
  if (ratio >= 1) return null;
  const maxSweeps = Math.min(chunks, Math.floor(sequential / sweep));
  return {
    chunks,
    length,
    maxSweeps,
    reason: `cost model (row gain ${gain}): parallel shooting, ${chunks} chunks of ${length} steps, estimated ${(1 / ratio).toFixed(1)}× faster than sequential in ${EXPECTED_SWEEPS} sweeps (at most ${maxSweeps}) and a confirming full step`,
  };
}
