// Packing one workspace package with pnpm, and inspecting what the tarball holds.
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { run, runOk } from './run.mjs';
import { ROOT } from './workspace.mjs';

/** What a published tarball may hold. CHANGELOG.md appears once `changeset version` has run. */
const ALLOWED = [
  /^package\/package\.json$/,
  /^package\/README\.md$/,
  /^package\/LICENSE$/,
  /^package\/CHANGELOG\.md$/,
  /^package\/dist\/.+\.(js|d\.ts|js\.map|d\.ts\.map)$/,
];
const REQUIRED = ['package/package.json', 'package/README.md', 'package/LICENSE'];

/**
 * `pnpm pack` the package (pnpm rewrites workspace: ranges to real versions) into outDir.
 * pnpm itself adds the workspace root's LICENSE when a package has none; should a tarball still
 * come out without one, the root LICENSE is added to the tarball, never to the package directory.
 * @returns {Promise<{ file: string, licenseAdded: boolean }>}
 */
export async function packPackage(pkg, outDir) {
  const r = await runOk('pnpm', ['pack', '--json', '--pack-destination', outDir], { cwd: pkg.dir });
  const file = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).filename;
  if (!file || !existsSync(file))
    throw new Error(`pnpm pack of ${pkg.name} reported no tarball:\n${r.stdout}`);
  const entries = await listEntries(file);
  if (entries.some((e) => e.path === 'package/LICENSE')) return { file, licenseAdded: false };
  await addRootLicense(file);
  return { file, licenseAdded: true };
}

async function addRootLicense(file) {
  const work = mkdtempSync(join(tmpdir(), 'deerjs-license-'));
  try {
    await runOk('tar', ['-xzf', file, '-C', work]);
    copyFileSync(join(ROOT, 'LICENSE'), join(work, 'package', 'LICENSE'));
    await runOk('tar', ['-czf', file, '--owner=0', '--group=0', '--numeric-owner', '-C', work, 'package']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** @returns {Promise<{ path: string, size: number }[]>} regular files only */
export async function listEntries(file) {
  const r = await runOk('tar', ['-tvzf', file]);
  const entries = [];
  for (const line of r.stdout.split('\n')) {
    // -rw-r--r-- 0/0   3746 1985-10-26 08:15 package/dist/x.js
    const m = /^(\S)\S*\s+\S+\s+(\d+)\s+\S+\s+\S+\s+(.+)$/.exec(line);
    if (m && m[1] === '-') entries.push({ path: m[3], size: Number(m[2]) });
  }
  return entries;
}

/** Problems with a tarball's file list: files that must not ship, required files that are missing. */
export function contentProblems(entries, manifest) {
  const paths = new Set(entries.map((e) => e.path));
  const problems = [];
  for (const p of paths) {
    if (!ALLOWED.some((re) => re.test(p))) problems.push(`unexpected file ${p}`);
    else if (/\.(test|spec)\./.test(p)) problems.push(`test file shipped: ${p}`);
  }
  for (const p of REQUIRED) if (!paths.has(p)) problems.push(`missing ${p}`);
  for (const target of manifestTargets(manifest)) {
    const p = `package/${target.replace(/^\.\//, '')}`;
    if (!paths.has(p)) problems.push(`package.json points at ${target}, which is not in the tarball`);
  }
  return problems;
}

/** Every file path named by main, types, browser and the exports map. */
function manifestTargets(manifest) {
  const out = new Set();
  const visit = (v) => {
    if (typeof v === 'string') out.add(v);
    else if (v && typeof v === 'object') for (const x of Object.values(v)) visit(x);
  };
  for (const k of ['main', 'types', 'browser', 'exports']) visit(manifest[k]);
  return [...out].filter((t) => !t.includes('*'));
}

/** The package.json inside the tarball (after pnpm's rewrite of workspace: ranges). */
export async function packedManifest(file) {
  const r = await runOk('tar', ['-xzOf', file, 'package/package.json']);
  return JSON.parse(r.stdout);
}

/** Dependency ranges that still use the workspace: protocol (pnpm should have replaced them). */
export function workspaceRanges(manifest) {
  const bad = [];
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
    for (const [dep, range] of Object.entries(manifest[field] ?? {})) {
      if (String(range).startsWith('workspace:')) bad.push(`${field}.${dep} = ${range}`);
    }
  }
  return bad;
}

/**
 * Source maps that point at files the tarball does not hold (tsc's maps name ../src/*.ts) and
 * carry no sourcesContent: editors' "go to definition" then lands nowhere. Not an error; a note.
 */
export async function danglingMapSources(file, entries) {
  const map = entries.find(
    (e) => e.path === 'package/dist/index.d.ts.map' || e.path === 'package/dist/index.js.map',
  );
  if (!map) return null;
  const { sources = [], sourcesContent } = JSON.parse((await runOk('tar', ['-xzOf', file, map.path])).stdout);
  if (sourcesContent?.length) return null;
  const base = map.path.slice(0, map.path.lastIndexOf('/'));
  const paths = new Set(entries.map((e) => e.path));
  const missing = sources.map((s) => normalize(join(base, s))).filter((s) => !paths.has(s));
  return missing.length
    ? `${map.path.slice(8)} names ${missing.map((s) => s.slice(8)).join(', ')}, which is not shipped`
    : null;
}

export function fileSize(file) {
  return statSync(file).size;
}

/** Is there a build to pack? Returns the reason when not. */
export function missingBuild(pkg) {
  const entry = join(pkg.dir, 'dist', 'index.js');
  if (!existsSync(entry)) return `${pkg.name} has no build (${entry} is missing; run pnpm build)`;
  return null;
}

/** Lint a packed tarball with publint (warnings count as errors): the workspace's, else npx's. */
export async function publint(file, version) {
  const local = join(ROOT, 'node_modules', '.bin', 'publint');
  if (existsSync(local)) return run(local, ['run', '--strict', file], { cwd: tmpdir() });
  return run('npx', ['-y', `publint@${version}`, 'run', '--strict', file], { cwd: tmpdir() });
}
