import { mkdirSync, statfsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ArgError } from './args.js';

/** --out cannot be created or written; names the path and the problem. */
export class OutputDirError extends ArgError {
  override name = 'OutputDirError';
  constructor(
    readonly dir: string,
    readonly problem: string,
    flag = '--out',
  ) {
    super(`${flag} ${dir}: ${problem}`);
  }
}

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

/**
 * `mkdir -p dir` and prove it writable by creating and removing a probe file, before any long work.
 * Walks up to the deepest existing folder itself (node's recursive mkdir spins forever under /proc)
 * and refuses kernel pseudo-filesystems up front. Throws OutputDirError naming the path. (The same
 * check as deer-train's; the apps share no package.)
 */
export function ensureOutputDir(dir: string): void {
  const abs = resolve(dir);
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    try {
      if (!statSync(p).isDirectory())
        throw new OutputDirError(
          dir,
          p === abs ? 'is a file, expected a folder' : `${p} is a file, expected a folder`,
        );
      break;
    } catch (err) {
      if (err instanceof OutputDirError) throw err;
      const c = code(err);
      if ((c === 'ENOENT' || c === 'ENOTDIR') && dirname(p) !== p) {
        missing.unshift(p);
        p = dirname(p);
        continue;
      }
      throw new OutputDirError(dir, `cannot inspect ${p} (${c})`);
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
    throw new OutputDirError(dir, `${p} is on the ${special} pseudo-filesystem, expected a real folder`);
  for (const m of missing) {
    try {
      mkdirSync(m);
    } catch (err) {
      if (code(err) === 'EEXIST' && statSync(m, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw new OutputDirError(dir, `cannot create folder ${m} (${code(err)})`);
    }
  }
  const probe = join(abs, `.deer-write-probe-${process.pid}`);
  try {
    writeFileSync(probe, '');
    unlinkSync(probe);
  } catch (err) {
    throw new OutputDirError(dir, `is not writable (${code(err)})`);
  }
}
