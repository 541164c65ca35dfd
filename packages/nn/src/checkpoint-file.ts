import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type Checkpoint, CheckpointError, decodeCheckpoint, encodeCheckpoint } from './checkpoint.js';

/** The temporary file a checkpoint is staged in before it replaces `path`. */
export function stagingPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
}

/** Write the checkpoint to its staging file and flush it to disk; `path` is untouched. */
export async function stageCheckpoint(path: string, c: Checkpoint): Promise<string> {
  const tmp = stagingPath(path);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(encodeCheckpoint(c));
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  return tmp;
}

/**
 * Write atomically: stage to a temporary file in the same directory, fsync, then rename over
 * `path`. A crash at any point leaves either the previous checkpoint or the new one, never a mix.
 */
export async function writeCheckpoint(path: string, c: Checkpoint): Promise<void> {
  const tmp = await stageCheckpoint(path, c);
  await rename(tmp, path);
}

export async function readCheckpoint(path: string): Promise<Checkpoint> {
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
