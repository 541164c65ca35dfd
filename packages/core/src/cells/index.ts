export {
  ACTIVATION_DEFAULTS,
  ACTIVATION_NAMES,
  type ActivationName,
  type ActivationSpec,
  activationFn,
  activationName,
} from './activations.js';
export { type ElmanOptions, elman } from './elman.js';
export { type GruOptions, gru } from './gru.js';
export { type HamiltonianOptions, hamiltonian } from './hamiltonian.js';
export { type LstmOptions, lstm } from './lstm.js';
export { type Activation, type MlpOptions, mlp } from './mlp.js';
export { type MultiHeadGruOptions, multiHeadGru } from './multihead-gru.js';
