import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readCheckpoint, writeCheckpoint } from '@deerjs/nn';
import { readMetrics } from '../src/metrics.js';
import { setupRun } from '../src/run-setup.js';
import { TrainingInterrupted } from '../src/interrupt.js';
import type { ProgressBar } from '../src/progress.js';
import { train } from '../src/train.js';
import { configOf, fashionFixture, quiet, tempDir, tinyEigenworms } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'dist', 'cli.js');
const flags = [
  'eigenworms',
  '--synthetic',
  '--length',
  '32',
  '--limit',
  '24',
  '--batch',
  '4',
  '--epochs',
  '5',
  '--hidden',
  '8',
  '--layers',
  '2',
  '--checkpoint-every',
  '3',
];

function runCli(args: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code));
  });
}

describe('a run killed with SIGKILL resumes exactly', () => {
  it('continues from its last checkpoint with identical losses', async () => {
    const ref = tempDir('ref');
    await train(configOf([...flags, '--out', ref]), quiet);
    const expected = readMetrics(join(ref, 'metrics.jsonl'));
    expect(expected.filter((r) => r.type === 'step')).toHaveLength(30);

    const out = tempDir('killed');
    const ckpt = join(out, 'checkpoint.ckpt');
    const child = spawn(process.execPath, [cli, ...flags, '--out', out], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_c, sig) => resolve(sig)),
    );
    // Kill as soon as the second checkpoint lands (mid-epoch: 6 batches per epoch, checkpoints every 3).
    await new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const poll = setInterval(() => {
        const done =
          existsSync(ckpt) &&
          readMetrics(join(out, 'metrics.jsonl')).some((r) => r.type === 'step' && r.step >= 7);
        if (done || Date.now() - t0 > 60_000) {
          clearInterval(poll);
          child.kill('SIGKILL');
          done ? resolve() : reject(new Error('no checkpoint within 60 s'));
        }
      }, 2);
    });
    expect(await exited).toBe('SIGKILL');
    const partial = readMetrics(join(out, 'metrics.jsonl'));
    expect(partial.some((r) => r.type === 'eval')).toBe(false);
    expect(partial.length).toBeLessThan(30);

    // Only the task, --out and --resume: other flags with --resume are refused (the checkpoint rules).
    expect(await runCli(['eigenworms', '--out', out, '--resume'])).toBe(0);
    // Everything but the wall-clock times must match bit for bit.
    const strip = (rs: ReturnType<typeof readMetrics>) => rs.map((r) => ({ ...r, ms: 0 }));
    expect(strip(readMetrics(join(out, 'metrics.jsonl')))).toEqual(strip(expected));
  });
});

