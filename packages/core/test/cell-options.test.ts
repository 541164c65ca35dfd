import { describe, expect, it } from 'vitest';
import { CellDefinitionError, cells, InvalidArgumentError, lang, UnsupportedOptionError } from '../src/index.js';

describe('built-in cell options', () => {
  it('lstm peephole adds P [3n]; inputForget keeps the params', () => {
    const p = cells.lstm({ inputSize: 2, hiddenSize: 3, peephole: true });
    expect(p.params.find((q) => q.name === 'P')?.shape).toEqual([3 * 3]);
    expect(p.name).toContain('peephole');
    const f = cells.lstm({ inputSize: 2, hiddenSize: 3, inputForget: true });
    expect(f.params.map((q) => q.name)).toEqual(['W', 'R', 'Wb', 'Rb']);
    expect(f.name).toContain('input_forget');
  });

  it('takes activations by ONNX name (any case), with α/β, or as functions', () => {
    const a = cells.gru({
      inputSize: 2,
      hiddenSize: 3,
      activations: ['hardsigmoid' as 'HardSigmoid', { name: 'ScaledTanh', alpha: 2, beta: 0.5 }],
    });
    expect(a.name).toContain('act=hardsigmoid,ScaledTanh(2,0.5)');
    const b = cells.elman({ inputSize: 2, hiddenSize: 3, activations: [(v) => lang.softsign(v)] });
    expect(b.stateSize).toBe(3);
    // The defaults spelled out give the default cell's name.
    expect(cells.lstm({ inputSize: 2, hiddenSize: 3, activations: ['Sigmoid', 'Tanh', 'Tanh'] }).name).toBe(
      'lstm(n=3)',
    );
  });

  it('refuses unknown or misspelt options and options that are not an object (they had been ignored)', () => {
    const bad: [string, () => unknown][] = [
      ['lstm peepholes', () => cells.lstm({ inputSize: 2, hiddenSize: 3, peepholes: true } as never)],
      ['gru actvations', () => cells.gru({ inputSize: 2, hiddenSize: 3, actvations: ['Relu'] } as never)],
      ['mlp hiden', () => cells.mlp({ stateSize: 2, hiden: [3] } as never)],
      ['elman()', () => (cells.elman as (o?: unknown) => unknown)()],
      ['hamiltonian hidden null', () => cells.hamiltonian({ dof: 1, hidden: null } as never)],
      ['multi-head gru head', () => cells.multiHeadGru({ inputSize: 2, hiddenSize: 4, heads: 2, head: 2 } as never)],
    ];
    for (const [what, make] of bad) expect(make, what).toThrow(CellDefinitionError);
  });

  it("cell.init refuses what is not { seed } (a misspelt or bare seed had meant seed 0)", () => {
    const cell = cells.gru({ inputSize: 2, hiddenSize: 3 });
    for (const bad of [{ sead: 1 }, 5, null, 'x', [1]]) expect(() => cell.init(bad as never), JSON.stringify(bad)).toThrow(UnsupportedOptionError);
    expect(() => cell.init({ seed: 1.5 })).toThrow(InvalidArgumentError);
    expect(cell.init({ seed: 3 })).toEqual(cell.init({ seed: 3 }));
    expect(cell.init({ seed: 3 }).W).not.toEqual(cell.init().W);
  });
});
