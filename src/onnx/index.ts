export {
  headGroupsFor,
  lossWeights,
  type OnnxEngineOptions,
  OnnxEsmEngine,
} from "./engine";
export { loadOrt, OrtSession, ortUnavailableReason } from "./runtime";
export {
  checkThreads,
  defaultThreads,
  ENGINE_CHOICES,
  type EngineChoice,
  type EngineDecision,
  type EngineName,
  parseEngineChoice,
  resolveEngine,
} from "./select";
