// Throwaway consumer projects outside the workspace, installed with plain npm.
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { run, runOk } from './run.mjs';

/** Environment for every npm call: no onnxruntime binary download, no audit or funding chatter. */
export const NPM_ENV = {
  ONNXRUNTIME_NODE_INSTALL: 'skip',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
  npm_config_loglevel: 'error',
};

/**
 * A new ESM project in `dir` with the given tarballs and registry packages installed
 * (install scripts off: none of our dependencies needs one).
 * @param {string} dir
 * @param {{ tarballs: string[], registry?: string[], fixtures?: string[] }} spec
 */
export async function makeProject(dir, { tarballs, registry = [], fixtures = [] }) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name: basename(dir).toLowerCase(), private: true, type: 'module' }, null, 2)}\n`,
  );
  await runOk(
    'npm',
    ['install', '--ignore-scripts', '--no-save', '--no-package-lock', ...tarballs, ...registry],
    {
      cwd: dir,
      env: NPM_ENV,
    },
  );
  for (const f of fixtures) copyFileSync(f, join(dir, basename(f)));
  return dir;
}

/** The @deerjs packages present in a project's node_modules. */
export function installedDeerPackages(dir) {
  try {
    return readdirSync(join(dir, 'node_modules', '@deerjs'))
      .map((d) => `@deerjs/${d}`)
      .sort();
  } catch {
    return [];
  }
}

/** Run a fixture script in the project and parse the one JSON line it prints. */
export async function runFixture(dir, script, args = [], timeoutMs = 180_000) {
  const r = await run(process.execPath, [script, ...args], { cwd: dir, timeoutMs });
  const line = r.stdout
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  if (r.code !== 0 || !line) {
    throw new Error(
      `node ${script} ${args.join(' ')} exited ${r.code}:\n${`${r.stdout}\n${r.stderr}`.trim().slice(-3000)}`,
    );
  }
  return JSON.parse(line);
}
