/**
 * Server limits: explicit options win, then the SageMaker environment, then defaults.
 *
 * - `SAGEMAKER_MAX_PAYLOAD_IN_MB` (Batch Transform; 1 MB = 1,048,576 bytes) sets the
 *   body limit (0, SageMaker's "no limit, chunked", becomes its maximum of 100 MB); the
 *   real-time default is 6 MB.
 * - `SAGEMAKER_BATCH=true` (Batch Transform) lifts the per-request sequence limit (the
 *   payload limit still bounds it), makes the queue hold a full request from every
 *   concurrent transform, and allows an hour per request.
 * - `SAGEMAKER_MAX_CONCURRENT_TRANSFORMS` is reported back by /execution-parameters.
 */
import { ConfigError } from "../errors";
import { TOO_LONG_POLICIES, type TooLongPolicy } from "./sequences";

export const MB = 1024 * 1024;

export interface ServerLimits {
  /** Largest request body in bytes (default 6 MB, or SAGEMAKER_MAX_PAYLOAD_IN_MB). */
  maxPayloadBytes?: number;
  /** Most sequences in one request (default 64; 100,000 in Batch Transform mode). */
  maxSequencesPerRequest?: number;
  /** Sequences per predictor call (default 8). */
  maxBatchSize?: number;
  /** How long a sequence waits for others to fill a batch, ms (default 5). */
  maxWaitMs?: number;
  /** Sequences allowed to wait; beyond it requests get 503 + Retry-After (default 256). */
  maxQueue?: number;
  /** Per request, from queueing to answer, ms (default 30 s; 1 h in Batch Transform). */
  timeoutMs?: number;
  /** Sequences over the model's max length: "truncate" (default) or "reject" (422). */
  tooLong?: TooLongPolicy;
  /** What /execution-parameters asks Batch Transform for (default 2: one runs, one parses). */
  maxConcurrentTransforms?: number;
  /** Batch Transform mode (default: SAGEMAKER_BATCH === "true"). */
  batchMode?: boolean;
}

export type ServerConfig = Required<ServerLimits>;

export const SERVER_DEFAULTS = {
  maxPayloadBytes: 6 * MB,
  maxSequencesPerRequest: 64,
  batchMaxSequencesPerRequest: 100_000,
  maxBatchSize: 8,
  maxWaitMs: 5,
  maxQueue: 256,
  timeoutMs: 30_000,
  batchTimeoutMs: 3_600_000,
  maxConcurrentTransforms: 2,
} as const;

type Env = Record<string, string | undefined>;

function envNumber(env: Env, name: string, min: number, max: number, integer: boolean) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new ConfigError(
      `${name}=${JSON.stringify(raw)} is not valid; expected ${integer ? "an integer" : "a number"} from ${min} to ${max}`,
      { name, value: raw },
    );
  }
  return n;
}

function check(name: string, value: number, min: number, integer = true): number {
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new ConfigError(
      `${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got ${value}`,
      { name, value },
    );
  }
  return value;
}

export function resolveServerConfig(
  options: ServerLimits = {},
  env: Env = process.env,
): ServerConfig {
  const batchMode = options.batchMode ?? /^(true|1|yes)$/i.test(env.SAGEMAKER_BATCH ?? "");
  const payloadMb = envNumber(env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", 0, 100, false);
  const maxPayloadBytes = check(
    "maxPayloadBytes",
    options.maxPayloadBytes ??
      (payloadMb === undefined
        ? SERVER_DEFAULTS.maxPayloadBytes
        : Math.floor((payloadMb === 0 ? 100 : payloadMb) * MB)),
    1,
  );
  const maxConcurrentTransforms = check(
    "maxConcurrentTransforms",
    options.maxConcurrentTransforms ??
      envNumber(env, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", 1, 10_000, true) ??
      SERVER_DEFAULTS.maxConcurrentTransforms,
    1,
  );
  const maxSequencesPerRequest = check(
    "maxSequencesPerRequest",
    options.maxSequencesPerRequest ??
      (batchMode
        ? SERVER_DEFAULTS.batchMaxSequencesPerRequest
        : SERVER_DEFAULTS.maxSequencesPerRequest),
    1,
  );
  const maxQueue = check(
    "maxQueue",
    options.maxQueue ??
      (batchMode
        ? Math.max(SERVER_DEFAULTS.maxQueue, maxSequencesPerRequest * maxConcurrentTransforms)
        : SERVER_DEFAULTS.maxQueue),
    1,
  );
  if (maxQueue < maxSequencesPerRequest) {
    throw new ConfigError(
      `maxQueue (${maxQueue}) must be at least maxSequencesPerRequest (${maxSequencesPerRequest}), or a full request could never be queued`,
      { maxQueue, maxSequencesPerRequest },
    );
  }
  const tooLong = options.tooLong ?? "truncate";
  if (!TOO_LONG_POLICIES.includes(tooLong)) {
    throw new ConfigError(
      `tooLong must be one of ${TOO_LONG_POLICIES.join(", ")}, got ${JSON.stringify(tooLong)}`,
      { tooLong },
    );
  }
  return {
    maxPayloadBytes,
    maxSequencesPerRequest,
    maxBatchSize: check("maxBatchSize", options.maxBatchSize ?? SERVER_DEFAULTS.maxBatchSize, 1),
    maxWaitMs: check("maxWaitMs", options.maxWaitMs ?? SERVER_DEFAULTS.maxWaitMs, 0, false),
    maxQueue,
    timeoutMs: check(
      "timeoutMs",
      options.timeoutMs ?? (batchMode ? SERVER_DEFAULTS.batchTimeoutMs : SERVER_DEFAULTS.timeoutMs),
      1,
      false,
    ),
    tooLong,
    maxConcurrentTransforms,
    batchMode,
  };
}
