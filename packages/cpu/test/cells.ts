import { type Cell, cells } from '@deerjs/core';

// Odd sizes: n not a multiple of 4 (and of the matvec's 4-row blocks), B not a multiple of 4.
/** Every built-in cell family. */
export const CELLS: [string, Cell][] = [
  ['gru', cells.gru({ inputSize: 3, hiddenSize: 6 })],
  ['gru n=13', cells.gru({ inputSize: 5, hiddenSize: 13 })],
  ['gru lbr0, clipped', cells.gru({ inputSize: 2, hiddenSize: 5, linearBeforeReset: 0, clip: 0.5 })],
  ['multi-head gru', cells.gru({ inputSize: 3, hiddenSize: 8, heads: 4 })],
  ['lstm', cells.lstm({ inputSize: 2, hiddenSize: 5 })],
  ['elman tanh', cells.elman({ inputSize: 2, hiddenSize: 7 })],
  ['elman relu', cells.elman({ inputSize: 3, hiddenSize: 5, activations: ['Relu'] })],
  ['elman sigmoid', cells.elman({ inputSize: 1, hiddenSize: 9, activations: ['Sigmoid'] })],
  ['elman hard sigmoid', cells.elman({ inputSize: 2, hiddenSize: 3, activations: ['HardSigmoid'] })],
  ['elman elu', cells.elman({ inputSize: 2, hiddenSize: 3, activations: ['Elu'] })],
  ['elman softsign', cells.elman({ inputSize: 2, hiddenSize: 3, activations: ['Softsign'] })],
  ['mlp', cells.mlp({ stateSize: 4, inputSize: 2, hidden: [6] })],
  ['mlp relu, no input', cells.mlp({ stateSize: 3, inputSize: 0, hidden: [5], activation: 'relu' })],
  ['hamiltonian tanh', cells.hamiltonian({ dof: 2, hidden: [5], activation: 'tanh' })],
  ['hamiltonian softplus (its vector field reads sigmoid)', cells.hamiltonian({ dof: 2, hidden: [5] })],
];
