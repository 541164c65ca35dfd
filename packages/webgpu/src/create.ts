import { UnsupportedOptionError } from '@deerjs/core';
import { WebGpuBackend } from './backend.js';
import { GpuContext } from './context.js';

export interface WebGpuBackendOptions {
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

function positiveBytes(device: GPUDevice, name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isFinite(v) && v > 0)) {
    device.destroy();
    throw new Error(`webgpu: option ${name}: expected a positive number of bytes, got ${v}`);
  }
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
  const adapter = await gpu.requestAdapter(
    options.powerPreference ? { powerPreference: options.powerPreference } : {},
  );
  if (!adapter) throw new Error('webgpu: no GPU adapter is available (requestAdapter() returned null)');
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
  positiveBytes(device, 'maxBufferBytes', options.maxBufferBytes);
  positiveBytes(device, 'simulatedBindingBytes', options.simulatedBindingBytes);
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
  if (!['row', 'workgroup', 'auto'].includes(seq)) {
    device.destroy();
    throw new UnsupportedOptionError('sequentialKernel', seq, "'row', 'workgroup' or 'auto'");
  }
  const scanKernel = options.scanKernel ?? 'auto';
  if (!['tiled', 'chunked', 'auto'].includes(scanKernel)) {
    device.destroy();
    throw new UnsupportedOptionError('scanKernel', scanKernel, "'tiled', 'chunked' or 'auto'");
  }
  const denseScan = options.denseScanKernel ?? 'auto';
  if (!['invocation', 'workgroup', 'auto'].includes(denseScan)) {
    device.destroy();
    throw new UnsupportedOptionError('denseScanKernel', denseScan, "'invocation', 'workgroup' or 'auto'");
  }
  const overhead = options.iterationOverhead;
  if (overhead !== undefined && !(Number.isFinite(overhead) && overhead >= 0)) {
    device.destroy();
    throw new UnsupportedOptionError('iterationOverhead', String(overhead), 'a finite number ≥ 0');
  }
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
