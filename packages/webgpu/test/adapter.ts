/**
 * Whether a WebGPU adapter exists here. Without one a GPU test may only be skipped off CI: under
 * CI=true the tests run anyway and fail, so a runner that lost its GPU does not pass silently.
 */
export async function adapterUnavailableReason(): Promise<string | null> {
  try {
    const { create } = await import('webgpu');
    const adapter = await create([]).requestAdapter();
    return adapter ? null : 'requestAdapter() returned null (no GPU and no software Vulkan driver)';
  } catch (err) {
    return `the webgpu addon did not load: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** null: run the GPU tests; a string: skip them with that reason (never under CI). */
export async function skipReason(): Promise<string | null> {
  const reason = await adapterUnavailableReason();
  if (reason === null || process.env.CI === 'true') return null;
  console.log(`[webgpu tests] skipped: ${reason}`);
  return reason;
}