describe('a run stopped by its signal (Ctrl-C in the CLI) keeps every finished step', () => {
  it('rejects with TrainingInterrupted, saves the checkpoint, and resumes exactly', async () => {
    const ref = tempDir('ref-signal');
    await train(configOf([...flags, '--out', ref]), quiet);
    const strip = (rs: ReturnType<typeof readMetrics>) => rs.map((r) => ({ ...r, ms: 0 }));
    const expected = strip(readMetrics(join(ref, 'metrics.jsonl')));

    const out = tempDir('signal');
    const controller = new AbortController();
    // The abort comes as a timer task after step 4 is reported: it lands in step 5's solves (the
    // step is abandoned) or, if step 5 is quicker than the solve's task polls, before step 6.
    const progress = {
      update: (p: { step: number }) => {
        if (p.step === 4) setTimeout(() => controller.abort(new Error('stop')), 0);
      },
      done: () => {},
    } as unknown as ProgressBar;
    const stopped = await train(configOf([...flags, '--out', out]), { log: () => {}, progress, signal: controller.signal }).catch((e: unknown) => e);
    expect(stopped).toBeInstanceOf(TrainingInterrupted);
    const at = (stopped as TrainingInterrupted).step;
    expect(at).toBeGreaterThanOrEqual(4);
    expect(at).toBeLessThan(30);
    expect((await readCheckpoint(join(out, 'checkpoint.ckpt'))).step).toBe(at);
    expect(readMetrics(join(out, 'metrics.jsonl')).filter((r) => r.type === 'step')).toHaveLength(at);
    await train(configOf(['eigenworms', '--out', out, '--resume']), { ...quiet, resume: true });
    expect(strip(readMetrics(join(out, 'metrics.jsonl')))).toEqual(expected);
  });

  it('stops the evaluation too, and a --resume of the finished steps evaluates and reports their time', async () => {
    // The test set was evaluated without the signal: Ctrl-C there was not seen (the cpu backend
    // never yielded), the run exited 0, and a second Ctrl-C did not quit.
    const out = tempDir('signal-eval');
    const controller = new AbortController();
    const log = (line: string) => {
      if (line.startsWith('evaluating:')) controller.abort(new Error('stop'));
    };
    const config = configOf([...flags.filter((f, i, a) => f !== '--epochs' && a[i - 1] !== '--epochs'), '--epochs', '1', '--out', out]);
    const stopped = await train(config, { log, progress: quiet.progress, signal: controller.signal }).catch((e: unknown) => e);
    expect(stopped).toBeInstanceOf(TrainingInterrupted);
    const steps = (stopped as TrainingInterrupted).step;
    expect(steps).toBeGreaterThan(0);
    expect((await readCheckpoint(join(out, 'checkpoint.ckpt'))).step).toBe(steps);
    expect(readMetrics(join(out, 'metrics.jsonl')).some((r) => r.type === 'eval')).toBe(false);
    // Nothing left to train: the resumed run evaluates, and its time per step is that of the
    // recorded steps (it had said 0 ms/step).
    const done = await train(configOf(['eigenworms', '--out', out, '--resume']), { ...quiet, resume: true });
    expect(done.steps).toBe(steps);
    expect(done.meanStepMs).toBeGreaterThan(0);
    expect(readMetrics(join(out, 'metrics.jsonl')).filter((r) => r.type === 'eval')).toHaveLength(1);
  });

  it('the CLI on SIGINT: exit code 130, one line naming the checkpoint, and --resume finishes the run', async () => {
    const out = tempDir('sigint');
    const child = spawn(process.execPath, [cli, ...flags, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const poll = setInterval(() => {
        const started = existsSync(join(out, 'metrics.jsonl')) && readMetrics(join(out, 'metrics.jsonl')).some((r) => r.type === 'step');
        if (started || Date.now() - t0 > 60_000) {
          clearInterval(poll);
          child.kill('SIGINT');
          started ? resolve() : reject(new Error('no step within 60 s'));
        }
      }, 2);
    });
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/interrupted after step \d+; the checkpoint .*checkpoint\.ckpt holds it: rerun with --resume/);
    expect(await runCli(['eigenworms', '--out', out, '--resume'])).toBe(0);
    expect(readMetrics(join(out, 'metrics.jsonl')).filter((r) => r.type === 'step')).toHaveLength(30);
  });
});

describe('--resume takes the stored configuration of any cell', () => {
  // The stored heads of a gru or lstm run (1) differ from fashion-mnist's default (mhgru, 4 heads):
  // the rebuilt command line had said --heads=1 without --cell mhgru, and no such run resumed.
  it.each(['gru', 'lstm', 'mhgru'])('fashion-mnist --cell %s', async (cell) => {
    const out = tempDir(`fm-resume-${cell}`);
    const flags = [
      'fashion-mnist',
      '--data',
      fashionFixture(),
      '--limit',
      '8',
      '--batch',
      '4',
      '--steps',
      '1',
      '--hidden',
      '4',
      '--layers',
      '1',
      '--cell',
      cell,
    ];
    const fresh = configOf([...flags, '--out', out]);
    await train(fresh, quiet);
    const { config } = await setupRun(configOf(['fashion-mnist', '--out', out, '--resume']), {
      resume: true,
      log: () => {},
    });
    expect(config).toEqual(fresh);
  });
});

it('a checkpoint whose step is past the run is refused, not reported as a finished run', async () => {
  const out = tempDir('step-past');
  const fresh = configOf([...tinyEigenworms(2), '--out', out]);
  await train(fresh, quiet);
  const path = join(out, 'checkpoint.ckpt');
  await writeCheckpoint(path, { ...(await readCheckpoint(path)), step: 99 });
  await expect(
    train(configOf(['eigenworms', '--out', out, '--resume']), { ...quiet, resume: true }),
  ).rejects.toThrow(/checkpoint\.ckpt: step 99 is past the run's 2 steps/);
});
