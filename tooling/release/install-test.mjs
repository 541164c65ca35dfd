#!/usr/bin/env node
// Install tests: pack the @deerjs packages, install only the ones a user needs into throwaway
// projects outside the workspace with plain npm, and solve there.
//   node tooling/release/install-test.mjs [--keep] [--strict] [--only core,cpu,webgpu,tfjs]
// --strict (default under CI=true): a part that could not run counts as a failure.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { installedDeerPackages, makeProject, runFixture } from './lib/project.mjs';
import { Tally } from './lib/tally.mjs';
import { missingBuild, packPackage } from './lib/tarball.mjs';
import { publicPackages } from './lib/workspace.mjs';

const { values } = parseArgs({
  options: {
    keep: { type: 'boolean', default: false },
    strict: { type: 'boolean', default: process.env.CI === 'true' },
    only: { type: 'string', default: 'core,cpu,webgpu,tfjs' },
  },
});
const parts = new Set(values.only.split(','));
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const SOLVE = join(FIXTURES, 'solve.mjs');
const EXPECT_MISSING = join(FIXTURES, 'expect-missing.mjs');
/** float64 DEER equals sequential to rounding; float32 backends get the conformance tolerance. */
const TOLERANCE = { float64: 1e-9, float32: 1e-5 };

const tally = new Tally();
const work = mkdtempSync(join(tmpdir(), 'deerjs-install-test-'));
const tarDir = join(work, 'tarballs');
mkdirSync(tarDir);
console.log(`install tests in ${work}`);

const packages = publicPackages();
/** @type {Map<string, string>} package name → tarball, for the packages that packed */
const tarballs = new Map();
/** @type {Map<string, string>} package name → why it cannot be tested */
const unavailable = new Map();
for (const name of ['@deerjs/core', '@deerjs/cpu', '@deerjs/webgpu', '@deerjs/tfjs']) {
  const pkg = packages.get(name);
  const why = pkg ? missingBuild(pkg) : `${name} is not in packages/`;
  if (why) {
    unavailable.set(name, why);
    continue;
  }
  try {
    tarballs.set(name, (await packPackage(pkg, tarDir)).file);
  } catch (err) {
    unavailable.set(name, `packing failed: ${err instanceof Error ? err.message : err}`);
  }
}

/** Tarballs for `names`, or the reason one of them is unavailable. */
function need(names) {
  for (const n of names) if (!tarballs.has(n)) return { reason: unavailable.get(n) ?? `${n} did not pack` };
  return { files: names.map((n) => /** @type {string} */ (tarballs.get(n))) };
}

/** Build a project, or record every check of the part as not run / failed. */
async function project(part, names, registry, checkNames) {
  const { files, reason } = need(names);
  if (!files) {
    for (const c of checkNames) tally.skip(c, reason);
    return null;
  }
  const dir = join(work, part);
  try {
    await makeProject(dir, { tarballs: files, registry, fixtures: [SOLVE, EXPECT_MISSING] });
  } catch (err) {
    for (const c of checkNames)
      tally.fail(c, `npm install failed: ${err instanceof Error ? err.message : err}`);
    return null;
  }
  const installed = installedDeerPackages(dir);
  const expected = [...names].sort();
  if (installed.join() !== expected.join()) {
    tally.fail(
      `${part}: installs only what was asked`,
      `expected ${expected.join(', ')}, found ${installed.join(', ')}`,
    );
  } else {
    tally.pass(`${part}: installs only what was asked`, installed.join(' + '));
  }
  return dir;
}

/** Check one solve result: it ran, DEER matched sequential, nothing leaked; returns it. */
function checkSolve(r, expectBackend) {
  if (!r.ok) throw new Error(r.error);
  if (r.backend !== expectBackend) throw new Error(`expected backend '${expectBackend}', got '${r.backend}'`);
  const tol = TOLERANCE[r.dtype];
  if (!(r.maxDiff < tol)) throw new Error(`max |DEER − sequential| = ${r.maxDiff} ≥ ${tol} (${r.dtype})`);
  if (!r.converged || r.fellBack)
    throw new Error(`did not converge (iterations ${r.iterations}, fellBack ${r.fellBack})`);
  if (r.leaked !== 0) throw new Error(`${r.leaked} tensors still live after disposing all`);
  return r;
}

const describe = (r) =>
  `${r.backend}${r.device ? ` on ${r.device}` : ''}, ${r.dtype}, ${r.iterations} iterations, max |DEER − sequential| = ${r.maxDiff.toExponential(2)}`;

