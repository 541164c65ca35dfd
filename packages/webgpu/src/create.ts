import { BackendUnavailableError, checkOptionNames, DTypeError, flag, numberOption, UnsupportedOptionError } from '@deerjs/core';
import { WebGpuBackend } from './backend.js';
import { GpuContext } from './context.js';

export interface WebGpuBackendOptions {
  /** 'float32', the only dtype (accepted so that `{ dtype }` can be given to any backend); float64 is a DTypeError. */
  readonly dtype?: 'float32';
  /** Adapter choice: 'high-performance' (discrete GPU) or 'low-power'. */
  readonly powerPreference?: GPUPowerPreference;
  /**
   * Report a smaller largest buffer than the device allows (bytes), so core splits long sequences
   * into windows sooner. Never raises the device's limit.
   */
  readonly maxBufferBytes?: number;
  /**
   * About how many invocations the device runs at once (default 65536, or one workgroup of 64 per
   * host core on a software adapter such as llvmpipe, which runs a workgroup on one core). The
   * scan splits time into more chunks the more lanes are idle. By default the chunked scan's cost
   * model counts a software adapter's SIMD lanes instead (8 per core: its serial passes are bound
   * by arithmetic); a stated value it takes as given.
   */
  readonly scanLanes?: number;
  /**
   * For tests: act as a device whose storage-binding limit is this many bytes (never raises the
   * real one). Unlike `maxBufferBytes`, buffers past it are refused with OutOfMemoryError.
   */
  readonly simulatedBindingBytes?: number;
  /**
   * Measure device time with timestamp queries (every compute pass writes two timestamps; each
   * submission's span from its first pass's start to its last pass's end is summed), read with
   * `backend.deviceTimeMs()`. Only where the adapter offers 'timestamp-query'; default off.
   */
  readonly timestamps?: boolean;
  /**
   * Sequential evaluation's kernel: 'row' (one invocation walks a batch row, doing each step's
   * work alone), 'workgroup' (a workgroup per row shares each step's work, its values in
   * workgroup memory; falls back to 'row' where they do not fit) or 'auto' (default: 'workgroup'
   * on a GPU for states of 9 or more, whose n² work per step leaves one lane far behind (H200:
   * one lane per row was 1.3× faster at nh = 8, 12× slower at nh = 16);
   * 'row' on a software adapter, where a barrier costs as much as the work it saves).
   */
  readonly sequentialKernel?: 'row' | 'workgroup' | 'auto';
  /**
   * The diagonal scan's kernels: 'tiled' (reduce-then-scan over tiles of 256 consecutive elements,
   * coalesced: for GPUs, states up to 8), 'chunked' (one invocation per chunk of time: the general
   * scan, always), or 'auto' (default: 'tiled' on a GPU where it applies; where the chains fill
   * the lanes, one vectorised serial pass per chain; else 'chunked').
   */
  readonly scanKernel?: 'tiled' | 'chunked' | 'auto';
  /**
   * The serial passes (chunk boundaries and fix-up) of the scan over dense Jacobian blocks
   * (s ≥ 2): 'invocation' (one invocation per block, s² multiply-adds a step alone), 'workgroup'
   * (a workgroup per chain, a lane per state entry: s multiply-adds and two barriers a step; falls
   * back to 'invocation' for states over 1024) or 'auto' (default: 'workgroup' on a GPU for blocks
   * of 8 or more; on a software adapter only for blocks of 32 or more whose chains leave its SIMD
   * lanes idle — llvmpipe, T = 4000: 2.5× faster at n = 32 and 64 with B = 1, up to 4× slower for
   * n ≤ 16 or B ≥ 4, where barriers cost more than the work they share).
   */
  readonly denseScanKernel?: 'invocation' | 'workgroup' | 'auto';
  /**
   * A Newton iteration's fixed cost — submission and the read's round trip — in the cost model's
   * units (one multiply-add of sequential evaluation on one lane; `capabilities.iterationOverhead`).
   * It prices 'auto''s choice and how many Newton steps run unread between convergence checks.
   * Default: 2·10⁵ on a GPU (measured on an H200), none on a software adapter (the model's default,
   * and every step measured).
   */
  readonly iterationOverhead?: number;
}

export const OPTION_NAMES = [
  'dtype',
  'powerPreference',
  'maxBufferBytes',
  'scanLanes',
  'simulatedBindingBytes',
  'timestamps',
  'sequentialKernel',
  'scanKernel',
  'denseScanKernel',
  'iterationOverhead',
];

