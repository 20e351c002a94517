export {
  headGroupsFor,
  lossWeights,
  type OnnxEngineOptions,
  OnnxEsmEngine,
} from "./engine";
export { loadOrt, OrtSession, ortUnavailableReason } from "./runtime";
export {
  checkThreads,
  createEngine,
  defaultThreads,
  type EngineDecision,
  parseEngineChoice,
  resolveEngine,
} from "./select";
