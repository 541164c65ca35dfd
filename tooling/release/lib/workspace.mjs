// Where the workspace is, and which of its packages are published.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** @typedef {{ name: string, version: string, dir: string, manifest: Record<string, any> }} WorkspacePackage */

/** Every non-private @deerjs package under packages/, by name. */
export function publicPackages() {
  /** @type {Map<string, WorkspacePackage>} */
  const found = new Map();
  const base = join(ROOT, 'packages');
  for (const entry of readdirSync(base).sort()) {
    const file = join(base, entry, 'package.json');
    if (!existsSync(file)) continue;
    const manifest = JSON.parse(readFileSync(file, 'utf8'));
    if (manifest.private || !String(manifest.name).startsWith('@deerjs/')) continue;
    found.set(manifest.name, {
      name: manifest.name,
      version: manifest.version,
      dir: join(base, entry),
      manifest,
    });
  }
  return found;
}

/** The tarball file name npm and pnpm give a package: @deerjs/core@0.1.0 → deerjs-core-0.1.0.tgz. */
export function tarballName(name, version) {
  return `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`;
}
