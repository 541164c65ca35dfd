// Do the packed type declarations resolve for a TypeScript consumer? A tiny project installs the
// tarballs with npm and compiles one file under each module resolution mode users pick.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeProject } from './project.mjs';
import { run } from './run.mjs';

const SOURCE = `import { cells, deer, loadBackend } from '@deerjs/core';
import { register } from '@deerjs/cpu';

register();
const backend = await loadBackend('cpu', { options: { dtype: 'float64' } });
const cell = cells.gru({ inputSize: 2, hiddenSize: 3 });
const x = backend.tensor([0.1, 0.2, 0.3, 0.4], [1, 2, 2]);
const { y, stats } = await deer(backend, cell, cell.init({ seed: 0 }), x);
const iterations: number = stats.iterations;
// The declarations are real, not any: a wrong use must be an error.
// @ts-expect-error iterations is a number
const wrong: string = stats.iterations;
export { iterations, wrong, y };
`;

/** tsconfig compilerOptions per mode; both strict, with library checking on. */
export const MODES = {
  node16: { module: 'node16', moduleResolution: 'node16' },
  bundler: { module: 'esnext', moduleResolution: 'bundler' },
};

/**
 * @param {string} dir a new directory outside the workspace
 * @param {string[]} tarballs core's and cpu's
 * @param {string} typescriptVersion
 * @returns {Promise<{ mode: string, ok: boolean, output: string }[]>}
 */
export async function checkConsumerTypes(dir, tarballs, typescriptVersion) {
  await makeProject(dir, { tarballs, registry: [`typescript@${typescriptVersion}`] });
  writeFileSync(join(dir, 'index.ts'), SOURCE);
  const results = [];
  for (const [mode, options] of Object.entries(MODES)) {
    const config = join(dir, `tsconfig.${mode}.json`);
    const compilerOptions = {
      ...options,
      target: 'es2022',
      lib: ['es2022'],
      strict: true,
      noEmit: true,
      types: [],
      skipLibCheck: false,
    };
    writeFileSync(config, `${JSON.stringify({ compilerOptions, files: ['index.ts'] }, null, 2)}\n`);
    const r = await run(process.execPath, [join(dir, 'node_modules/typescript/bin/tsc'), '-p', config], {
      cwd: dir,
    });
    results.push({ mode, ok: r.code === 0, output: `${r.stdout}${r.stderr}`.trim() });
  }
  return results;
}
