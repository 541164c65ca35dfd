export { AdamW, type AdamWOptions, type AdamWState, decaysByDefault } from './adamw.js';
export { type CellKind, type LayerCellOptions, layerCell, stateSize } from './cells.js';
export {
  CHECKPOINT_MAGIC,
  CHECKPOINT_VERSION,
  type Checkpoint,
  CheckpointError,
  decodeCheckpoint,
  encodeCheckpoint,
  isRngState,
} from './checkpoint.js';
export {
  readCheckpoint,
  removeStaleStaging,
  STALE_STAGING_MS,
  stageCheckpoint,
  stagingPath,
  writeCheckpoint,
} from './checkpoint-file.js';
export { clipGradNorm, globalNorm } from './clip.js';
export { Linear, type LinearGrads } from './linear.js';
export { type CrossEntropy, softmaxCrossEntropy } from './loss.js';
export { type ClassifierConfig, type RunOptions, SequenceClassifier, type StepResult } from './model.js';
export { cloneParams, type ParamShape, type Params, parameterCount, sizeOf, zerosLike } from './params.js';
export { type Pooling, poolBackward, poolForward } from './pooling.js';
export { type LayerRun, type LayerRunOptions, runLayer, type Solver } from './recurrent.js';
export { type WarmupCosineOptions, warmupCosine } from './schedule.js';
export { type TrainStepOptions, type TrainStepResult, trainStep } from './train-step.js';
export { layerNormCell, type NormRun, runLayerNorm } from './layer-norm.js';
