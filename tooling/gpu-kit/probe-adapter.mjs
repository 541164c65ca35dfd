// Prints which WebGPU adapter Dawn finds, the way @deerjs/webgpu asks for one (requestAdapter({})),
// and which Node binary and Vulkan loader this process uses. Copied into the kit by build.sh and
// run by run.sh before the bench, with the kit's own Node.
//
//   node probe-adapter.mjs [--json FILE]
//
// Exit status: 0 an adapter was found, 3 none (requestAdapter() returned null or timed out),
// 4 Dawn itself could not be loaded.
import { readFileSync, writeFileSync } from 'node:fs';

const args = process.argv.slice(2);
const jsonAt = args.indexOf('--json');
const jsonFile = jsonAt >= 0 ? args[jsonAt + 1] : undefined;
if (jsonAt >= 0 && !jsonFile) {
  process.stderr.write('probe-adapter: --json needs a file\n');
  process.exit(2);
}

/** Shared libraries this process has mapped whose path matches `re` (from /proc/self/maps). */
function mapped(re) {
  try {
    const paths = readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .map((l) => l.slice(l.indexOf('/')))
      .filter((p) => p.startsWith('/') && re.test(p));
    return [...new Set(paths)];
  } catch {
    return [];
  }
}

const result = {
  node: { execPath: process.execPath, version: process.version },
  env: {
    LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH ?? null,
    VK_DRIVER_FILES: process.env.VK_DRIVER_FILES ?? null,
  },
  adapter: null,
  vulkanLoader: [],
  vulkanDrivers: [],
};

function finish(code, message) {
  result.vulkanLoader = mapped(/libvulkan\.so/);
  result.vulkanDrivers = mapped(/libGLX_nvidia|libnvidia-|libvulkan_|lvp|swiftshader/i);
  if (message) result.error = message;
  const text = JSON.stringify(result, null, 2);
  process.stdout.write(`${text}\n`);
  if (jsonFile) writeFileSync(jsonFile, `${text}\n`);
  // Dawn keeps handles alive; exit explicitly rather than wait for the event loop to drain.
  process.exit(code);
}

let webgpu;
try {
  webgpu = await import('webgpu');
} catch (err) {
  finish(4, `cannot load Dawn (the webgpu package): ${err instanceof Error ? err.message : String(err)}`);
}

const gpu = webgpu.create([]);
const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), 60_000));
const adapter = await Promise.race([gpu.requestAdapter({}), timeout]);
if (adapter === 'timeout') finish(3, 'requestAdapter() did not answer within 60 s');
if (!adapter) finish(3, 'no WebGPU adapter: requestAdapter() returned null');

const info = adapter.info ?? {};
const limits = {};
for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupsPerDimension']) {
  if (typeof adapter.limits?.[k] === 'number') limits[k] = adapter.limits[k];
}
result.adapter = {
  vendor: info.vendor ?? '',
  architecture: info.architecture ?? '',
  device: info.device ?? '',
  description: info.description ?? '',
  isFallbackAdapter: info.isFallbackAdapter ?? null,
  features: [...(adapter.features ?? [])].sort(),
  limits,
};
finish(0);
