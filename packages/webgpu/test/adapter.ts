/**
 * Whether a WebGPU adapter exists here. Without one a GPU test may only be skipped off CI: under
 * CI=true the tests run anyway and fail, so a runner that lost its GPU does not pass silently.
 */
export async function adapterUnavailableReason(): Promise<string | null> {
  try {
    const { create } = await import('webgpu');
    // Bounded: this runs while the file is collected, where no test or hook timeout applies, so a
    // request that never settles would hang the run instead of failing it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), ADAPTER_WAIT_MS);
    });
    const adapter = await Promise.race([create([]).requestAdapter(), late]).finally(() => clearTimeout(timer));
    if (adapter === 'late') return `requestAdapter() did not settle within ${ADAPTER_WAIT_MS / 1000} s`;
    return adapter ? null : 'requestAdapter() returned null (no GPU and no software Vulkan driver)';
  } catch (err) {
    return `the webgpu addon did not load: ${err instanceof Error ? err.message : String(err)}`;
  }
}

const ADAPTER_WAIT_MS = 60_000;

/** null: run the GPU tests; a string: skip them with that reason (never under CI). */
export async function skipReason(): Promise<string | null> {
  const reason = await adapterUnavailableReason();
  if (reason === null || process.env.CI === 'true') return null;
  console.log(`[webgpu tests] skipped: ${reason}`);
  return reason;
}
