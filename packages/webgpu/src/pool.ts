/**
 * Storage buffers kept by size class. Every command is submitted when it is recorded, so a
 * released buffer's earlier uses are already in the queue and the next user is ordered after them.
 */
export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly sizes = new WeakMap<GPUBuffer, number>();
  private pooledBytes = 0;

  constructor(
    private readonly allocate: (bytes: number) => GPUBuffer,
    private readonly maxBindingBytes: number,
    private readonly maxPooledBytes = 512 * 2 ** 20,
  ) {}

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
    const list = this.free.get(size);
    const hit = list?.pop();
    if (hit) {
      this.pooledBytes -= size;
      return hit;
    }
    const buf = this.allocate(size);
    this.sizes.set(buf, size);
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined || this.pooledBytes + size > this.maxPooledBytes) {
      buf.destroy();
      return;
    }
    let list = this.free.get(size);
    if (!list) {
      list = [];
      this.free.set(size, list);
    }
    list.push(buf);
    this.pooledBytes += size;
  }

  clear(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.pooledBytes = 0;
  }
}
