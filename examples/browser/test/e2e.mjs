#!/usr/bin/env node
// End-to-end: build the example against the packed @deerjs tarballs in a self-contained copy
// outside the workspace, serve it on 127.0.0.1, open it in headless Chromium with Playwright, and
// check the numbers the page shows against a float64 oracle computed in Node with @deerjs/cpu.
//   node examples/browser/test/e2e.mjs [--chromium /usr/bin/chromium] [--keep] [--strict]
// Screenshots go to out/browser-e2e/ at the repository root.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { makeProject } from '../../../tooling/release/lib/project.mjs';
import { runOk } from '../../../tooling/release/lib/run.mjs';
import { Tally } from '../../../tooling/release/lib/tally.mjs';
import { missingBuild, packPackage } from '../../../tooling/release/lib/tarball.mjs';
import { publicPackages, ROOT } from '../../../tooling/release/lib/workspace.mjs';
import { serveStatic } from './serve.mjs';

const { values } = parseArgs({
  options: {
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    keep: { type: 'boolean', default: false },
    strict: { type: 'boolean', default: process.env.CI === 'true' },
  },
});
const EXAMPLE = dirname(dirname(fileURLToPath(import.meta.url)));
const SHOTS = join(ROOT, 'out', 'browser-e2e');
const BASE_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const RUNS = [
  { name: 'gpu disabled', args: [...BASE_ARGS, '--disable-gpu'], query: '?backend=auto' },
  {
    name: 'WebGPU flags',
    args: [...BASE_ARGS, '--enable-unsafe-webgpu', '--enable-features=Vulkan'],
    query: '?backend=auto',
  },
];

const tally = new Tally();
const exit = (code) => {
  process.exitCode = code;
};

