/**
 * Real-time endpoints: pack a model directory as model.tar.gz (files at the archive
 * root), upload it, create the SageMaker model, endpoint config and endpoint, wait for
 * InService; invoke it through the runtime; delete all three resources.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type {
  DescribeEndpointConfigOutput,
  DescribeEndpointOutput,
  ProductionVariant,
} from "@aws-sdk/client-sagemaker";
import { ConfigError } from "../errors";
import { WEIGHTS_INDEX_NAME, WEIGHTS_NAME } from "../model/pretrained";
import {
  type AwsOptions,
  sageMakerClient,
  sageMakerRuntimeClient,
  sageMakerRuntimeSdk,
  sageMakerSdk,
} from "./clients";
import { AwsError, awsCall, toAwsError } from "./errors";
import {
  dirPrefix,
  downloadPrefix,
  isS3Uri,
  objectSize,
  parseS3Uri,
  type S3TransferEvent,
  uploadFile,
} from "./s3";
import { checkName, pollUntil, uniqueName, type WaitOptions } from "./sagemaker";
import { packDirectory } from "./tar";

export const DEFAULT_ENDPOINT_INSTANCE = "ml.m5.large";
export const VARIANT_NAME = "AllTraffic";

export interface ArtifactOptions {
  /** Where to upload model.tar.gz: an s3:// object ending .tar.gz, or a prefix. */
  artifactUri?: string;
  aws?: AwsOptions;
  onProgress?: (e: S3TransferEvent) => void;
  onMessage?: (m: string) => void;
}

function checkModelDir(dir: string, shown: string) {
  const missing = ["config.json"].filter((f) => !existsSync(path.join(dir, f)));
  if (![WEIGHTS_NAME, WEIGHTS_INDEX_NAME].some((f) => existsSync(path.join(dir, f)))) {
    missing.push(WEIGHTS_NAME);
  }
  if (missing.length > 0) {
    throw new ConfigError(
      `${shown} is not a model directory (missing ${missing.join(", ")}); give the model/ folder written by "esmkit train" or a Hugging Face model directory`,
      { model: shown, missing },
    );
  }
}

/**
 * The S3 URI of a model.tar.gz for `model`: an s3://...tar.gz is used as it is (after
 * checking it exists); a local directory or an S3 prefix of one is packed (files at
 * the archive root) and uploaded to `artifactUri`.
 */
