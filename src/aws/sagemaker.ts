/**
 * SageMaker jobs: training jobs (the esmkit image's `train` entrypoint, S3 channels,
 * optional managed spot with checkpoints) and Batch Transform jobs (the `serve`
 * entrypoint over an S3 prefix), plus waiting for any resource with status updates.
 * Request builders are pure functions, so a notebook can show what would be sent.
 * Endpoints (deploy, invoke, delete) are in sagemaker-endpoint.ts.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type {
  CreateTrainingJobRequest,
  CreateTransformJobRequest,
  DescribeTrainingJobResponse,
  DescribeTransformJobResponse,
} from "@aws-sdk/client-sagemaker";
import { ConfigError } from "../errors";
import { type AwsOptions, sageMakerClient, sageMakerSdk } from "./clients";
import { AwsError, awsCall } from "./errors";
import { normaliseHyperparameters } from "./hyperparameters";
import { parseS3Uri } from "./s3";

/** Where the container keeps checkpoints that SageMaker syncs with S3. */
export const CONTAINER_CHECKPOINT_DIR = "/opt/ml/checkpoints";
export const DEFAULT_TRAINING_INSTANCE = "ml.m5.xlarge";
export const DEFAULT_TRANSFORM_INSTANCE = "ml.m5.xlarge";

// ---------------------------------------------------------------- names and waiting

const NAME = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;

/** Check a SageMaker resource name (1-63 letters, digits and inner hyphens). */
export function checkName(what: string, name: string): string {
  if (!NAME.test(name)) {
    throw new ConfigError(
      `Invalid ${what} name ${JSON.stringify(name)}: use 1-63 letters, digits and hyphens, starting and ending with a letter or digit`,
      { name },
    );
  }
  return name;
}

/** `base-YYYYMMDD-HHMMSS-mmm`, cut to SageMaker's 63 characters. */
export function uniqueName(base: string, now = new Date()): string {
  const iso = now.toISOString(); // 2024-01-02T03:04:05.678Z
  const stamp = `${iso.slice(0, 10).replace(/-/g, "")}-${iso.slice(11, 19).replace(/:/g, "")}-${iso.slice(20, 23)}`;
  const head = base
    .replace(/[^a-zA-Z0-9-]/g, "-")
    .slice(0, 63 - stamp.length - 1)
    .replace(/-+$/, "");
  return checkName("resource", `${head || "esmkit"}-${stamp}`);
}

export interface StatusUpdate {
  /** "training job", "transform job", "endpoint". */
  resource: string;
  name: string;
  status: string;
  /** Secondary status or message, when SageMaker gives one. */
  detail?: string;
  elapsedSeconds: number;
}

export interface WaitOptions {
  /** Seconds between DescribeX calls (default 15). */
  pollSeconds?: number;
  /** Give up after this many seconds (default: never for jobs, 1 hour for endpoints). */
  timeoutSeconds?: number;
  /** Called whenever the status or its detail changes. */
  onStatus?: (s: StatusUpdate) => void;
  signal?: AbortSignal;
  aws?: AwsOptions;
}

/** Describe until a terminal status; returns the last description. */
export async function pollUntil<T>(
  resource: string,
  name: string,
  describe: () => Promise<T>,
  read: (d: T) => { status: string; detail?: string },
  terminal: readonly string[],
  options: WaitOptions & { defaultTimeoutSeconds?: number } = {},
): Promise<T> {
  const started = Date.now();
  const pollMs = Math.max(0, (options.pollSeconds ?? 15) * 1000);
  const timeout = options.timeoutSeconds ?? options.defaultTimeoutSeconds;
  let last = "";
  for (;;) {
    const d = await describe();
    const { status, detail } = read(d);
    const elapsedSeconds = Math.round((Date.now() - started) / 1000);
    const key = `${status}|${detail ?? ""}`;
    if (key !== last) {
      last = key;
      options.onStatus?.({ resource, name, status, detail, elapsedSeconds });
    }
    if (terminal.includes(status)) return d;
    if (timeout !== undefined && elapsedSeconds >= timeout) {
      throw new AwsError(
        `Gave up waiting for ${resource} ${name} after ${elapsedSeconds} s (status ${status}); it keeps running`,
        { resource, name, status },
      );
    }
    await sleep(pollMs, undefined, { signal: options.signal });
  }
}

// ---------------------------------------------------------------- training jobs

