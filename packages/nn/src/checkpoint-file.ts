import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DeerError } from '@deerjs/core';
import { type Checkpoint, CheckpointError, decodeCheckpoint, encodeCheckpoint } from './checkpoint.js';

/** Staging files of `path` are named `.<basename>.tmp-<pid>-<random>` in its directory. */
const stagingPrefix = (path: string) => `.${basename(path)}.tmp-`;

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
 * than STALE_STAGING_MS. Best effort; returns the files removed.
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
    const file = join(dir, name);
    if (inFlight.has(file)) continue;
    const pid = Number(/^(\d+)(?:-[0-9a-f]+)?$/.exec(name.slice(prefix.length))?.[1]);
    let stale = !Number.isSafeInteger(pid) || pid === process.pid || !processAlive(pid);
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

/** Write the checkpoint to a staging file and flush it to disk; `path` is untouched. */
export async function stageCheckpoint(path: string, c: Checkpoint): Promise<string> {
  const tmp = stagingPath(path);
  inFlight.add(tmp);
  try {
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
  } finally {
    inFlight.delete(tmp);
  }
  return tmp;
}

/**
 * Write atomically: stage to a temporary file in the same directory, fsync, then rename over
 * `path`. A crash at any point leaves either the previous checkpoint or the new one, never a mix;
 * the staging files such a crash leaves behind are removed by the next write or read.
 */
export async function writeCheckpoint(path: string, c: Checkpoint): Promise<void> {
  await removeStaleStaging(path);
  let tmp: string | undefined;
  try {
    tmp = await stageCheckpoint(path, c);
    await rename(tmp, path);
  } catch (err) {
    // The staging file of a failed rename (path is a directory, …) is removed now, not by the next write.
    if (tmp !== undefined) await unlink(tmp).catch(() => undefined);
    if (err instanceof DeerError) throw err;
    throw new CheckpointError(
      path,
      `cannot be written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
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
