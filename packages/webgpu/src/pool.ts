/**
 * Storage buffers kept by size class. Commands are recorded into one pending encoder and the
 * queue runs them in recording order, so a buffer released while pending commands still use it
 * can be handed out again at once: its next user's commands are recorded after them. (A
 * `queue.writeBuffer` is not recorded; `GpuContext.write` handles that case.)
 *
 * What the pool holds, in use and free together, stays within the most that was ever in use at
 * once (and at least `minPooledBytes`): an iteration's working set is kept whole, so nothing is
 * recreated from one Newton iteration to the next, while a later, smaller solve does not pin a
 * larger one's buffers of other sizes (they are evicted when a new size must be allocated).
 */
export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly sizes = new WeakMap<GPUBuffer, number>();
  private pooled = 0;
  private live = 0;
  private peak = 0;

  constructor(
    private readonly allocate: (bytes: number) => GPUBuffer,
    private readonly maxBindingBytes: number,
    /** Frees a buffer the pool drops (the context defers it past pending commands). */
    private readonly discard: (buf: GPUBuffer) => void = (b) => b.destroy(),
    private readonly minPooledBytes = 512 * 2 ** 20,
  ) {}

  /** Bytes the pool may hold in free buffers plus buffers in use. */
  private get cap(): number {
    return Math.max(this.minPooledBytes, this.peak);
  }

  /** Bytes of buffers handed out and not yet released. */
  get liveBytes(): number {
    return this.live;
  }

  /** Bytes of free buffers kept for reuse. */
  get pooledBytes(): number {
    return this.pooled;
  }

  /** Bytes rounded up to a size class (≤ 12.5% waste), never past the binding limit. */
  sizeClass(bytes: number): number {
    const b = Math.max(16, bytes);
    let rounded: number;
    if (b <= 4096) rounded = Math.ceil(b / 256) * 256;
    else {
      const step = 2 ** (Math.floor(Math.log2(b)) - 3);
      rounded = Math.ceil(b / step) * step;
    }
    // Near the binding limit, exact size (a multiple of 4) rather than an unbindable size class.
    return rounded > this.maxBindingBytes && b <= this.maxBindingBytes ? Math.ceil(b / 4) * 4 : rounded;
  }

  acquire(bytes: number): GPUBuffer {
    const size = this.sizeClass(bytes);
    const hit = this.free.get(size)?.pop();
    if (hit) {
      this.pooled -= size;
      this.use(size);
      return hit;
    }
    // Free buffers of other sizes go first when keeping them would pass the cap.
    this.evict(this.live + size + this.pooled - Math.max(this.minPooledBytes, this.peak, this.live + size));
    const buf = this.allocate(size);
    this.sizes.set(buf, size);
    this.use(size);
    return buf;
  }

  private use(size: number): void {
    this.live += size;
    if (this.live > this.peak) this.peak = this.live;
  }

  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) {
      this.discard(buf);
      return;
    }
    this.live -= size;
    if (this.pooled + this.live + size > this.cap) {
      this.sizes.delete(buf);
      this.discard(buf);
      return;
    }
    let list = this.free.get(size);
    if (!list) {
      list = [];
      this.free.set(size, list);
    }
    list.push(buf);
    this.pooled += size;
  }

  /** Drop free buffers, largest first, until `bytes` are gone (or none is left). */
  private evict(bytes: number): void {
    if (bytes <= 0) return;
    const sizes = [...this.free.keys()].sort((a, b) => b - a);
    for (const size of sizes) {
      const list = this.free.get(size)!;
      while (list.length > 0 && bytes > 0) {
        const b = list.pop()!;
        this.sizes.delete(b);
        this.discard(b);
        this.pooled -= size;
        bytes -= size;
      }
      if (list.length === 0) this.free.delete(size);
      if (bytes <= 0) return;
    }
  }

  clear(): void {
    for (const list of this.free.values()) for (const b of list) this.discard(b);
    this.free.clear();
    this.pooled = 0;
  }
}