export interface TrainingJobSpec {
  /** Job name (default esmkit-train-<timestamp>). */
  name?: string;
  /** ECR URI of the esmkit image. */
  image: string;
  /** Execution role ARN SageMaker assumes (reads the channels, writes the output). */
  role: string;
  /** S3 prefix of prepared data (train.parquet, test.parquet): the `train` channel. */
  train: string;
  /** More channels by name, e.g. `{ model: "s3://bucket/esm2_t12/" }` for the base model. */
  channels?: Record<string, string>;
  /** S3 prefix for the output; SageMaker writes <outputPath>/<job>/output/model.tar.gz. */
  outputPath: string;
  /** esmkit train settings by hyperparameter name (`max_steps`, `lora_rank`, ...). */
  hyperparameters?: Record<string, string | number | boolean>;
  instanceType?: string;
  /** EBS volume per instance in GB (default 30). */
  volumeSizeGb?: number;
  /** Stop the job after this many seconds of training (default 24 h). */
  maxRuntimeSeconds?: number;
  /** Managed spot training; `maxWaitSeconds` (default twice maxRuntimeSeconds) includes waiting for capacity. */
  spot?: boolean | { maxWaitSeconds?: number };
  /** S3 prefix synced with /opt/ml/checkpoints: a spot job resumes from there. */
  checkpointS3Uri?: string;
  environment?: Record<string, string>;
  tags?: Record<string, string>;
  aws?: AwsOptions;
}

function s3Prefix(what: string, uri: string): string {
  parseS3Uri(uri);
  if (!/^s3:\/\//.test(uri)) {
    throw new ConfigError(`${what} must be an s3:// URI, got ${JSON.stringify(uri)}`, { uri });
  }
  return uri;
}

function tagList(tags: Record<string, string> | undefined) {
  return tags ? Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) : undefined;
}

function positiveInt(what: string, v: number | undefined, fallback: number): number {
  const n = v ?? fallback;
  if (!Number.isInteger(n) || n < 1) {
    throw new ConfigError(`${what} must be an integer >= 1, got ${v}`, { value: v });
  }
  return n;
}

/** The CreateTrainingJob request for `spec` (validated; nothing is sent). */
export function trainingJobRequest(spec: TrainingJobSpec): CreateTrainingJobRequest {
  const name = checkName("training job", spec.name ?? uniqueName("esmkit-train"));
  const channels: Record<string, string> = { train: spec.train, ...spec.channels };
  for (const [c, uri] of Object.entries(channels)) {
    if (!/^[A-Za-z0-9.\-_]{1,64}$/.test(c))
      throw new ConfigError(`Invalid channel name ${JSON.stringify(c)}`, { channel: c });
    s3Prefix(`channel ${c}`, uri);
  }
  const maxRuntime = positiveInt("maxRuntimeSeconds", spec.maxRuntimeSeconds, 86_400);
  const spot = spec.spot === true ? {} : spec.spot || undefined;
  let maxWait: number | undefined;
  if (spot) {
    maxWait = positiveInt("maxWaitSeconds", spot.maxWaitSeconds, 2 * maxRuntime);
    if (maxWait < maxRuntime) {
      throw new ConfigError(
        `maxWaitSeconds (${maxWait}) must be >= maxRuntimeSeconds (${maxRuntime}) for spot training`,
        { maxWait, maxRuntime },
      );
    }
  }
  return {
    TrainingJobName: name,
    AlgorithmSpecification: { TrainingImage: spec.image, TrainingInputMode: "File" },
    RoleArn: spec.role,
    HyperParameters: normaliseHyperparameters(spec.hyperparameters ?? {}),
    InputDataConfig: Object.entries(channels).map(([ChannelName, S3Uri]) => ({
      ChannelName,
      DataSource: {
        S3DataSource: { S3DataType: "S3Prefix", S3Uri, S3DataDistributionType: "FullyReplicated" },
      },
      InputMode: "File",
    })),
    OutputDataConfig: { S3OutputPath: s3Prefix("outputPath", spec.outputPath) },
    ResourceConfig: {
      InstanceType: (spec.instanceType ?? DEFAULT_TRAINING_INSTANCE) as never,
      // One instance: esmkit trains on a single host (the container refuses more).
      InstanceCount: 1,
      VolumeSizeInGB: positiveInt("volumeSizeGb", spec.volumeSizeGb, 30),
    },
    StoppingCondition: {
      MaxRuntimeInSeconds: maxRuntime,
      ...(maxWait !== undefined ? { MaxWaitTimeInSeconds: maxWait } : {}),
    },
    ...(spot ? { EnableManagedSpotTraining: true } : {}),
    ...(spec.checkpointS3Uri
      ? {
          CheckpointConfig: {
            S3Uri: s3Prefix("checkpointS3Uri", spec.checkpointS3Uri),
            LocalPath: CONTAINER_CHECKPOINT_DIR,
          },
        }
      : {}),
    ...(spec.environment ? { Environment: spec.environment } : {}),
    ...(spec.tags ? { Tags: tagList(spec.tags) } : {}),
  };
}

