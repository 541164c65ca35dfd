import { mkdirSync, renameSync, rmSync, statfsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';

/** Kernel pseudo-filesystems (statfs f_type) that cannot hold output files. */
const SPECIAL_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x1cd1, 'devpts'],
  [0xcafe4a11, 'bpf'],
  [0x6e736673, 'nsfs'],
]);

const code = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/** What is wrong with an output folder, as the callers' errors say it. */
class Problem extends Error {}

/**
 * `mkdir -p dir` and prove it writable by creating and removing a probe file, before any long work.
 * Walks up to the deepest existing folder itself (node's recursive mkdir spins forever under /proc)
 * and refuses kernel pseudo-filesystems up front. Returns undefined when the folder is ready, else
 * what is wrong with it (naming the path at fault), for the app to raise as its own error.
 */
export function outputDirProblem(dir: string): string | undefined {
  try {
    prepare(dir);
    return undefined;
  } catch (err) {
    if (err instanceof Problem) return err.message;
    throw err;
  }
}

function prepare(dir: string): void {
  const abs = resolve(dir);
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    try {
      if (!statSync(p).isDirectory())
        throw new Problem(p === abs ? 'is a file, expected a folder' : `${p} is a file, expected a folder`);
      break;
    } catch (err) {
      if (err instanceof Problem) throw err;
      const c = code(err);
      if ((c === 'ENOENT' || c === 'ENOTDIR') && dirname(p) !== p) {
        missing.unshift(p);
        p = dirname(p);
        continue;
      }
      throw new Problem(`cannot inspect ${p} (${c})`);
    }
  }
  let fsType: number | undefined;
  try {
    fsType = Number(statfsSync(p).type);
  } catch {
    fsType = undefined;
  }
  const special = fsType === undefined ? undefined : SPECIAL_FS.get(fsType);
  if (special !== undefined)
    throw new Problem(`${p} is on the ${special} pseudo-filesystem, expected a real folder`);
  for (const m of missing) {
    try {
      mkdirSync(m);
    } catch (err) {
      if (code(err) === 'EEXIST' && statSync(m, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw new Problem(`cannot create folder ${m} (${code(err)})`);
    }
  }
  const probe = join(abs, `.deer-write-probe-${process.pid}`);
  try {
    writeFileSync(probe, '');
    unlinkSync(probe);
  } catch (err) {
    throw new Problem(`is not writable (${code(err)})`);
  }
}

/**
 * Write `file` whole or not at all: a temp file beside it, renamed over it. A run killed mid-write
 * leaves the previous version (results written point by point stay readable), and a symlink standing
 * at that name is replaced, not written through to wherever it points.
 */
export function replaceFile(file: string, text: string): void {
  // Unique: a temp file left by a run killed mid-write (its pid reused later) must not block this one.
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, text, { flag: 'wx' });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
