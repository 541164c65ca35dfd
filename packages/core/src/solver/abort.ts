import { UnsupportedOptionError } from '../errors.js';

/**
 * How often (ms) a solve given a signal lets queued tasks run. Where every read resolves at once
 * (a CPU backend), a solve never leaves the microtask queue, so an abort that arrives as a task —
 * a timer (`AbortSignal.timeout`), a UI event, a message — would not be seen until the solve ended.
 */
const TASK_POLL_MS = 20;

const now = () => Date.now();

/**
 * When a solve began waiting for the event loop (undefined: none is). Every solve with a signal
 * that checks meanwhile waits for the loop too: one solve's wait alone lets no task run while the
 * others keep the microtask queue busy, so a timer's abort had landed only after about one 20 ms
 * slice per solve in flight (16 solves: +0.9 s). Each waits on its own task, so a wait that never
 * ends (timers faked and never run) holds no other solve, and a mark older than STALE_TURN_MS is
 * ignored.
 */
let turnSince: number | undefined;
const STALE_TURN_MS = 1000;

/**
 * What a solve uses of an AbortSignal (core is typed without the DOM's or Node's declarations;
 * both their AbortSignals fit).
 */
export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason?: unknown;
  /** Throws `reason` once aborted. */
  throwIfAborted(): void;
}

/** The `signal` option: undefined, or an AbortSignal (anything with `aborted` and `throwIfAborted`). */
export function signalOption(v: unknown): AbortSignalLike | undefined {
  if (v === undefined) return undefined;
  const s = v as Partial<AbortSignalLike> | null;
  if (typeof s !== 'object' || s === null || typeof s.aborted !== 'boolean' || typeof s.throwIfAborted !== 'function')
    throw new UnsupportedOptionError('signal', v, 'an AbortSignal (from an AbortController, or AbortSignal.timeout)');
  return s as AbortSignalLike;
}

/** A solve's view of its signal: where it checks, and when it lets tasks run. */
export class AbortCheck {
  private last = now();
  constructor(private readonly signal: AbortSignalLike | undefined) {}

  /** Throws the signal's reason if it was aborted, after letting queued tasks run every TASK_POLL_MS. */
  async check(): Promise<void> {
    const signal = this.signal;
    if (!signal) return;
    const t = now();
    const joining = turnSince !== undefined && t - turnSince < STALE_TURN_MS;
    if (!signal.aborted && (joining || t - this.last >= TASK_POLL_MS)) {
      if (!joining) turnSince = t;
      try {
        await nextTask();
      } finally {
        if (turnSince === t) turnSince = undefined;
      }
      this.last = now();
    }
    signal.throwIfAborted();
  }

  /** Throws the signal's reason if it was aborted (synchronous callers cannot let tasks run). */
  checkSync(): void {
    this.signal?.throwIfAborted();
  }
}

/** Resolves after the event loop has run the tasks queued before it (Node: setImmediate). */
function nextTask(): Promise<void> {
  const g = globalThis as {
    setImmediate?: (cb: () => void) => unknown;
    setTimeout?: (cb: () => void, ms: number) => unknown;
  };
  return new Promise((resolve) => {
    if (g.setImmediate) g.setImmediate(resolve);
    else if (g.setTimeout) g.setTimeout(resolve, 0);
    else resolve();
  });
}
