import type { StepInputs } from '@deerjs/core';
import type { Hoisted } from './step.js';
import { type Tf, TfjsTensor } from './tensor.js';

/** One tensor an entry was computed from: the wrapper and the tf data behind it then. */
interface Bound {
  readonly t: TfjsTensor;
  /**
   * The tf data (its dataId object, compared by identity): assigning a tf.Variable keeps the
   * wrapper and changes this.
   */
  readonly data: object;
}

/**
 * The kept values computed from one input and one binding of param names to tensors. Kept values
 * are keyed by the expression they compute (vectors.ts `exprKey`), which names params: `mv:"W"…`
 * is W·x for whichever tensor is bound to W, so an entry is found by the names as well as the
 * tensors (the same two tensors bound as {W, U} and as {U, W} are two entries).
 */
interface Entry {
  readonly input: Bound;
  /** The params by name, sorted by name. */
  readonly names: readonly string[];
  readonly params: readonly Bound[];
  /** Per slab (its first row and row count). */
  readonly slabs: Map<string, Hoisted>;
}

/** Entries kept at once: a training step alternates between a few layers' inputs and params. */
const MAX_ENTRIES = 4;

/**
 * Input-only values of step programs (W·x + b and the like) kept between runs: Newton evaluates
 * the same cell on the same x and params every iteration, and the gradient's programs again. An
 * entry is found by everything its values depend on besides the expression itself (which is their
 * key inside the entry): the input tensor and its data, and each param name with its tensor and
 * that tensor's data. It lives while its input and param tensors do (dropped when one is disposed
 * or released), at most MAX_ENTRIES of them, the least recently used going first. Wrappers and
 * dataIds are held as objects, never as numeric ids, so a disposed tensor's id reused by a new
 * one cannot match.
 */
export class HoistCache {
  private entries: Entry[] = [];

  constructor(private readonly tf: Tf) {}

  /** The kept values of one slab of this run, to read and add to. */
  slab(inputs: StepInputs, r0: number, rows: number): Hoisted | undefined {
    const entry = this.entry(inputs);
    if (!entry) return undefined;
    const key = `${r0}:${rows}`;
    let kept = entry.slabs.get(key);
    if (!kept) {
      kept = { known: new Map(), tensors: [] };
      entry.slabs.set(key, kept);
    }
    return kept;
  }

  /** Drop what was computed from `t` (the input or a param of some entry). */
  forget(t: TfjsTensor): void {
    for (const e of [...this.entries]) if (e.input.t === t || e.params.some((p) => p.t === t)) this.drop(e);
  }

  clear(): void {
    for (const e of [...this.entries]) this.drop(e);
  }

  private entry(inputs: StepInputs): Entry | undefined {
    const input = inputs.input;
    if (!(input instanceof TfjsTensor)) return undefined;
    const names = Object.keys(inputs.params).sort();
    const tensors = names.map((k) => inputs.params[k]);
    // Nothing kept for a binding that is not all tfjs tensors (runStep refuses it anyway).
    if (!tensors.every((p): p is TfjsTensor => p instanceof TfjsTensor)) return undefined;
    const bound = (t: TfjsTensor): Bound => ({ t, data: t.tf.dataId });
    const now = { input: bound(input), params: tensors.map(bound) };
    const sameTensors = (e: Entry) =>
      e.input.t === input &&
      e.names.length === names.length &&
      e.names.every((k, i) => k === names[i] && e.params[i]!.t === tensors[i]);
    const sameData = (e: Entry) =>
      e.input.data === now.input.data && e.params.every((p, i) => p.data === now.params[i]!.data);
    let entry = this.entries.find(sameTensors);
    if (entry && !sameData(entry)) {
      this.drop(entry);
      entry = undefined;
    }
    if (!entry) {
      entry = { input: now.input, names, params: now.params, slabs: new Map() };
      if (this.entries.length >= MAX_ENTRIES) this.drop(this.entries[0]!);
    } else this.entries = this.entries.filter((e) => e !== entry);
    this.entries.push(entry);
    return entry;
  }

  private drop(entry: Entry): void {
    for (const h of entry.slabs.values()) this.tf.dispose(h.tensors);
    this.entries = this.entries.filter((e) => e !== entry);
  }
}