function oneOf(name: string, v: unknown, allowed: readonly string[]): void {
  if (v !== undefined && !allowed.includes(v as string))
    throw new UnsupportedOptionError(name, v, allowed.map((a) => `'${a}'`).join(', '));
}

/** Every option checked before an adapter is asked for (no device to release on a bad one). */
function checkOptions(options: WebGpuBackendOptions): void {
  checkOptionNames(options, OPTION_NAMES, 'createWebGpuBackend');
  if (options.dtype !== undefined && options.dtype !== 'float32')
    throw new DTypeError('dtype', 'float32 (WGSL has no f64)', String(options.dtype));
  oneOf('powerPreference', options.powerPreference, ['high-performance', 'low-power']);
  numberOption('maxBufferBytes', options.maxBufferBytes, 0, 'positive');
  numberOption('simulatedBindingBytes', options.simulatedBindingBytes, 0, 'positive');
  numberOption('scanLanes', options.scanLanes, 0, 'integer');
  flag('timestamps', options.timestamps, false);
  oneOf('sequentialKernel', options.sequentialKernel, ['row', 'workgroup', 'auto']);
  oneOf('scanKernel', options.scanKernel, ['tiled', 'chunked', 'auto']);
  oneOf('denseScanKernel', options.denseScanKernel, ['invocation', 'workgroup', 'auto']);
  numberOption('iterationOverhead', options.iterationOverhead, 0, 'nonneg');
}

/** Limits the backend asks for, each up to what the adapter offers. */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
] as const;

function describeAdapter(adapter: GPUAdapter): string {
  const info = adapter.info;
  const parts = [info?.description, info?.vendor, info?.architecture, info?.device].filter(
    (s): s is string => !!s,
  );
  return parts.length > 0 ? [...new Set(parts)].join(' ') : 'unknown WebGPU adapter';
}

/**
 * Request an adapter and device from `gpu` and wrap them in a backend; `hostCores` sizes the work
 * of a software adapter.
 */
export async function createOn(
  gpu: GPU,
  options: WebGpuBackendOptions,
  hostCores: number,
  keepAlive?: unknown,
): Promise<WebGpuBackend> {
  checkOptions(options);
  const adapter = await gpu.requestAdapter(
    options.powerPreference ? { powerPreference: options.powerPreference } : {},
  );
  if (!adapter)
    throw new BackendUnavailableError('webgpu', [
      { name: 'webgpu', reason: 'no GPU adapter is available (requestAdapter() returned null)' },
    ]);
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) {
    const v = adapter.limits[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const timing = options.timestamps === true && adapter.features.has('timestamp-query');
  const device = await adapter.requestDevice({
    requiredLimits,
    ...(timing ? { requiredFeatures: ['timestamp-query' as GPUFeatureName] } : {}),
  });
  const binding = Math.min(
    device.limits.maxStorageBufferBindingSize,
    device.limits.maxBufferSize,
    options.simulatedBindingBytes ?? Number.POSITIVE_INFINITY,
  );
  const requested = options.maxBufferBytes;
  const maxBufferBytes = Math.min(binding, requested ?? binding);
  const description = describeAdapter(adapter);
  const software =
    adapter.info?.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|software/i.test(description);
  const cores = Math.max(1, hostCores);
  const lanes = options.scanLanes ?? (software ? 64 * cores : 65536);
  // A software adapter computes 8 floats at once per core (256-bit SIMD); a GPU, whatever the
  // scan is told it has.
  const parallelism = software ? 8 * cores : lanes;
  const seq = options.sequentialKernel ?? 'auto';
  const scanKernel = options.scanKernel ?? 'auto';
  const denseScan = options.denseScanKernel ?? 'auto';
  const overhead = options.iterationOverhead;
  const ctx = new GpuContext(device, binding, timing);
  return new WebGpuBackend(
    ctx,
    {
      device: description,
      maxBufferBytes,
      scanLanes: lanes,
      chunkLanes: options.scanLanes ?? Math.min(lanes, parallelism),
      parallelism,
      sequentialKernel: seq,
      scanKernel,
      denseScanKernel: denseScan,
      software,
      ...(overhead !== undefined ? { iterationOverhead: overhead } : {}),
      sharedFloats: Math.floor(device.limits.maxComputeWorkgroupStorageSize / 4),
    },
    keepAlive,
  );
}
