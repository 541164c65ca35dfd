/** Class indices, in the narrowest array type that holds the largest one. */
export type Labels = Uint8Array | Uint16Array | Int32Array;

/** A label array for `n` examples of `classes` classes: 8 bits up to 256 classes, then 16, then 32. */
export function labelArray(n: number, classes: number): Labels {
  if (classes <= 256) return new Uint8Array(n);
  if (classes <= 65_536) return new Uint16Array(n);
  return new Int32Array(n);
}

/** A labelled set of equal-length sequences, [N, T, channels], stored compactly. */
export interface Dataset {
  readonly size: number;
  readonly length: number;
  readonly channels: number;
  readonly classes: number;
  readonly labels: Labels;
  /** Write examples `indices` as [indices.length, T, channels] into `out`. */
  fill(indices: readonly number[], out: Float64Array): void;
}

/** A dataset over a flat array with an affine map value·scale + shift per entry. */
export class ArrayDataset implements Dataset {
  readonly size: number;

  constructor(
    private readonly values: Uint8Array | Float32Array,
    readonly labels: Labels,
    readonly length: number,
    readonly channels: number,
    readonly classes: number,
    private readonly scale = 1,
    private readonly shift = 0,
  ) {
    this.size = labels.length;
    if (values.length !== this.size * length * channels) {
      throw new Error(`ArrayDataset: ${values.length} values for ${this.size} × ${length} × ${channels}`);
    }
    for (let i = 0; i < labels.length; i++)
      if (!(labels[i]! < classes))
        throw new Error(`ArrayDataset: label ${labels[i]} of example ${i} is not below ${classes} classes`);
  }

  fill(indices: readonly number[], out: Float64Array): void {
    const per = this.length * this.channels;
    indices.forEach((idx, r) => {
      const base = idx * per;
      for (let i = 0; i < per; i++) out[r * per + i] = this.values[base + i]! * this.scale + this.shift;
    });
  }

  /** The first `n` examples (or all). */
  limit(n: number | undefined): ArrayDataset {
    if (n === undefined || n >= this.size) return this;
    const per = this.length * this.channels;
    return new ArrayDataset(
      this.values.subarray(0, n * per),
      this.labels.subarray(0, n),
      this.length,
      this.channels,
      this.classes,
      this.scale,
      this.shift,
    );
  }

  /** Examples at the given indices, as a new dataset (copies). */
  pick(indices: readonly number[]): ArrayDataset {
    const per = this.length * this.channels;
    const values = new (this.values.constructor as Uint8ArrayConstructor | Float32ArrayConstructor)(
      indices.length * per,
    );
    const labels = labelArray(indices.length, this.classes);
    indices.forEach((idx, r) => {
      values.set(this.values.subarray(idx * per, (idx + 1) * per), r * per);
      labels[r] = this.labels[idx]!;
    });
    return new ArrayDataset(values, labels, this.length, this.channels, this.classes, this.scale, this.shift);
  }
}
