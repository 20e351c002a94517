/** ESM-2 model: config, TensorFlow.js encoder and heads, checkpoints in and out. */
export {
  customEsmConfig,
  ESM2_PRESET_NAMES,
  ESM2_PRESETS,
  type Esm2PresetName,
  type EsmConfig,
  esm2Config,
  esmConfigJsonText,
  esmConfigToJson,
  headDim,
  parseEsmConfig,
  validateConfig,
} from "./config";
export {
  type AttentionImpl,
  Esm2Model,
  type Esm2ModelOptions,
  type EsmInputs,
  type EsmOutputs,
  gelu,
  LayerNorm,
  Linear,
  type LinearAdapter,
  type Pooling,
} from "./esm2";
export {
  cachedFile,
  type DownloadProgress,
  type HubOptions,
  type HubSettings,
  hubDownload,
  hubSettings,
  repoCacheDir,
  terminalProgress,
} from "./hub";
export {
  defaultInvFreq,
  INV_FREQ_KEY,
  initialValues,
  type ParamGroup,
  type ParamInit,
  type ParamSpec,
  parameterSpecs,
  toModelTensor,
} from "./parameters";
export {
  type CheckpointFiles,
  CheckpointSource,
  type FromPretrainedOptions,
  fromPretrained,
  resolveCheckpoint,
  type SavePretrainedOptions,
  savePretrained,
} from "./pretrained";
export {
  readSafetensors,
  SafetensorsFile,
  type TensorInfo,
  type TensorToWrite,
  writeSafetensors,
} from "./safetensors";
export {
  type LoadOptions,
  type LoadReport,
  loadParameters,
  type MappedKey,
  mapCheckpointKey,
  type StateDictEntry,
  stateDict,
  type TensorSource,
} from "./weights";
