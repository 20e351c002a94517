/**
 * esmkit: fine-tune ESM-2 efficiently and serve it, from TypeScript.
 * The public API, re-exported explicitly.
 */
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