export async function modelArtifact(model: string, options: ArtifactOptions = {}): Promise<string> {
  const say = options.onMessage ?? (() => undefined);
  if (isS3Uri(model) && /\.tar\.gz$/.test(model)) {
    await objectSize(model, options);
    return model;
  }
  if (!options.artifactUri) {
    throw new ConfigError(
      `To deploy ${model}, say where to upload its model.tar.gz (artifactUri / --artifact s3://bucket/prefix/)`,
      { model },
    );
  }
  parseS3Uri(options.artifactUri);
  const target = /\.tar\.gz$/.test(options.artifactUri)
    ? options.artifactUri
    : `${dirPrefix(options.artifactUri)}model.tar.gz`;
  const work = await mkdtemp(path.join(tmpdir(), "esmkit-artifact-"));
  try {
    let dir = model;
    if (isS3Uri(model)) {
      dir = path.join(work, "model");
      say(`downloading ${model}`);
      await downloadPrefix(model, dir, options);
    } else if (!existsSync(model)) {
      throw new ConfigError(`Model directory ${model} does not exist`, { model });
    }
    checkModelDir(dir, model);
    const tarFile = path.join(work, "model.tar.gz");
    const packed = await packDirectory(dir, tarFile);
    say(`packed ${packed.entries.length} entries (${packed.bytes} bytes) -> ${target}`);
    await uploadFile(tarFile, target, { ...options, contentType: "application/gzip" });
    return target;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface ModelSpec extends ArtifactOptions {
  /** Local model directory, an S3 prefix of one, or the s3:// URI of a model.tar.gz. */
  model: string;
  /** ECR URI of the esmkit image (its `serve` entrypoint). */
  image: string;
  /** Execution role ARN (pulls the image, reads the artifact). */
  role: string;
  /** SageMaker model name (default <endpoint or esmkit>-<timestamp>). */
  name?: string;
  /** Container environment (e.g. ESMKIT_BACKEND, SAGEMAKER_* serving settings). */
  environment?: Record<string, string>;
  tags?: Record<string, string>;
}

/** Upload the artifact if needed and create a SageMaker model for the serve container. */
export async function createModel(
  spec: ModelSpec,
): Promise<{ modelName: string; modelDataUrl: string }> {
  const modelName = checkName("model", spec.name ?? uniqueName("esmkit"));
  const modelDataUrl = await modelArtifact(spec.model, spec);
  const client = sageMakerClient(spec.aws);
  const { CreateModelCommand } = sageMakerSdk();
  try {
    await awsCall("SageMaker CreateModel", { model: modelName }, () =>
      client.send(
        new CreateModelCommand({
          ModelName: modelName,
          ExecutionRoleArn: spec.role,
          PrimaryContainer: {
            Image: spec.image,
            ModelDataUrl: modelDataUrl,
            ...(spec.environment ? { Environment: spec.environment } : {}),
          },
          ...(spec.tags
            ? { Tags: Object.entries(spec.tags).map(([Key, Value]) => ({ Key, Value })) }
            : {}),
        }),
      ),
    );
  } finally {
    client.destroy();
  }
  return { modelName, modelDataUrl };
}

export interface DeploySpec extends ModelSpec {
  endpointName: string;
  /** Instance type (default ml.m5.large); ignored with `serverless`. */
  instanceType?: string;
  instanceCount?: number;
  /** A serverless endpoint instead of instances. */
  serverless?: { memorySizeMb: number; maxConcurrency: number };
  /** Wait for InService (default true). */
  wait?: boolean;
  waitOptions?: WaitOptions;
}

export interface DeployResult {
  endpointName: string;
  endpointConfigName: string;
  modelName: string;
  modelDataUrl: string;
  status: string;
}

function productionVariant(spec: DeploySpec, modelName: string): ProductionVariant {
  if (spec.serverless) {
    const { memorySizeMb, maxConcurrency } = spec.serverless;
    if (![1024, 2048, 3072, 4096, 5120, 6144].includes(memorySizeMb)) {
      throw new ConfigError(
        `Serverless memory must be one of 1024, 2048, 3072, 4096, 5120, 6144 MB, got ${memorySizeMb}`,
        { memorySizeMb },
      );
    }
    if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1 || maxConcurrency > 200) {
      throw new ConfigError(`Serverless max concurrency must be 1..200, got ${maxConcurrency}`, {
        maxConcurrency,
      });
    }
    return {
      VariantName: VARIANT_NAME,
      ModelName: modelName,
      ServerlessConfig: { MemorySizeInMB: memorySizeMb, MaxConcurrency: maxConcurrency },
    };
  }
  const count = spec.instanceCount ?? 1;
  if (!Number.isInteger(count) || count < 1) {
    throw new ConfigError(`instanceCount must be an integer >= 1, got ${count}`, { count });
  }
  return {
    VariantName: VARIANT_NAME,
    ModelName: modelName,
    InstanceType: (spec.instanceType ?? DEFAULT_ENDPOINT_INSTANCE) as never,
    InitialInstanceCount: count,
    InitialVariantWeight: 1,
  };
}

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; message?: string };
  return (
    (err.name === "ValidationException" || err.name === "ResourceNotFound") &&
    /could not find|does not exist|not found/i.test(err.message ?? "")
  );
}

export async function describeEndpoint(
  name: string,
  options: { aws?: AwsOptions } = {},
): Promise<DescribeEndpointOutput> {
  const client = sageMakerClient(options.aws);
  const { DescribeEndpointCommand } = sageMakerSdk();
  try {
    return await awsCall("SageMaker DescribeEndpoint", { endpoint: name }, () =>
      client.send(new DescribeEndpointCommand({ EndpointName: name })),
    );
  } finally {
    client.destroy();
  }
}

/** The endpoint's description, or undefined when there is no such endpoint. */
export async function findEndpoint(
  name: string,
  options: { aws?: AwsOptions } = {},
): Promise<DescribeEndpointOutput | undefined> {
  const client = sageMakerClient(options.aws);
  const { DescribeEndpointCommand } = sageMakerSdk();
  try {
    return await client.send(new DescribeEndpointCommand({ EndpointName: name }));
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw toAwsError("SageMaker DescribeEndpoint", e, { endpoint: name });
  } finally {
    client.destroy();
  }
}

