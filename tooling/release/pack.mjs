#!/usr/bin/env node
// Pack every public @deerjs package as it would be published and check the tarballs: only dist
// (js, d.ts, maps), package.json, README.md and LICENSE; no workspace: ranges left; publint clean;
// and the declarations of core + cpu compile for a consumer under node16 and bundler resolution.
//   node tooling/release/pack.mjs [--out DIR] [--only @deerjs/core,@deerjs/cpu] [--no-publint] [--no-types] [--strict]
// --strict (default under CI=true): a package without a build counts as a failure.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { checkConsumerTypes } from './lib/consumer-types.mjs';
import { Tally } from './lib/tally.mjs';
import {
  contentProblems,
  danglingMapSources,
  fileSize,
  listEntries,
  missingBuild,
  packedManifest,
  packPackage,
  publint,
  workspaceRanges,
} from './lib/tarball.mjs';
import { publicPackages, ROOT } from './lib/workspace.mjs';

const PUBLINT_VERSION = '0.3.25';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join(ROOT, 'out', 'pack') },
    only: { type: 'string' },
    publint: { type: 'boolean', default: true },
    'no-publint': { type: 'boolean', default: false },
    types: { type: 'boolean', default: true },
    'no-types': { type: 'boolean', default: false },
    strict: { type: 'boolean', default: process.env.CI === 'true' },
  },
});
const outDir = resolve(values.out);
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });

const all = publicPackages();
const wanted = values.only ? values.only.split(',') : [...all.keys()];
const tally = new Tally();
/** @type {{ name: string, file: string, packed: number, unpacked: number, files: number, licenseAdded: boolean }[]} */
const rows = [];

for (const name of wanted) {
  const pkg = all.get(name);
  if (!pkg) {
    tally.fail(`${name}: pack`, `no public package named ${name} under packages/`);
    continue;
  }
  const why = missingBuild(pkg);
  if (why) {
    tally.skip(`${name}: pack`, why);
    continue;
  }
  let packed;
  try {
    packed = await packPackage(pkg, outDir);
  } catch (err) {
    tally.fail(`${name}: pack`, err instanceof Error ? err.message : String(err));
    continue;
  }
  const entries = await listEntries(packed.file);
  const manifest = await packedManifest(packed.file);
  rows.push({
    name,
    file: packed.file,
    packed: fileSize(packed.file),
    unpacked: entries.reduce((s, e) => s + e.size, 0),
    files: entries.length,
    licenseAdded: packed.licenseAdded,
  });
  const note = packed.licenseAdded ? ' (LICENSE added from the root after packing)' : '';
  const problems = [
    ...contentProblems(entries, manifest),
    ...workspaceRanges(manifest).map((r) => `unpublishable range ${r}`),
  ];
  if (problems.length > 0) tally.fail(`${name}: tarball contents`, problems.join('\n'));
  else tally.pass(`${name}: tarball contents`, `${entries.length} files${note}`);

  const dangling = await danglingMapSources(packed.file, entries);
  if (dangling) console.log(`NOTE ${name}: ${dangling}`);

  if (values.publint && !values['no-publint']) {
    const r = await publint(packed.file, PUBLINT_VERSION);
    const out = `${r.stdout}${r.stderr}`
      .split('\n')
      .filter((l) => l && !/^npm warn/.test(l))
      .join('\n');
    // --strict makes warnings errors; suggestions leave the exit code 0 and are shown.
    const suggestions = out.split('\n').filter((l) => /^\d+\. /.test(l));
    if (r.code === 0)
      tally.pass(
        `${name}: publint ${PUBLINT_VERSION}`,
        suggestions.length ? `suggestions:\n${suggestions.join('\n')}` : 'all good',
      );
    else tally.fail(`${name}: publint ${PUBLINT_VERSION}`, out);
  }
}

if (values.types && !values['no-types']) {
  const core = rows.find((r) => r.name === '@deerjs/core');
  const cpu = rows.find((r) => r.name === '@deerjs/cpu');
  if (!core || !cpu) {
    tally.skip('consumer types (core + cpu)', 'core or cpu did not pack');
  } else {
    const tsVersion =
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).devDependencies?.typescript ?? '5.9.3';
    const dir = mkdtempSync(join(tmpdir(), 'deerjs-consumer-types-'));
    try {
      for (const r of await checkConsumerTypes(dir, [core.file, cpu.file], tsVersion)) {
        const name = `consumer types, moduleResolution ${r.mode} (typescript ${tsVersion})`;
        if (r.ok) tally.pass(name);
        else tally.fail(name, r.output);
      }
    } catch (err) {
      tally.fail('consumer types (core + cpu)', err instanceof Error ? err.message : String(err));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

console.log(`\ntarballs in ${outDir}`);
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(['package', 'tarball', 'packed', 'unpacked', 'files'].join('\t'));
for (const r of rows) {
  console.log([r.name, r.file.slice(outDir.length + 1), kb(r.packed), kb(r.unpacked), r.files].join('\t'));
}
process.exitCode = tally.finish(values.strict);
