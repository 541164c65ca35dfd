export {
  buildRecurrentModel,
  type RandomWeightsSpec,
  type RecurrentModelSpec,
  type RecurrentWeights,
  randomRecurrentWeights,
} from './builder.js';
export {
  OnnxFormatError,
  OnnxRuntimeError,
  OnnxInputError,
  OnnxRuntimeUnavailableError,
  OnnxUnsupportedError,
} from './errors.js';
export { loadOnnxModel, type OnnxNode, type OnnxRecurrentModel, type OnnxValueInfo } from './model.js';
export {
  type OrtModule,
  type OrtOptions,
  type OrtReferenceSession,
  openOrtSession,
  ortReference,
} from './ort.js';
export type { Direction, RecurrentNode, RecurrentOp } from './recurrent.js';
export { type OnnxInput, type RunOnnxOptions, runOnnxModel } from './run.js';
export type { RecurrentRunOptions } from './run-recurrent.js';
export type { OnnxData, OnnxTensor } from './tensor.js';