const prerequisites = [
  !existsSync(values.chromium) && `no Chromium at ${values.chromium} (apt-get install -y chromium)`,
  ...['@deerjs/core', '@deerjs/cpu', '@deerjs/webgpu'].map((n) => {
    const pkg = publicPackages().get(n);
    return pkg ? missingBuild(pkg) : `${n} is not in packages/`;
  }),
].filter(Boolean);
if (prerequisites.length > 0) {
  tally.skip('browser example end to end', prerequisites.join('; '));
  exit(tally.finish(values.strict));
} else {
  await main();
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'deerjs-browser-e2e-'));
  console.log(`staging the example in ${work}`);
  let server = null;
  let browser = null;
  try {
    const stage = await stageExample(work);
    const vite = join(stage, 'node_modules/vite/bin/vite.js');
    await tally.check('example typechecks against the packed declarations', async () => {
      await runOk(process.execPath, [join(stage, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
        cwd: stage,
      });
    });
    await runOk(process.execPath, [vite, 'build', '--logLevel', 'warn'], { cwd: stage });
    await runOk(
      process.execPath,
      [vite, 'build', '--ssr', 'test/oracle.ts', '--outDir', 'dist-oracle', '--logLevel', 'warn'],
      { cwd: stage },
    );
    const oracle = JSON.parse(
      (await runOk(process.execPath, ['dist-oracle/oracle.js'], { cwd: stage })).stdout,
    );
    console.log(
      `oracle (Node, @deerjs/cpu float64): ${oracle.iterations} iterations, max |DEER − sequential| = ${oracle.maxDiff.toExponential(3)}`,
    );

    server = await serveStatic(join(stage, 'dist'));
    const { chromium } = await import(
      pathToFileURL(join(stage, 'node_modules/playwright-core/index.mjs')).href
    );
    mkdirSync(SHOTS, { recursive: true });
    for (const run of RUNS) {
      browser = await chromium.launch({ executablePath: values.chromium, headless: true, args: run.args });
      try {
        await tally.check(`page (${run.name}) matches the float64 oracle`, () =>
          checkPage(browser, `${server.url}/${run.query}`, run, oracle),
        );
      } finally {
        await browser.close();
        browser = null;
      }
    }
  } catch (err) {
    tally.fail('browser example end to end', err instanceof Error ? err.message : String(err));
  } finally {
    await browser?.close();
    await server?.close();
    if (values.keep) console.log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  exit(tally.finish(values.strict));
}

/** Copy the example out of the workspace and install it from the packed tarballs with npm. */
async function stageExample(work) {
  const tarDir = join(work, 'tarballs');
  mkdirSync(tarDir);
  const packages = publicPackages();
  const manifest = JSON.parse(readFileSync(join(EXAMPLE, 'package.json'), 'utf8'));
  const tarballs = [];
  for (const name of Object.keys(manifest.dependencies))
    tarballs.push((await packPackage(packages.get(name), tarDir)).file);
  const stage = join(work, 'example');
  for (const f of ['index.html', 'vite.config.ts', 'tsconfig.json', 'src', 'test/oracle.ts']) {
    cpSync(join(EXAMPLE, f), join(stage, f), { recursive: true });
  }
  const registry = Object.entries(manifest.devDependencies).map(([n, v]) => `${n}@${v}`);
  await makeProject(stage, { tarballs, registry });
  return stage;
}

async function checkPage(browser, url, run, oracle) {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 240_000 });
  const shot = join(SHOTS, `${run.name.replace(/\W+/g, '-').toLowerCase()}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  const status = await page.textContent('#status');
  if ((await page.getAttribute('#status', 'data-state')) !== 'done') {
    throw new Error(`the page says: ${status}\nconsole:\n${consoleLines.join('\n')}`);
  }
  /** @type {Record<string, string>} */
  const shown = await page.$$eval('td[data-key]', (tds) =>
    Object.fromEntries(tds.map((td) => [td.dataset.key, td.textContent ?? ''])),
  );
  const full = await page.evaluate(() => window.deerjsResult);
  await page.close();

  const problems = compare(shown, full, oracle);
  const summary =
    `${shown.backend} ran (${shown.reason}; device: ${shown.device}), ${shown.dtype}, ${shown.iterations} iterations, ` +
    `max |DEER − sequential| = ${shown.maxDiff}, DEER ${shown.deerMs} ms, sequential ${shown.sequentialMs} ms, ` +
    `max |y − oracle| = ${maxAbsDiff(full.y, oracle.y).toExponential(2)}; screenshot ${shot}`;
  if (problems.length > 0) throw new Error(`${summary}\n${problems.join('\n')}`);
  return summary;
}

function maxAbsDiff(a, b) {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/**
 * The shown numbers against the oracle. float64 (cpu): the same algorithm in the same precision,
 * so iterations match and values agree to a few ulps (Math.tanh/exp may differ in the last bit
 * between V8 versions; max |DEER − sequential| itself is rounding noise, so only its size is
 * checked). float32 (WebGPU): within the conformance tolerance.
 */
function compare(shown, full, oracle) {
  const problems = [];
  const expect = (ok, what) => ok || problems.push(what);
  expect(shown.backend === full.backend, `shown backend ${shown.backend} ≠ ${full.backend}`);
  expect(shown.converged === 'yes', `not converged: ${shown.converged}`);
  expect(
    shown.maxDiff === full.maxDiff.toExponential(3),
    `shown max diff ${shown.maxDiff} ≠ page's ${full.maxDiff}`,
  );
  const finalShown = shown.finalState.split(',').map(Number);
  const float64 = shown.dtype === 'float64';
  // float64: the shown final state is rounded to 9 decimals, so it agrees to half a unit there.
  const tol = float64 ? { diff: 1e-9, y: 1e-12, shown: 5e-10 + 1e-12 } : { diff: 1e-5, y: 1e-5, shown: 1e-5 };
  if (float64)
    expect(
      shown.iterations === String(oracle.iterations),
      `iterations ${shown.iterations} ≠ oracle's ${oracle.iterations}`,
    );
  expect(Number(shown.maxDiff) < tol.diff, `max |DEER − sequential| ${shown.maxDiff} ≥ ${tol.diff}`);
  expect(oracle.maxDiff < 1e-9, `the oracle's own max |DEER − sequential| is ${oracle.maxDiff}`);
  const d = maxAbsDiff(full.y, oracle.y);
  expect(d <= tol.y, `max |y − oracle| = ${d} > ${tol.y}`);
  const f = maxAbsDiff(finalShown, oracle.finalState);
  expect(
    f <= tol.shown,
    `shown final state ${shown.finalState} vs oracle ${oracle.finalState.join(', ')} (max diff ${f})`,
  );
  return problems;
}
