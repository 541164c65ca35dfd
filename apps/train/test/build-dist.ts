import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Vitest global setup: the CLI tests run dist/cli.js, so build it once for the whole run. */
export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', `${root}tsconfig.json`], {
    stdio: 'inherit',
  });
}