/** Wait until the endpoint is InService; Failed or OutOfService throw with SageMaker's reason. */
export async function waitForEndpoint(
  name: string,
  options: WaitOptions = {},
): Promise<DescribeEndpointOutput> {
  const d = await pollUntil(
    "endpoint",
    name,
    () => describeEndpoint(name, options),
    (e) => ({ status: e.EndpointStatus ?? "Unknown", detail: e.FailureReason || undefined }),
    ["InService", "Failed", "OutOfService", "UpdateRollbackFailed"],
    { pollSeconds: 30, defaultTimeoutSeconds: 3600, ...options },
  );
  if (d.EndpointStatus !== "InService") {
    throw new AwsError(
      `Endpoint ${name} is ${d.EndpointStatus}${d.FailureReason ? `: ${d.FailureReason}` : ""}; see its CloudWatch logs (/aws/sagemaker/Endpoints/${name}), then "esmkit sagemaker delete --endpoint ${name}"`,
      { endpoint: name, status: d.EndpointStatus, failureReason: d.FailureReason },
    );
  }
  return d;
}

/**
 * Deploy a model to a new real-time endpoint: artifact, model, endpoint config (named
 * like the model) and endpoint, then (by default) wait for InService. If creating the
 * endpoint is refused, the model and config made for it are removed again.
 */
export async function deploy(spec: DeploySpec): Promise<DeployResult> {
  const endpointName = checkName("endpoint", spec.endpointName);
  const variant = productionVariant(spec, "placeholder"); // validate before uploading
  if (await findEndpoint(endpointName, spec)) {
    throw new ConfigError(
      `Endpoint ${endpointName} already exists; delete it first ("esmkit sagemaker delete --endpoint ${endpointName}") or choose another name`,
      { endpoint: endpointName },
    );
  }
  const name = spec.name ?? uniqueName(endpointName);
  const { modelName, modelDataUrl } = await createModel({ ...spec, name });
  const client = sageMakerClient(spec.aws);
  const sdk = sageMakerSdk();
  let configCreated = false;
  try {
    await awsCall("SageMaker CreateEndpointConfig", { endpointConfig: name }, () =>
      client.send(
        new sdk.CreateEndpointConfigCommand({
          EndpointConfigName: name,
          ProductionVariants: [{ ...variant, ModelName: modelName }],
        }),
      ),
    );
    configCreated = true;
    await awsCall("SageMaker CreateEndpoint", { endpoint: endpointName }, () =>
      client.send(
        new sdk.CreateEndpointCommand({ EndpointName: endpointName, EndpointConfigName: name }),
      ),
    );
  } catch (e) {
    // Best effort: leave nothing behind that the failed deploy made.
    if (configCreated) {
      await client
        .send(new sdk.DeleteEndpointConfigCommand({ EndpointConfigName: name }))
        .catch(() => undefined);
    }
    await client.send(new sdk.DeleteModelCommand({ ModelName: modelName })).catch(() => undefined);
    throw e;
  } finally {
    client.destroy();
  }
  const result: DeployResult = {
    endpointName,
    endpointConfigName: name,
    modelName,
    modelDataUrl,
    status: "Creating",
  };
  if (spec.wait !== false) {
    const d = await waitForEndpoint(endpointName, { aws: spec.aws, ...spec.waitOptions });
    result.status = d.EndpointStatus ?? "Unknown";
  }
  return result;
}

export interface InvokeOptions {
  /** Content-Type of the body (default application/json). */
  contentType?: string;
  accept?: string;
  /** X-Amzn-SageMaker-Custom-Attributes (<= 1024 characters). */
  customAttributes?: string;
  aws?: AwsOptions;
}

export interface InvokeResult {
  body: string;
  contentType?: string;
  invokedVariant?: string;
}

