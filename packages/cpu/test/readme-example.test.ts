import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

/** The README's quickstart block, run as written (it is plain JavaScript inside a ts fence). */
it('the README quickstart runs and DEER matches sequential', () => {
  const readme = readFileSync(join(here, '../../../README.md'), 'utf8');
  const marker = readme.indexOf('<!-- example:quickstart');
  expect(marker).toBeGreaterThan(0);
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(marker));
  expect(block).not.toBeNull();
  // Written inside this package so that '@deerjs/core' and '@deerjs/cpu' resolve as for a user.
  const dir = mkdtempSync(join(here, '.readme-'));
  try {
    const file = join(dir, 'example.mjs');
    writeFileSync(file, block![1]!);
    // It is shown as TypeScript: it must also type-check (strict) against the built declarations.
    const tsFile = join(dir, 'example.ts');
    writeFileSync(tsFile, block![1]!);
    const program = ts.createProgram([tsFile], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ['node'],
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(problems).toEqual([]);
    const out = execFileSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
    const m = /(\d+) Newton iterations, dense Jacobian, max \|DEER − sequential\| = (\S+)/.exec(out);
    expect(m, out).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(1);
    expect(Number(m![2])).toBeLessThan(1e-10);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
