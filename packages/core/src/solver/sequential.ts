import type { Backend, Tensor } from '../backend/types.js';
import type { Cell } from '../cell/cell.js';
import { signalOption } from './abort.js';
import { asDeviceActivity } from './engine.js';
import { checkOptionNames, flag, type SolveOptions } from './options.js';
import {
  checkInputFinite,
  checkLengths,
  checkSequenceInput,
  Owned,
  type ParamsInput,
  prepareInitialState,
  prepareParams,
} from './validate.js';
import { checkTrajectoryFits } from './window.js';

/** y_t = f(y_{t−1}, x_t), one step after another: the baseline and the oracle. */
export async function sequential(
  backend: Backend,
  cell: Cell,
  params: ParamsInput,
  x: Tensor,
  options: SolveOptions = {},
): Promise<{ y: Tensor }> {
  const { B, dtype } = checkSequenceInput(backend, cell, x);
  checkOptionNames(options, ['h0', 'checkFinite', 'lengths', 'signal'], 'sequential');
  const signal = signalOption(options.signal);
  signal?.throwIfAborted();
  const lengths = checkLengths(options.lengths, B, x.shape[1]!);
  const checkFinite = flag('checkFinite', options.checkFinite, true);
  checkTrajectoryFits(
    backend,
    B,
    x.shape[1]!,
    cell.stateSize,
    dtype,
    'evaluate shorter sequences or a smaller batch',
  );
  return asDeviceActivity(backend, async () => {
    const owned = new Owned(backend);
    try {
      if (checkFinite) await checkInputFinite(backend, x);
      const p = await prepareParams(backend, cell, params, dtype, owned, checkFinite);
      const y0 = await prepareInitialState(backend, cell, options.h0, B, dtype, owned, checkFinite);
      // Checked again after the reads above; the pass itself is one backend call.
      signal?.throwIfAborted();
      const y = backend.runSequential(cell.stepProgram(), { input: x, y0, params: p });
      if (!lengths) return { y };
      const masked = backend.maskTime(y, lengths);
      backend.dispose(y);
      return { y: masked };
    } finally {
      owned.dispose();
    }
  });
}
