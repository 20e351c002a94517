/** The engine interface both engines implement, their capabilities, the tasks, the tfjs engine. */
export {
  checkTokenBatch,
  ENGINE_CAPABILITIES,
  ENGINE_CHOICES,
  type EngineCapabilities,
  type EngineChoice,
  type EngineName,
  type EngineNeeds,
  type EsmEngine,
  type MicroBatch,
  requireCapabilities,
  type StepOptions,
  type StepResult,
  type TokenBatch,
} from "./engine";
export { type CrossEntropyOptions, crossEntropy } from "./loss";
export { checkLabels, DEFAULT_TASK, TASKS, type TaskLoss, type TaskName } from "./task";
export {
  type ClassifierModel,
  forwardHidden,
  forwardLogits,
  lossAndGradients,
  TfjsEngine,
} from "./tfjs-engine";
