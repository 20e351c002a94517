/** Serving: the predictor seam, input parsing, micro-batching and the HTTP server. */
export { type BatcherOptions, type BatcherStats, MicroBatcher } from "./batcher";
export {
  MB,
  resolveServerConfig,
  SERVER_DEFAULTS,
  type ServerConfig,
  type ServerLimits,
} from "./config";
export {
  FastaFormatError,
  HeadersTooLargeError,
  type HttpError,
  type HttpErrorBody,
  InvalidSequenceError,
  isServeError,
  MalformedRequestError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PredictionError,
  PredictionTimeoutError,
  QueueFullError,
  RequestTimeoutError,
  ServeError,
  ShuttingDownError,
  TooManySequencesError,
  toHttpError,
  UnsupportedMediaTypeError,
} from "./errors";
export {
  type FastaOptions,
  FastaParser,
  type FastaRecord,
  parseFasta,
  readFastaRecords,
} from "./fasta";
export {
  ACCEPTED_MEDIA_TYPES,
  type InputFormat,
  type ParsedInvocation,
  parseInvocation,
  parseMediaType,
} from "./inputs";
export { type Prediction, toPrediction } from "./prediction";
export {
  type ClassProbabilities,
  loadPredictor,
  type Predictor,
  type PredictorLoader,
  setPredictorLoader,
} from "./predictor";
export {
  type NormalisedSequence,
  type NormaliseOptions,
  normaliseSequence,
  RESIDUES,
  TOO_LONG_POLICIES,
  type TooLongPolicy,
} from "./sequences";
export {
  createServer,
  DEFAULT_GRACE_MS,
  type EsmKitServer,
  type ServerOptions,
} from "./server";
export { SHUTDOWN_SIGNALS, waitForShutdownSignal } from "./shutdown";