export interface CreatedJob<R> {
  name: string;
  arn: string;
  request: R;
}

export async function createTrainingJob(
  spec: TrainingJobSpec,
): Promise<CreatedJob<CreateTrainingJobRequest>> {
  const request = trainingJobRequest(spec);
  const client = sageMakerClient(spec.aws);
  const { CreateTrainingJobCommand } = sageMakerSdk();
  try {
    const res = await awsCall("SageMaker CreateTrainingJob", { job: request.TrainingJobName }, () =>
      client.send(new CreateTrainingJobCommand(request)),
    );
    return { name: request.TrainingJobName!, arn: res.TrainingJobArn!, request };
  } finally {
    client.destroy();
  }
}

export async function describeTrainingJob(
  name: string,
  options: { aws?: AwsOptions } = {},
): Promise<DescribeTrainingJobResponse> {
  const client = sageMakerClient(options.aws);
  const { DescribeTrainingJobCommand } = sageMakerSdk();
  try {
    return await awsCall("SageMaker DescribeTrainingJob", { job: name }, () =>
      client.send(new DescribeTrainingJobCommand({ TrainingJobName: name })),
    );
  } finally {
    client.destroy();
  }
}

/**
 * Follow a training job to Completed, Failed or Stopped. With `throwOnFailure` (the
 * default) a job that did not complete throws an AwsError with SageMaker's reason.
 */
export async function waitForTrainingJob(
  name: string,
  options: WaitOptions & { throwOnFailure?: boolean } = {},
): Promise<DescribeTrainingJobResponse> {
  const d = await pollUntil(
    "training job",
    name,
    () => describeTrainingJob(name, options),
    (j) => {
      const transitions = j.SecondaryStatusTransitions ?? [];
      const message = transitions[transitions.length - 1]?.StatusMessage;
      const secondary = j.SecondaryStatus;
      return {
        status: j.TrainingJobStatus ?? "Unknown",
        detail: [secondary !== j.TrainingJobStatus ? secondary : undefined, message]
          .filter(Boolean)
          .join(": "),
      };
    },
    ["Completed", "Failed", "Stopped"],
    options,
  );
  if (options.throwOnFailure !== false && d.TrainingJobStatus !== "Completed") {
    throw new AwsError(
      `Training job ${name} ${d.TrainingJobStatus?.toLowerCase()}${d.FailureReason ? `: ${d.FailureReason}` : ""}`,
      { job: name, status: d.TrainingJobStatus, failureReason: d.FailureReason },
    );
  }
  return d;
}

// ---------------------------------------------------------------- batch transform

export interface TransformJobSpec {
  /** Job name (default esmkit-transform-<timestamp>). */
  name?: string;
  /** An existing SageMaker model (see `createModel` / `deploy`). */
  modelName: string;
  /** S3 prefix (every object under it) or one object. */
  input: string;
  /** S3 prefix for the results (<input object name>.out). */
  output: string;
  /** Input type: application/jsonlines (default), application/json or text/x-fasta. */
  contentType?: string;
  /** Line (default: one record per line) or None (one record per object, e.g. FASTA). */
  splitType?: "Line" | "None";
  /** MultiRecord (default: many lines per request) or SingleRecord. */
  batchStrategy?: "MultiRecord" | "SingleRecord";
  /** Output type (default application/jsonlines). */
  accept?: string;
  /** Request size limit in MB (default 6, at most 100). */
  maxPayloadMb?: number;
  maxConcurrentTransforms?: number;
  instanceType?: string;
  instanceCount?: number;
  environment?: Record<string, string>;
  /**
   * Embeddings instead of class probabilities: the serve container's embeddings mode
   * (ESMKIT_SERVE_MODE=embed), with its pooling and hidden state (default: mean over
   * residues, the last hidden state). See src/serve/embeddings.ts.
   */
  embed?: boolean | { pooling?: "mean" | "cls"; layer?: number };
  tags?: Record<string, string>;
  aws?: AwsOptions;
}

/** The serve container's environment for `spec.embed` (empty without it). */
export function embeddingEnvironment(embed: TransformJobSpec["embed"]): Record<string, string> {
  if (!embed) return {};
  const o = embed === true ? {} : embed;
  if (o.pooling !== undefined && o.pooling !== "mean" && o.pooling !== "cls") {
    throw new ConfigError(`embed pooling must be mean or cls, got ${JSON.stringify(o.pooling)}`, {
      pooling: o.pooling,
    });
  }
  if (o.layer !== undefined && !Number.isInteger(o.layer)) {
    throw new ConfigError(`embed layer must be an integer, got ${o.layer}`, { layer: o.layer });
  }
  return {
    ESMKIT_SERVE_MODE: "embed",
    ...(o.pooling ? { ESMKIT_EMBED_POOLING: o.pooling } : {}),
    ...(o.layer !== undefined ? { ESMKIT_EMBED_LAYER: String(o.layer) } : {}),
  };
}

