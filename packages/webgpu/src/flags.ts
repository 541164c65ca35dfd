// WebGPU's numeric flag values (spec constants). Dawn in Node does not put GPUBufferUsage and
// GPUMapMode on globalThis, so the backend uses these instead of the globals.
export const USAGE = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;

export const MAP_READ = 0x1;

/** Usage of every tensor and scratch buffer (uniform too: packed parameters may bind as one). */
export const STORAGE_USAGE = USAGE.STORAGE | USAGE.UNIFORM | USAGE.COPY_SRC | USAGE.COPY_DST;
