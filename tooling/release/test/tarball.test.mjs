// The tarball checks must reject what should not ship: run with `node --test tooling/release/test/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contentProblems, workspaceRanges } from '../lib/tarball.mjs';

const manifest = {
  main: './dist/index.js',
  types: './dist/index.d.ts',
  exports: { '.': { types: './dist/index.d.ts', browser: './dist/browser.js', default: './dist/index.js' } },
};
const good = [
  'package/package.json',
  'package/README.md',
  'package/LICENSE',
  'package/dist/index.js',
  'package/dist/index.d.ts',
  'package/dist/index.js.map',
  'package/dist/index.d.ts.map',
  'package/dist/browser.js',
  'package/dist/kernels/scan.js',
].map((path) => ({ path, size: 1 }));

test('a tarball of dist, package.json, README.md and LICENSE passes', () => {
  assert.deepEqual(contentProblems(good, manifest), []);
});

test('sources, tests, stray files and missing required files are reported', () => {
  const entries = [
    ...good.filter((e) => e.path !== 'package/README.md' && e.path !== 'package/dist/browser.js'),
    { path: 'package/src/index.ts', size: 1 },
    { path: 'package/dist/index.test.js', size: 1 },
    { path: 'package/smoke.mjs', size: 1 },
  ];
  assert.deepEqual(contentProblems(entries, manifest).sort(), [
    'missing package/README.md',
    'package.json points at ./dist/browser.js, which is not in the tarball',
    'test file shipped: package/dist/index.test.js',
    'unexpected file package/smoke.mjs',
    'unexpected file package/src/index.ts',
  ]);
});

test('workspace: ranges left in a packed manifest are reported', () => {
  const packed = { dependencies: { '@deerjs/core': 'workspace:^', webgpu: '0.6.2' }, peerDependencies: {} };
  assert.deepEqual(workspaceRanges(packed), ['dependencies.@deerjs/core = workspace:^']);
  assert.deepEqual(workspaceRanges({ dependencies: { '@deerjs/core': '^0.1.0' } }), []);
});
