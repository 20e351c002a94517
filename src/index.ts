/**
 * esmkit: fine-tune ESM-2 efficiently and serve it, from TypeScript.
 * The public API, re-exported explicitly.
 */
import { registerDefaults } from "./register-defaults";

// The s3:// store and the ESM-2 predictor loader (src/register-defaults.ts).
registerDefaults();

export * from "./aws";
export {
  activeBackend,
  BACKEND_NAMES,
  BACKEND_PACKAGES,
  type BackendChoice,
  type BackendInfo,
  type BackendName,
  type BackendOptions,
  describeBackend,
  ensureBackend,
  selectBackend,
} from "./backend";
export { type CsvRecord, readCsv } from "./data/csv";
export {
  classBalance,
  type DataFrame,
  labelBalance,
  labelRateBy,
  loadPrepared,
  type PreparedData,
  pl,
  preparedTask,
  toHtmlTable,
} from "./data/frame";
export { DEEPLOC_LOCATIONS, type LabelOptions } from "./data/labels";
export {
  DEEPLOC_REQUIRED,
  type PreparedTask,
  type PrepareOptions,
  type PrepareProgress,
  type PrepareResult,
  type PrepareStats,
  prepare,
  splitIndices,
  summariseLengths,
  type TargetSummary,
} from "./data/prepare";
export { iterativeStratification } from "./data/split";
export * from "./display";
export * from "./embed";
export * from "./engine";
export {
  AdapterError,
  BackendError,
  ConfigError,
  DataError,
  EsmKitError,
  isEsmKitError,
  StorageError,
  TokenizerError,
  WeightsError,
} from "./errors";
export * from "./export";
export {
  type OpenedInput,
  type OutputDir,
  openOutputDir,
  openRead,
  readText,
  registerStore,
  type Store,
} from "./io/storage";
export * from "./kernel";
export * from "./lora";
export * from "./model";
export {
  createEngine,
  type OnnxEngineOptions,
  OnnxEsmEngine,
  resolveEngine,
} from "./onnx";
export * from "./serve";
export {
  type EsmPredictor,
  type EsmPredictorOptions,
  loadEsmPredictor,
} from "./serve/model-predictor";
export {
  loadWorkerPredictor,
  type WorkerPredictor,
  type WorkerPredictorOptions,
} from "./serve/worker-predictor";
export {
  type BatchEncodeOptions,
  type BatchEncoding,
  type EncodeOptions,
  ESM2_VOCAB,
  EsmTokenizer,
} from "./tokenizer/esm-tokenizer";
export * from "./train";
export { type FineTuneOptions, type FineTuneResult, fineTune, loadBaseModel } from "./train/run";
