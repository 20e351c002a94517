/** Training primitives: optimizer, schedule, clipping, loss, metrics, batching, I/O. */

export type { BceOptions, LossAndGradient } from "../engine/loss";
export {
  bceWithLogits,
  bceWithLogitsGrad,
  crossEntropyGrad,
  mseGrad,
  mseLoss,
} from "../engine/loss";
export { balancedClassWeights, balancedPositiveWeights } from "../util/class-weights";
export {
  BINARY_TASK,
  checkHeadMatches,
  checkTask,
  describeTask,
  isProblemType,
  PROBLEM_TYPES,
  type ProblemType,
  type TaskSpec,
  taskOfConfig,
} from "../util/task";
export type { Batch, BatchPlanOptions, Example } from "./batching";
export {
  batchesPerEpoch,
  collate,
  epochBatches,
  epochSeed,
  PAD_ID,
  planBatches,
} from "./batching";
export type { CheckpointData, CheckpointInfo, TensorRecord } from "./checkpoint-io";
export {
  checkpointPath,
  isCompleteCheckpoint,
  latestCheckpoint,
  listCheckpoints,
  pruneCheckpoints,
  readCheckpoint,
  removeStaleTemporaries,
  saveCheckpoint,
  writeCheckpoint,
} from "./checkpoint-io";
export type { ClipResult } from "./clip";
export { clipGradNorm, globalGradNorm } from "./clip";
export { type EvalResult, evaluate } from "./evaluate";
export type { HistoryEvent, HistoryWriterOptions } from "./history";
export { HistoryWriter, parseHistory, readHistory, truncateHistory } from "./history";
export type {
  BinaryMetrics,
  ClassScores,
  LabelScores,
  MultiClassMetrics,
  MultiLabelMetrics,
  RegressionMetrics,
  RocCurve,
  TargetScores,
} from "./metrics";
export {
  accuracy,
  averageRanks,
  binaryMetrics,
  confusionMatrix,
  matthewsCorrcoef,
  mccFromConfusion,
  multiClassMetrics,
  multiLabelMetrics,
  pearson,
  predictFromScores,
  regressionMetrics,
  rocAuc,
  rocCurve,
  spearman,
} from "./metrics";
export type { AdamWOptions, AdamWParamState, AdamWState } from "./optimizer";
export {
  AdamW,
  adamWStateFromRecords,
  adamWStateToRecords,
  isDecayParameter,
} from "./optimizer";
export { type OpenRunOptions, openRun, RunMismatchError, type RunStart } from "./run-folder";
export {
  diffIdentity,
  IDENTITY_LABELS,
  type IdentityDifference,
  type RunIdentity,
  SAFE_TO_CHANGE_ON_RESUME,
} from "./run-identity";
export { acquireRunLock, type RunLock, RunLockedError } from "./run-lock";
export type { LinearScheduleOptions, LrSchedule } from "./schedule";
export {
  linearScheduleWithWarmup,
  linearWarmupLambda,
  resolveWarmupSteps,
} from "./schedule";
export {
  DEFAULT_TRAIN_CONFIG,
  type TrainConfig,
  type TrainEvent,
  type TrainOptions,
  type TrainResult,
  train,
} from "./trainer";