/** POST one body to the endpoint's /invocations through the SageMaker runtime. */
export async function invokeEndpoint(
  endpointName: string,
  body: string | Uint8Array,
  options: InvokeOptions = {},
): Promise<InvokeResult> {
  checkName("endpoint", endpointName);
  if (options.customAttributes && options.customAttributes.length > 1024) {
    throw new ConfigError("Custom attributes are limited to 1024 characters", {});
  }
  const client = sageMakerRuntimeClient(options.aws);
  const { InvokeEndpointCommand } = sageMakerRuntimeSdk();
  try {
    const res = await awsCall("SageMaker InvokeEndpoint", { endpoint: endpointName }, () =>
      client.send(
        new InvokeEndpointCommand({
          EndpointName: endpointName,
          Body: typeof body === "string" ? Buffer.from(body, "utf8") : body,
          ContentType: options.contentType ?? "application/json",
          ...(options.accept ? { Accept: options.accept } : {}),
          ...(options.customAttributes ? { CustomAttributes: options.customAttributes } : {}),
        }),
      ),
    );
    return {
      body: res.Body ? Buffer.from(res.Body).toString("utf8") : "",
      contentType: res.ContentType,
      invokedVariant: res.InvokedProductionVariant,
    };
  } finally {
    client.destroy();
  }
}

/** Classify sequences on an endpoint: `{"inputs": [...]}` in, the parsed JSON answer out. */
export async function predictOnEndpoint(
  endpointName: string,
  sequences: readonly string[],
  options: Omit<InvokeOptions, "contentType"> = {},
): Promise<unknown> {
  const res = await invokeEndpoint(endpointName, JSON.stringify({ inputs: sequences }), {
    ...options,
    contentType: "application/json",
    accept: options.accept ?? "application/json",
  });
  try {
    return JSON.parse(res.body);
  } catch (e) {
    throw new AwsError(
      `Endpoint ${endpointName} answered ${res.contentType ?? "an unknown type"} that is not JSON: ${JSON.stringify(res.body.slice(0, 200))}`,
      { endpoint: endpointName, contentType: res.contentType },
      { cause: e },
    );
  }
}

export interface DeleteResult {
  endpoint: string;
  endpointConfig?: string;
  models: string[];
}

/**
 * Delete an endpoint, its endpoint config and the models it serves (found by describing
 * them, so endpoints made elsewhere work too). Pieces already gone are skipped.
 */
export async function deleteEndpoint(
  endpointName: string,
  options: { aws?: AwsOptions; keepModels?: boolean } = {},
): Promise<DeleteResult> {
  checkName("endpoint", endpointName);
  const d = await findEndpoint(endpointName, options);
  if (!d) {
    throw new ConfigError(`There is no endpoint ${endpointName} (in this account and region)`, {
      endpoint: endpointName,
    });
  }
  const client = sageMakerClient(options.aws);
  const sdk = sageMakerSdk();
  const tolerate = async (
    operation: string,
    context: Record<string, unknown>,
    fn: () => Promise<unknown>,
  ) => {
    try {
      await fn();
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw toAwsError(operation, e, context);
    }
  };
  try {
    const configName = d.EndpointConfigName;
    let config: DescribeEndpointConfigOutput | undefined;
    if (configName) {
      await tolerate(
        "SageMaker DescribeEndpointConfig",
        { endpointConfig: configName },
        async () => {
          config = await client.send(
            new sdk.DescribeEndpointConfigCommand({ EndpointConfigName: configName }),
          );
        },
      );
    }
    const models = [
      ...new Set(
        (config?.ProductionVariants ?? [])
          .map((v) => v.ModelName)
          .filter((m): m is string => Boolean(m)),
      ),
    ];
    await tolerate("SageMaker DeleteEndpoint", { endpoint: endpointName }, () =>
      client.send(new sdk.DeleteEndpointCommand({ EndpointName: endpointName })),
    );
    let deletedConfig: string | undefined;
    if (configName) {
      const ok = await tolerate(
        "SageMaker DeleteEndpointConfig",
        { endpointConfig: configName },
        () => client.send(new sdk.DeleteEndpointConfigCommand({ EndpointConfigName: configName })),
      );
      if (ok) deletedConfig = configName;
    }
    const deletedModels: string[] = [];
    if (!options.keepModels) {
      for (const m of models) {
        const ok = await tolerate("SageMaker DeleteModel", { model: m }, () =>
          client.send(new sdk.DeleteModelCommand({ ModelName: m })),
        );
        if (ok) deletedModels.push(m);
      }
    }
    return { endpoint: endpointName, endpointConfig: deletedConfig, models: deletedModels };
  } finally {
    client.destroy();
  }
}
