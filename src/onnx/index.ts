export {
  headGroupsFor,
  lossWeights,
  type OnnxEngineOptions,
  OnnxEsmEngine,
  type TokenBatch,
} from "./engine";
export { loadOrt, OrtSession, ortUnavailableReason } from "./runtime";
