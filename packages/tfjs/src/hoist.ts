import type { StepInputs } from '@deerjs/core';
import type { Hoisted } from './step.js';
import { type Tf, TfjsTensor } from './tensor.js';

/** The kept values computed from one input and one set of params. */
interface Entry {
  readonly input: TfjsTensor;
  readonly params: readonly TfjsTensor[];
  /** The tf data behind each, compared too: assigning a tf.Variable changes it. */
  readonly data: readonly object[];
  /** Per slab (its first row and row count). */
  readonly slabs: Map<string, Hoisted>;
}

/** Entries kept at once: a training step alternates between a few layers' inputs and params. */
const MAX_ENTRIES = 4;

/**
 * Input-only values of step programs (W·x + b and the like) kept between runs: Newton evaluates
 * the same cell on the same x and params every iteration, and the gradient's programs again. An
 * entry lives while its input and param tensors do (dropped when one is disposed), at most
 * MAX_ENTRIES of them, the least recently used going first.
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
    for (const e of this.entries) if (e.input === t || e.params.includes(t)) this.drop(e);
  }

  clear(): void {
    for (const e of [...this.entries]) this.drop(e);
  }

  private entry(inputs: StepInputs): Entry | undefined {
    if (!(inputs.input instanceof TfjsTensor)) return undefined;
    const params = Object.values(inputs.params).filter((p): p is TfjsTensor => p instanceof TfjsTensor);
    const data = [inputs.input, ...params].map((t) => t.tf.dataId);
    const same = (e: Entry) =>
      e.input === inputs.input && e.params.length === params.length && e.params.every((p, i) => p === params[i]);
    let entry = this.entries.find(same);
    if (entry && !entry.data.every((d, i) => d === data[i])) {
      this.drop(entry);
      entry = undefined;
    }
    if (!entry) {
      entry = { input: inputs.input, params, data, slabs: new Map() };
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
