export { HostStep, hostSequential, type StepSources } from './backend/host-step.js';
export { checkDampedScan, checkIsTensor, checkReshape, checkRows, checkTensorData, checkTensorShape, isTensor } from './backend/arg-checks.js';
export { CHECKED_OPS, checkOpArgs, forEachTensor, guardOpArgs } from './backend/op-contracts.js';
export { hostCapTransitions, hostDampedScan, hostFindNonFinite, hostMaxAbs, hostNewtonUpdate } from './backend/host-update.js';
export { withCapabilities } from './backend/with-capabilities.js';
export { scanThenUpdate } from './solver/solve.js';
export type { StepProgram } from './backend/program.js';
export {
  type BackendFactory,
  type BackendOptions,
  type FactoryContext,
  KNOWN_BACKENDS,
  type LoadBackendOptions,
  loadBackend,
  ownOptions,
  registerBackend,
  registeredBackends,
  unregisterBackend,
} from './backend/registry.js';
export {
  type Backend,
  type BackendCapabilities,
  type DampedScanArgs,
  DTYPE_BYTES,
  type DType,
  type NewtonUpdate,
  type NewtonUpdateOptions,
  newtonUpdateFromRows,
  counterDifference,
  type DeerStepInputs,
  type DeviceCounters,
  type RowUpdate,
  type ScanArgs,
  type StepInputs,
  type StepOutputs,
  type Tensor,
  type TypedArray,
} from './backend/types.js';
export type { ParamGradTerm } from './cell/backprop.js';
export {
  Cell,
  type CellBody,
  type CellDefinition,
  defineCell,
  type ParamInit,
  type ParamValues,
} from './cell/cell.js';
export {
  type BinaryFn,
  type Graph,
  liveNodes,
  type MatrixLayout,
  matrixLayout,
  type Node,
  type NodeId,
  operands,
  type ParamSpec,
  paramSpec,
  splitInputOnly,
  BINARY_FNS,
  UNARY_FNS,
  type UnaryFn,
} from './cell/graph.js';
export * as lang from './cell/lang.js';
export { Param, Vec, type VecLike } from './cell/lang.js';
export { columnSparseOffset, type MatExpr, matExprKeys, matExprNodes } from './cell/matexpr.js';
export {
  blockSize,
  describeStructure,
  type JacobianStructure,
  smallestExactBlock,
  sparsityPattern,
  structureFromBlockSize,
} from './cell/structure.js';
export type { VjpProgram } from './cell/vjp.js';
export type { ActivationName, ActivationSpec } from './cells/activations.js';
export * as cells from './cells/index.js';
export * from './errors.js';
export { type DeerResult, type DeerStats, deer, deerSync } from './solver/deer.js';
export type { StopReason } from './solver/engine.js';
export {
  type DeerEstimate,
  EXACT_ITERATIONS,
  ITERATION_OVERHEAD,
  EXPECTED_SWEEPS,
  MIN_SHOOTING_T,
  planShooting,
  planShootingUpFront,
  planSolve,
  QUASI_ITERATIONS,
  type CostOptions,
  type ShootingPlan,
  type SolvePlan,
  stepCost,
} from './solver/plan.js';
export { affineExponential, type MatrixOps } from './solver/expm.js';
export {
  type DeerGradients,
  type DeerGradResult,
  deerWithGrad,
  type GradStats,
  implicitVjp,
  implicitVjpSync,
  stepVjp,
  type VjpOptions,
} from './solver/grad.js';
export { type IvpOptions, type IvpResult, solveIvp } from './solver/ode.js';
export {
  type IvpGradients,
  type IvpGradOptions,
  type IvpGradResult,
  ivpVjp,
  STIFF_ADJOINT_LIMIT,
  solveIvpWithGrad,
} from './solver/ode-grad.js';
export { checkGrid, type OdeProblem } from './solver/ode-inputs.js';
export { type Dopri5Options, dopri5Solve as dopri5, type Rk4Options, rk4 } from './solver/ode-sequential.js';
export type { AbortSignalLike } from './solver/abort.js';
export {
  checkDeerOptions,
  checkOptionNames,
  DEFAULT_CLIP,
  DEFAULT_MAX_ITER,
  DEFAULT_TOLERANCE,
  type DeerOptions,
  type FallbackOption,
  flag,
  type InitialGuess,
  type IterationInfo,
  type JacobianOption,
  numberOption,
  type SolveOptions,
} from './solver/options.js';
export { sequential } from './solver/sequential.js';
export { checkCell, checkParamNames, type ParamsInput } from './solver/validate.js';
export { chooseWindow, type WindowBudget } from './solver/window.js';
export { Rng } from './util/random.js';
