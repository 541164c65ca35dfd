/** Peaks of process memory while a point runs. */
export interface MemoryPeaks {
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** ArrayBuffers outside the JS heap: where the cpu backend's typed arrays live. */
  readonly arrayBuffersBytes: number;
  /** Whatever the backend reports about its own buffers, when it reports anything. */
  readonly backendBytes: number | undefined;
}

/**
 * Samples process.memoryUsage() on a timer and whenever `sample()` is called (the DEER runner calls
 * it after every Newton iteration: a synchronous backend never lets the timer fire mid-solve).
 */
export class MemorySampler {
  private rss = 0;
  private heap = 0;
  private buffers = 0;
  private backend: number | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly backendBytes: () => number | undefined = () => undefined) {}

  start(intervalMs = 25): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
    return this;
  }

  sample(): void {
    const m = process.memoryUsage();
    this.rss = Math.max(this.rss, m.rss);
    this.heap = Math.max(this.heap, m.heapUsed);
    this.buffers = Math.max(this.buffers, m.arrayBuffers);
    const b = this.backendBytes();
    if (b !== undefined) this.backend = Math.max(this.backend ?? 0, b);
  }

  stop(): MemoryPeaks {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    return {
      rssBytes: this.rss,
      heapUsedBytes: this.heap,
      arrayBuffersBytes: this.buffers,
      backendBytes: this.backend,
    };
  }
}
