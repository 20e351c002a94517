/** LoRA as PEFT does it, and PEFT adapter files. */
export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  loadAdapter,
  peftConfigJson,
  readAdapterConfig,
  saveAdapter,
} from "./adapter-io";
export {
  type AdaptableLinear,
  type AdaptableModel,
  applyLora,
  DEFAULT_LORA,
  exclusionReason,
  type LoraConfig,
  LoraModel,
  loraKeys,
  matchedModules,
  matchesTarget,
  type ParameterReport,
  resolveLoraConfig,
  savedModuleOf,
  type TargetReport,
  targetReport,
} from "./lora";
export {
  adapterBase,
  isAdapterDir,
  loadMergedAdapter,
  type MergedAdapterOptions,
} from "./merged";