/** float64 CPU solution of the same problem: the oracle for the float32 backends. */
let oracle = null;
function checkOracle(r) {
  if (!oracle) return ' (no float64 oracle: the cpu part did not run)';
  let d = 0;
  for (let i = 0; i < r.y.length; i++) d = Math.max(d, Math.abs(r.y[i] - oracle[i]));
  if (!(d < TOLERANCE[r.dtype])) throw new Error(`max |y − float64 oracle| = ${d} ≥ ${TOLERANCE[r.dtype]}`);
  return `, max |y − float64 cpu oracle| = ${d.toExponential(2)}`;
}

if (parts.has('core')) {
  const checks = [
    "core alone: loadBackend('webgpu') names @deerjs/webgpu",
    'core alone: loadBackend() lists every backend package',
  ];
  const dir = await project('core-alone', ['@deerjs/core'], [], checks);
  if (dir) {
    await tally.check(checks[0], async () => {
      const r = await runFixture(dir, 'expect-missing.mjs', ['webgpu']);
      if (!r.ok) throw new Error(r.error);
      if (!r.typed) throw new Error(`expected a BackendUnavailableError, got ${r.name}: ${r.message}`);
      if (!r.message.includes('npm install @deerjs/webgpu'))
        throw new Error(`message does not name the package:\n${r.message}`);
      return JSON.stringify(r.message);
    });
    await tally.check(checks[1], async () => {
      const r = await runFixture(dir, 'expect-missing.mjs', []);
      if (!r.ok) throw new Error(r.error);
      const missing = ['webgpu', 'tfjs', 'cpu'].filter(
        (b) => !r.message.includes(`npm install @deerjs/${b}`),
      );
      if (missing.length > 0)
        throw new Error(`message does not name @deerjs/${missing.join(', @deerjs/')}:\n${r.message}`);
      return 'names @deerjs/webgpu, @deerjs/tfjs and @deerjs/cpu';
    });
  }
}

if (parts.has('cpu')) {
  const checks = [
    'core + cpu: register() then loadBackend(cpu), float64',
    'core + cpu: loadBackend(cpu) finds the package without register()',
    'core + cpu: loadBackend() picks cpu',
  ];
  const dir = await project('core-cpu', ['@deerjs/core', '@deerjs/cpu'], [], checks);
  if (dir) {
    const float64 = JSON.stringify({ dtype: 'float64' });
    await tally.check(checks[0], async () => {
      const r = checkSolve(
        await runFixture(dir, 'solve.mjs', ['cpu', '--register', '--options', float64]),
        'cpu',
      );
      if (r.dtype !== 'float64') throw new Error(`asked for float64, got ${r.dtype}`);
      oracle = r.y;
      return describe(r);
    });
    await tally.check(checks[1], async () => {
      const r = checkSolve(await runFixture(dir, 'solve.mjs', ['cpu', '--options', float64]), 'cpu');
      if (r.registeredBefore.length !== 0)
        throw new Error(`expected nothing registered before, found ${r.registeredBefore}`);
      return describe(r);
    });
    await tally.check(checks[2], async () =>
      describe(checkSolve(await runFixture(dir, 'solve.mjs', ['--auto']), 'cpu')),
    );
  }
}

if (parts.has('webgpu')) {
  const check = 'core + webgpu: loadBackend(webgpu), float32 on Dawn';
  const dir = await project('core-webgpu', ['@deerjs/core', '@deerjs/webgpu'], [], [check]);
  if (dir) {
    const r = await runFixture(dir, 'solve.mjs', ['webgpu']).catch((err) => ({
      ok: false,
      error: String(err.message),
    }));
    if (!r.ok && /no GPU adapter/i.test(r.error)) {
      tally.skip(
        check,
        `no WebGPU adapter (install a Vulkan driver, e.g. bash tooling/scripts/install-software-vulkan.sh): ${r.error}`,
      );
    } else {
      await tally.check(check, async () => describe(checkSolve(r, 'webgpu')) + checkOracle(r));
    }
  }
}

if (parts.has('tfjs')) {
  const check = 'core + tfjs: loadBackend(tfjs) on @tensorflow/tfjs-backend-cpu';
  const dev = packages.get('@deerjs/tfjs')?.manifest.devDependencies ?? {};
  const registry = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu'].map(
    (d) => `${d}@${dev[d] ?? '4.22.0'}`,
  );
  const dir = await project('core-tfjs', ['@deerjs/core', '@deerjs/tfjs'], registry, [check]);
  if (dir) {
    await tally.check(check, async () => {
      const args = [
        'tfjs',
        '--preload',
        '@tensorflow/tfjs-backend-cpu',
        '--options',
        JSON.stringify({ backend: 'cpu' }),
      ];
      const r = checkSolve(await runFixture(dir, 'solve.mjs', args), 'tfjs');
      return `${describe(r)}${checkOracle(r)} (${registry.join(', ')})`;
    });
  }
}

if (values.keep) console.log(`kept ${work}`);
else rmSync(work, { recursive: true, force: true });
process.exitCode = tally.finish(values.strict);