/** The CreateTransformJob request for `spec` (validated; nothing is sent). */
export function transformJobRequest(spec: TransformJobSpec): CreateTransformJobRequest {
  const name = checkName("transform job", spec.name ?? uniqueName("esmkit-transform"));
  checkName("model", spec.modelName);
  const input = s3Prefix("input", spec.input);
  const maxPayload = positiveInt("maxPayloadMb", spec.maxPayloadMb, 6);
  if (maxPayload > 100)
    throw new ConfigError(`maxPayloadMb must be <= 100, got ${maxPayload}`, { maxPayload });
  const splitType = spec.splitType ?? "Line";
  const batchStrategy = spec.batchStrategy ?? "MultiRecord";
  return {
    TransformJobName: name,
    ModelName: spec.modelName,
    BatchStrategy: batchStrategy,
    MaxPayloadInMB: maxPayload,
    ...(spec.maxConcurrentTransforms
      ? {
          MaxConcurrentTransforms: positiveInt(
            "maxConcurrentTransforms",
            spec.maxConcurrentTransforms,
            1,
          ),
        }
      : {}),
    TransformInput: {
      DataSource: {
        // S3Prefix also covers a single object: its key is a prefix of itself.
        S3DataSource: { S3DataType: "S3Prefix", S3Uri: input },
      },
      ContentType: spec.contentType ?? "application/jsonlines",
      SplitType: splitType,
      CompressionType: "None",
    },
    TransformOutput: {
      S3OutputPath: s3Prefix("output", spec.output),
      Accept: spec.accept ?? "application/jsonlines",
      AssembleWith: splitType === "Line" ? "Line" : "None",
    },
    TransformResources: {
      InstanceType: (spec.instanceType ?? DEFAULT_TRANSFORM_INSTANCE) as never,
      InstanceCount: positiveInt("instanceCount", spec.instanceCount, 1),
    },
    // The serve container reads these (see docker/serve and the serving spec).
    Environment: {
      SAGEMAKER_MAX_PAYLOAD_IN_MB: String(maxPayload),
      SAGEMAKER_BATCH_STRATEGY: batchStrategy === "MultiRecord" ? "MULTI_RECORD" : "SINGLE_RECORD",
      ...embeddingEnvironment(spec.embed),
      ...spec.environment,
    },
    ...(spec.tags ? { Tags: tagList(spec.tags) } : {}),
  };
}

export async function createTransformJob(
  spec: TransformJobSpec,
): Promise<CreatedJob<CreateTransformJobRequest>> {
  const request = transformJobRequest(spec);
  const client = sageMakerClient(spec.aws);
  const { CreateTransformJobCommand } = sageMakerSdk();
  try {
    const res = await awsCall(
      "SageMaker CreateTransformJob",
      { job: request.TransformJobName },
      () => client.send(new CreateTransformJobCommand(request)),
    );
    return { name: request.TransformJobName!, arn: res.TransformJobArn!, request };
  } finally {
    client.destroy();
  }
}

export async function describeTransformJob(
  name: string,
  options: { aws?: AwsOptions } = {},
): Promise<DescribeTransformJobResponse> {
  const client = sageMakerClient(options.aws);
  const { DescribeTransformJobCommand } = sageMakerSdk();
  try {
    return await awsCall("SageMaker DescribeTransformJob", { job: name }, () =>
      client.send(new DescribeTransformJobCommand({ TransformJobName: name })),
    );
  } finally {
    client.destroy();
  }
}

/** Follow a transform job to Completed, Failed or Stopped (throwing unless Completed by default). */
export async function waitForTransformJob(
  name: string,
  options: WaitOptions & { throwOnFailure?: boolean } = {},
): Promise<DescribeTransformJobResponse> {
  const d = await pollUntil(
    "transform job",
    name,
    () => describeTransformJob(name, options),
    (j) => ({ status: j.TransformJobStatus ?? "Unknown", detail: j.FailureReason || undefined }),
    ["Completed", "Failed", "Stopped"],
    options,
  );
  if (options.throwOnFailure !== false && d.TransformJobStatus !== "Completed") {
    throw new AwsError(
      `Transform job ${name} ${d.TransformJobStatus?.toLowerCase()}${d.FailureReason ? `: ${d.FailureReason}` : ""}`,
      { job: name, status: d.TransformJobStatus, failureReason: d.FailureReason },
    );
  }
  return d;
}
