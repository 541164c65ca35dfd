import { hostMaxAbs } from '../backend/host-update.js';
import type { StepProgram } from '../backend/program.js';
import type {
  Backend,
  DeerStepInputs,
  NewtonUpdate,
  NewtonUpdateOptions,
  ScanArgs,
  Tensor,
  TypedArray,
} from '../backend/types.js';
import { UnsupportedOptionError } from '../errors.js';
import type { AbortCheck } from './abort.js';

/**
 * Solves are generators that yield at their reads, so the same steps run under an async driver
 * (`driveAsync`) or a synchronous one (`driveSync`, for backends with synchronous reads).
 */
export type ReadRequest =
  | {
      readonly kind: 'update';
      readonly raw: Tensor;
      readonly previous: Tensor;
      readonly opts: NewtonUpdateOptions;
    }
  | {
      /** The update of the step δ = scan(args): `backend.scanUpdate`, or the scan then the update. */
      readonly kind: 'scan-update';
      readonly args: ScanArgs;
      readonly previous: Tensor;
      readonly opts: NewtonUpdateOptions;
    }
  | {
      /** `backend.deerStep`: a fused DEER step, or null where the backend has none (sync drivers: always). */
      readonly kind: 'deer-step';
      readonly program: StepProgram;
      readonly inputs: DeerStepInputs;
      readonly previous: Tensor;
      readonly opts: NewtonUpdateOptions;
    }
  | { readonly kind: 'read'; readonly tensor: Tensor }
  /** `backend.maxAbs` (NaN if any entry is NaN; sync drivers: on `readSync`'s values, NaN without it). */
  | { readonly kind: 'max-abs'; readonly tensor: Tensor }
  | {
      readonly kind: 'async';
      readonly run: () => Promise<unknown>;
      /** What a sync driver throws instead (default: the backend needs an async driver). */
      readonly refusedSync?: () => Error;
    };

/** A solve (or part of one) that yields at its reads. */
export type Solve<R> = Generator<ReadRequest, R, unknown>;

/** Sanitize `raw` and measure it against `previous` (one small read). */
export function* readUpdate(raw: Tensor, previous: Tensor, opts: NewtonUpdateOptions): Solve<NewtonUpdate> {
  return (yield { kind: 'update', raw, previous, opts }) as NewtonUpdate;
}

/** Solve δ_t = A_t δ_{t−1} + c_t by the forward scan and apply δ to `previous` as `readUpdate` does. */
export function* readScanUpdate(args: ScanArgs, previous: Tensor, opts: NewtonUpdateOptions): Solve<NewtonUpdate> {
  return (yield { kind: 'scan-update', args, previous, opts: { ...opts, delta: true } }) as NewtonUpdate;
}

/** The backend's fused DEER step at `previous` (see `Backend.deerStep`), or null where it has none. */
export function* readDeerStep(
  program: StepProgram,
  inputs: DeerStepInputs,
  previous: Tensor,
  opts: NewtonUpdateOptions,
): Solve<NewtonUpdate | null> {
  return (yield { kind: 'deer-step', program, inputs, previous, opts }) as NewtonUpdate | null;
}

/**
 * The scan, then the update of its step δ (`delta: true`): what `Backend.scanUpdate` fuses, and what
 * a backend without it (or a case it does not fuse) gets instead.
 */
export async function scanThenUpdate(
  backend: Backend,
  args: ScanArgs,
  previous: Tensor,
  opts: NewtonUpdateOptions,
): Promise<NewtonUpdate> {
  const raw = backend.scan(args);
  try {
    return await backend.newtonUpdate(raw, previous, { ...opts, delta: true });
  } finally {
    backend.dispose(raw);
  }
}

/** A tensor's values on the host (sync drivers need `backend.readSync`). */
export function* readTensor(tensor: Tensor): Solve<TypedArray> {
  return (yield { kind: 'read', tensor }) as TypedArray;
}

/** max |entry| of a tensor, NaN if any entry is NaN: one reduction and a scalar read on a device. */
export function* readMaxAbs(tensor: Tensor): Solve<number> {
  return (yield { kind: 'max-abs', tensor }) as number;
}

/** Await `run` inside a solve (async drivers only; a sync one throws `refusedSync()` where given). */
export function* awaitAsync<T>(run: () => Promise<T>, refusedSync?: () => Error): Solve<T> {
  return (yield { kind: 'async', run, ...(refusedSync ? { refusedSync } : {}) }) as T;
}

/** Runs `solve`, answering its reads; an abort is raised inside it at the next read (`AbortCheck`). */
export async function driveAsync<R>(backend: Backend, solve: Solve<R>, abort?: AbortCheck): Promise<R> {
  let step = solve.next();
  while (!step.done) {
    let answer: unknown;
    try {
      await abort?.check();
      const r = step.value;
      if (r.kind === 'update') answer = await backend.newtonUpdate(r.raw, r.previous, r.opts);
      else if (r.kind === 'scan-update')
        answer = backend.scanUpdate
          ? await backend.scanUpdate(r.args, r.previous, r.opts)
          : await scanThenUpdate(backend, r.args, r.previous, r.opts);
      else if (r.kind === 'deer-step') {
        const fused = backend.deerStep?.(r.program, r.inputs, r.previous, r.opts);
        answer = fused ? await fused : null;
      } else if (r.kind === 'read') answer = await backend.read(r.tensor);
      else if (r.kind === 'max-abs') answer = await backend.maxAbs(r.tensor);
      else answer = await r.run();
    } catch (err) {
      // Raised inside the generator at its read, so it disposes what it holds.
      step = solve.throw(err);
      continue;
    }
    step = solve.next(answer);
  }
  return step.value;
}

export function driveSync<R>(backend: Backend, solve: Solve<R>, abort?: AbortCheck): R {
  const update = backend.newtonUpdateSync?.bind(backend);
  if (!update) {
    throw new UnsupportedOptionError(
      'backend',
      backend.name,
      'a backend with synchronous reads (newtonUpdateSync)',
    );
  }
  let step = solve.next();
  while (!step.done) {
    let answer: unknown;
    try {
      abort?.checkSync();
      const r = step.value;
      if (r.kind === 'update') answer = update(r.raw, r.previous, r.opts);
      else if (r.kind === 'scan-update') {
        const raw = backend.scan(r.args);
        try {
          answer = update(raw, r.previous, r.opts);
        } finally {
          backend.dispose(raw);
        }
      }
      else if (r.kind === 'deer-step') answer = null;
      else if (r.kind === 'read' && backend.readSync) answer = backend.readSync(r.tensor);
      // Without readSync, NaN: "not known finite", so the caller takes its per-row update instead.
      else if (r.kind === 'max-abs') answer = backend.readSync ? hostMaxAbs(backend.readSync(r.tensor)) : Number.NaN;
      else if (r.kind === 'async' && r.refusedSync) throw r.refusedSync();
      else throw new UnsupportedOptionError('backend', backend.name, 'an asynchronous driver for this solve');
    } catch (err) {
      step = solve.throw(err);
      continue;
    }
    step = solve.next(answer);
  }
  return step.value;
}
