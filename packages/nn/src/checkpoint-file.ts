import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DeerError } from '@deerjs/core';
import { type Checkpoint, CheckpointError, decodeCheckpoint, encodeCheckpoint } from './checkpoint.js';

/** Staging files of `path` are named `.<basename>.tmp-<pid>-<random>` in its directory. */
const stagingPrefix = (path: string) => `.${basename(path)}.tmp-`;

/**
 * What follows the prefix in a staging file's name: the writer's pid and the 8 hex digits
 * `stagingPath` adds (or nothing, as the first version of this module wrote). Neither holds a dot,
 * so the staging files of `a.ckpt.tmp-1` (`.a.ckpt.tmp-1.tmp-<pid>-<random>`) are not `a.ckpt`'s.
 */
const STAGING_SUFFIX = /^([1-9]\d*)(?:-[0-9a-f]{8})?$/;

/** A staging file older than this is stale whoever wrote it (covers pid reuse and other hosts). */
export const STALE_STAGING_MS = 10 * 60 * 1000;

/** Staging files this process is writing right now: never removed as stale. */
const inFlight = new Set<string>();

/** A fresh temporary file for staging a checkpoint before it replaces `path` (unique per write). */
export function stagingPath(path: string): string {
  return join(dirname(path), `${stagingPrefix(path)}${process.pid}-${randomBytes(4).toString('hex')}`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove staging files of `path` left by a write that never finished (a killed process, a crash):
 * those of a process that is gone, those of this process that are not being written, and any older
 * than STALE_STAGING_MS. Only names this module writes count as staging files —
 * `.<basename>.tmp-<pid>-<8 hex digits>` (or `.<basename>.tmp-<pid>`, the first naming) — so a file
 * of the user's that merely starts the same way (`.model.ckpt.tmp-backup`), or the staging files of
 * another checkpoint whose name extends this one's (`model.ckpt.tmp-1`), are never touched. Best
 * effort; returns the files removed.
 */
export async function removeStaleStaging(path: string, now = Date.now()): Promise<string[]> {
  const dir = dirname(path);
  const prefix = stagingPrefix(path);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const match = STAGING_SUFFIX.exec(name.slice(prefix.length));
    // Not a name this module writes: nothing says whose it is or whether it is stale (a pid that did
    // not parse had counted as a dead process, and the file was deleted).
    if (match === null) continue;
    const pid = Number(match[1]);
    if (!Number.isSafeInteger(pid)) continue;
    const file = join(dir, name);
    if (inFlight.has(file)) continue;
    let stale = pid === process.pid || !processAlive(pid);
    if (!stale) {
      const s = await stat(file).catch(() => undefined);
      stale = s !== undefined && now - s.mtimeMs > STALE_STAGING_MS;
    }
    if (
      stale &&
      (await unlink(file)
        .then(() => true)
        .catch(() => false))
    )
      removed.push(file);
  }
  return removed;
}

/**
 * Write the checkpoint to a staging file and flush it to disk; `path` is untouched. Rename the file
 * returned into place before the next `writeCheckpoint` or `readCheckpoint` of `path`: once this
 * call has returned, those remove it as a write of this process that did not finish.
 */
export async function stageCheckpoint(path: string, c: Checkpoint): Promise<string> {
  const tmp = stagingPath(path);
  inFlight.add(tmp);
  try {
    await writeStaging(tmp, c);
  } finally {
    inFlight.delete(tmp);
  }
  return tmp;
}

/** Write and flush `tmp` (created here; removed again if the write fails). */
async function writeStaging(tmp: string, c: Checkpoint): Promise<void> {
  const fh = await open(tmp, 'wx');
  try {
    await fh.writeFile(encodeCheckpoint(c));
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
}

/**
 * Write atomically: stage to a temporary file in the same directory, fsync, then rename over
 * `path`. A crash at any point leaves either the previous checkpoint or the new one, never a mix;
 * the staging files such a crash leaves behind are removed by the next write or read.
 */
export async function writeCheckpoint(path: string, c: Checkpoint): Promise<void> {
  await removeStaleStaging(path);
  const tmp = stagingPath(path);
  // In flight until renamed: a read of the same path in between (another task of this process)
  // had taken the staged file for a write that did not finish and deleted it.
  inFlight.add(tmp);
  try {
    await writeStaging(tmp, c);
    await rename(tmp, path);
  } catch (err) {
    // The staging file of a failed rename (path is a directory, …) is removed now, not by the next write.
    await unlink(tmp).catch(() => undefined);
    if (err instanceof DeerError) throw err;
    throw new CheckpointError(
      path,
      `cannot be written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  } finally {
    inFlight.delete(tmp);
  }
}

export async function readCheckpoint(path: string): Promise<Checkpoint> {
  await removeStaleStaging(path);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new CheckpointError(
      path,
      `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  return decodeCheckpoint(bytes, path);
}
