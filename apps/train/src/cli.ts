#!/usr/bin/env node
import { BackendUnavailableError, DeerError, UnsupportedOptionError } from '@deerjs/core';
import { CheckpointError } from '@deerjs/nn';
import { HELP, parseCli } from './args.js';
import { TrainInputError } from './errors.js';
import { interruptOnSigint, TrainingInterrupted } from './interrupt.js';
import { trainHnn } from './hnn/train-hnn.js';
import { train } from './train.js';

async function main(argv: readonly string[]): Promise<number> {
  // Ctrl-C stops the run at its next read and keeps every finished step in the checkpoint.
  const sigint = interruptOnSigint(() => process.stderr.write('\ndeer-train: interrupted: saving the checkpoint (Ctrl-C again to quit at once)\n'));
  try {
    const args = parseCli(argv);
    if (args.help) {
      process.stdout.write(`${HELP}\n`);
      return 0;
    }
    if (args.config.task === 'hnn') {
      const h = await trainHnn(args.config, { resume: args.resume, overwrite: args.overwrite, signal: sigint.signal });
      process.stdout.write(
        `held-out MSE ${h.test.loss.toExponential(3)}, max relative energy drift ${h.test.energyDrift.toExponential(2)} (${h.test.examples} orbits) after ${h.steps} steps, ${h.meanStepMs.toFixed(0)} ms/step on ${h.device}\n` +
          `wrote ${args.config.out}/{metrics.jsonl,checkpoint.ckpt,plot.svg,orbits.svg,summary.json}\n`,
      );
      return 0;
    }
    const s = await train(args.config, { resume: args.resume, overwrite: args.overwrite, signal: sigint.signal });
    process.stdout.write(
      `test accuracy: ${(100 * s.test.acc).toFixed(2)}% (${s.test.examples} examples, loss ${s.test.loss.toFixed(4)}) after ${s.steps} steps, ${s.meanStepMs.toFixed(0)} ms/step on ${s.device}\n` +
        `wrote ${args.config.out}/{metrics.jsonl,checkpoint.ckpt,plot.svg,summary.json}\n`,
    );
    return 0;
  } catch (err) {
    if (err instanceof TrainingInterrupted) {
      process.stderr.write(`deer-train: ${err.message}\n`);
      return 130;
    }
    // Bad input — a flag, a path, a data or checkpoint file, a backend that is missing or cannot run
    // the task — is one line on stderr and exit code 2.
    const line = (m: string) => m.replace(/\s*\n\s*/g, ' ');
    if (
      err instanceof TrainInputError ||
      err instanceof CheckpointError ||
      err instanceof BackendUnavailableError
    ) {
      process.stderr.write(`deer-train: ${err.name}: ${line(err.message)}\n`);
      return 2;
    }
    if (err instanceof UnsupportedOptionError && err.option === 'backend') {
      // e.g. a backend without the ODE matrix ops that solveIvp needs (the message lists them).
      process.stderr.write(`deer-train: this backend cannot run the task: ${line(err.message)}\n`);
      return 2;
    }
    // A numerical failure in the run (a diverging loss, memory): one line, exit 1. Anything else
    // is a bug in deer-train or deerjs, and its stack says where.
    if (err instanceof DeerError) {
      process.stderr.write(`deer-train: ${err.name}: ${line(err.message)}\n`);
      return 1;
    }
    process.stderr.write(`deer-train: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  } finally {
    sigint.release();
  }
}

process.exitCode = await main(process.argv.slice(2));
