/**
 * `esmkit sagemaker train|deploy|invoke|delete|transform|describe`: the AWS workflow from
 * the shell, each subcommand a thin layer over a library function in src/aws (which is
 * loaded only when a subcommand runs). Results go to stdout as JSON, progress to stderr.
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { AwsOptions } from "../aws/clients";
import type { S3TransferEvent } from "../aws/s3";
import type { StatusUpdate } from "../aws/sagemaker";
import { ConfigError } from "../errors";
import type { Command } from "./main";
import { numberFlag } from "./main";
import { transferPrinter } from "./progress";

const COMMON = `  --region NAME             AWS region (default: AWS_REGION / the profile)
  --quiet                   no progress on stderr
Credentials come from the standard chain (environment, profile, SSO, role);
AWS_ENDPOINT_URL points the clients at an S3/SageMaker-compatible endpoint.`;

const USAGES: Record<string, string> = {
  train: `Usage: esmkit sagemaker train --image URI --role ARN --train S3 --output S3 [options]

Create a SageMaker training job that runs "esmkit train" in the esmkit image.

  --image URI               ECR image with the esmkit train entrypoint     required
  --role ARN                execution role                                 required
  --train S3                prepared data (output of "esmkit prepare")     required
  --output S3               output prefix (<output>/<job>/output/model.tar.gz)  required
  --name NAME               job name                       esmkit-train-<time>
  --hp KEY=VALUE            hyperparameter, repeatable (max_steps=200, lora_rank=8, ...;
                            see docs/aws.md); checked before the job is created
  --channel NAME=S3         another input channel, repeatable (model=S3 for the base model)
  --instance-type TYPE      ml.m5.xlarge
  --volume-gb N             30
  --max-runtime SECONDS     86400
  --spot                    managed spot training
  --max-wait SECONDS        spot: wait for capacity + run (default 2 x max runtime)
  --checkpoint S3           prefix synced with /opt/ml/checkpoints (spot resumes from it)
  --env KEY=VALUE           container environment, repeatable
  --tag KEY=VALUE           resource tag, repeatable
  --wait                    follow the job to the end (exit 1 unless it completes)
  --poll SECONDS            15
${COMMON}
`,
  deploy: `Usage: esmkit sagemaker deploy --model DIR|S3 --endpoint NAME --image URI --role ARN [options]

Pack the model as model.tar.gz (files at the archive root), upload it, create the model,
endpoint config and endpoint, and wait until it is InService.

  --model DIR|S3            model directory, S3 prefix of one, or s3://.../model.tar.gz  required
  --endpoint NAME           endpoint name                                  required
  --image URI               ECR image with the esmkit serve entrypoint     required
  --role ARN                execution role                                 required
  --artifact S3             where to upload model.tar.gz (an object or a prefix)
                            required unless --model is already a .tar.gz in S3
  --instance-type TYPE      ml.m5.large
  --instance-count N        1
  --serverless-memory MB    serverless endpoint (1024..6144) instead of instances
  --serverless-concurrency N                                                5
  --env KEY=VALUE           container environment, repeatable
  --tag KEY=VALUE           resource tag, repeatable
  --no-wait                 return once the endpoint is being created
  --poll SECONDS            30
${COMMON}
`,
  invoke: `Usage: esmkit sagemaker invoke --endpoint NAME (--sequence S ... | --fasta FILE | --body FILE) [options]

Send one request to an endpoint and print its answer.

  --endpoint NAME           endpoint name                                  required
  --sequence S              a sequence, repeatable: {"inputs": [...]} as application/json
  --fasta FILE|URL|S3       FASTA sent as text/x-fasta
  --body FILE|URL|S3        a body sent as is, with --content-type
  --content-type TYPE       application/json
  --accept TYPE             response type
  --custom-attributes S     X-Amzn-SageMaker-Custom-Attributes
${COMMON}
`,
  delete: `Usage: esmkit sagemaker delete --endpoint NAME [--keep-model]

Delete an endpoint, its endpoint config and the models it serves.

  --endpoint NAME           endpoint name                                  required
  --keep-model              keep the SageMaker models (e.g. for transform jobs)
${COMMON}
`,
  transform: `Usage: esmkit sagemaker transform --input S3 --output S3 (--model-name NAME | --model DIR|S3 --image URI --role ARN) [options]

Create a Batch Transform job over every object under an S3 prefix (JSON Lines by
default: one {"inputs": "SEQ"} per line, one prediction line out per line in).

  --input S3                input prefix or object                         required
  --output S3               output prefix                                  required
  --model-name NAME         an existing SageMaker model (e.g. from deploy)
  --model DIR|S3            or: create a model from this (with --image, --role, --artifact)
  --image URI, --role ARN, --artifact S3    as for deploy
  --name NAME               job name                   esmkit-transform-<time>
  --content-type TYPE       application/jsonlines | application/json | text/x-fasta
  --split-type Line|None    Line
  --batch-strategy MultiRecord|SingleRecord                         MultiRecord
  --max-payload-mb N        6
  --max-concurrent N        concurrent requests per instance
  --instance-type TYPE      ml.m5.xlarge
  --instance-count N        1
  --env KEY=VALUE, --tag KEY=VALUE
  --wait                    follow the job to the end (exit 1 unless it completes)
  --poll SECONDS            15
${COMMON}
`,
  describe: `Usage: esmkit sagemaker describe (--endpoint NAME | --training-job NAME | --transform-job NAME)

Print SageMaker's description of a resource as JSON.
${COMMON}
`,
};

const USAGE = `Usage: esmkit sagemaker <train|deploy|invoke|delete|transform|describe> [options]

  train       create a training job (the esmkit image's train entrypoint); --wait follows it
  deploy      model directory -> model.tar.gz -> model, endpoint config, endpoint (InService)
  invoke      send sequences or a body to an endpoint
  delete      delete an endpoint with its endpoint config and models
  transform   Batch Transform over an S3 prefix
  describe    show an endpoint, training job or transform job

Run "esmkit sagemaker help <subcommand>" for its options. See docs/aws.md for the
image, the IAM policies and recipes.
`;

/** KEY=VALUE flags into an object; a ConfigError names the flag and the bad entry. */
export function keyValues(flag: string, entries: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries ?? []) {
    const i = e.indexOf("=");
    if (i <= 0) throw new ConfigError(`--${flag} expects KEY=VALUE, got "${e}"`, { flag });
    out[e.slice(0, i).trim()] = e.slice(i + 1);
  }
  return out;
}

function maybe<T extends object>(o: T): T | undefined {
  return Object.keys(o).length ? o : undefined;
}

function reporters(quiet: boolean | undefined) {
  return {
    onStatus(s: StatusUpdate) {
      if (quiet) return;
      process.stderr.write(
        `[${s.elapsedSeconds}s] ${s.resource} ${s.name}: ${s.status}${s.detail ? ` (${s.detail})` : ""}\n`,
      );
    },
    onTransfer: transferPrinter(quiet) as (e: S3TransferEvent) => void,
    say(m: string) {
      if (!quiet) process.stderr.write(`${m}\n`);
    },
  };
}

function print(value: unknown) {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const COMMON_OPTIONS = {
  region: { type: "string" },
  quiet: { type: "boolean" },
} as const;

function awsOf(v: { region?: string }): AwsOptions | undefined {
  return v.region ? { region: v.region } : undefined;
}

function required(sub: string, v: Record<string, unknown>, names: string[]): void {
  const missing = names.filter((n) => v[n] === undefined);
  if (missing.length) {
    throw new ConfigError(
      `esmkit sagemaker ${sub}: ${missing.map((m) => `--${m}`).join(", ")} ${missing.length > 1 ? "are" : "is"} required (see --help)`,
      { missing },
    );
  }
}

async function train(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...COMMON_OPTIONS,
      image: { type: "string" },
      role: { type: "string" },
      train: { type: "string" },
      output: { type: "string" },
      name: { type: "string" },
      hp: { type: "string", multiple: true },
      channel: { type: "string", multiple: true },
      "instance-type": { type: "string" },
      "volume-gb": { type: "string" },
      "max-runtime": { type: "string" },
      spot: { type: "boolean" },
      "max-wait": { type: "string" },
      checkpoint: { type: "string" },
      env: { type: "string", multiple: true },
      tag: { type: "string", multiple: true },
      wait: { type: "boolean" },
      poll: { type: "string" },
    },
  });
  required("train", v, ["image", "role", "train", "output"]);
  if (v["max-wait"] && !v.spot) throw new ConfigError("--max-wait applies to --spot only", {});
  const sm = await import("../aws/sagemaker");
  const r = reporters(v.quiet);
  const aws = awsOf(v);
  const job = await sm.createTrainingJob({
    name: v.name,
    image: v.image!,
    role: v.role!,
    train: v.train!,
    outputPath: v.output!,
    channels: maybe(keyValues("channel", v.channel)),
    hyperparameters: keyValues("hp", v.hp),
    instanceType: v["instance-type"],
    volumeSizeGb: numberFlag("volume-gb", v["volume-gb"]),
    maxRuntimeSeconds: numberFlag("max-runtime", v["max-runtime"]),
    spot: v.spot ? { maxWaitSeconds: numberFlag("max-wait", v["max-wait"]) } : undefined,
    checkpointS3Uri: v.checkpoint,
    environment: maybe(keyValues("env", v.env)),
    tags: maybe(keyValues("tag", v.tag)),
    aws,
  });
  r.say(`created training job ${job.name}`);
  if (!v.wait) {
    print({ trainingJobName: job.name, trainingJobArn: job.arn });
    return 0;
  }
  const d = await sm.waitForTrainingJob(job.name, {
    aws,
    pollSeconds: numberFlag("poll", v.poll, "float"),
    onStatus: r.onStatus,
    throwOnFailure: false,
  });
  print({
    trainingJobName: job.name,
    trainingJobArn: job.arn,
    status: d.TrainingJobStatus,
    failureReason: d.FailureReason,
    modelArtifacts: d.ModelArtifacts?.S3ModelArtifacts,
    billableSeconds: d.BillableTimeInSeconds,
  });
  return jobExitCode("train", job.name, d.TrainingJobStatus, d.FailureReason);
}

/** 0 for a Completed job; otherwise say how it ended and return 1. */
function jobExitCode(
  command: string,
  name: string,
  status: string | undefined,
  reason: string | undefined,
): number {
  if (status === "Completed") return 0;
  process.stderr.write(
    `esmkit sagemaker ${command}: job ${name} ${status}${reason ? `: ${reason}` : ""}\n`,
  );
  return 1;
}

async function deploy(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...COMMON_OPTIONS,
      model: { type: "string" },
      endpoint: { type: "string" },
      image: { type: "string" },
      role: { type: "string" },
      artifact: { type: "string" },
      "instance-type": { type: "string" },
      "instance-count": { type: "string" },
      "serverless-memory": { type: "string" },
      "serverless-concurrency": { type: "string" },
      env: { type: "string", multiple: true },
      tag: { type: "string", multiple: true },
      "no-wait": { type: "boolean" },
      poll: { type: "string" },
    },
  });
  required("deploy", v, ["model", "endpoint", "image", "role"]);
  const memory = numberFlag("serverless-memory", v["serverless-memory"]);
  const { deploy } = await import("../aws/sagemaker-endpoint");
  const r = reporters(v.quiet);
  const result = await deploy({
    model: v.model!,
    endpointName: v.endpoint!,
    image: v.image!,
    role: v.role!,
    artifactUri: v.artifact,
    instanceType: v["instance-type"],
    instanceCount: numberFlag("instance-count", v["instance-count"]),
    serverless:
      memory !== undefined
        ? {
            memorySizeMb: memory,
            maxConcurrency: numberFlag("serverless-concurrency", v["serverless-concurrency"]) ?? 5,
          }
        : undefined,
    environment: maybe(keyValues("env", v.env)),
    tags: maybe(keyValues("tag", v.tag)),
    wait: !v["no-wait"],
    waitOptions: { pollSeconds: numberFlag("poll", v.poll, "float"), onStatus: r.onStatus },
    aws: awsOf(v),
    onProgress: r.onTransfer,
    onMessage: r.say,
  });
  print(result);
  return 0;
}

async function bodyOf(location: string): Promise<Buffer> {
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(location)) {
    const { openRead } = await import("../io/storage");
    const input = await openRead(location);
    const chunks: Buffer[] = [];
    for await (const c of input.stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }
  return readFile(location);
}

async function invoke(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...COMMON_OPTIONS,
      endpoint: { type: "string" },
      sequence: { type: "string", multiple: true },
      fasta: { type: "string" },
      body: { type: "string" },
      "content-type": { type: "string" },
      accept: { type: "string" },
      "custom-attributes": { type: "string" },
    },
  });
  required("invoke", v, ["endpoint"]);
  const given = [v.sequence && "--sequence", v.fasta && "--fasta", v.body && "--body"].filter(
    Boolean,
  );
  if (given.length !== 1) {
    throw new ConfigError(
      `esmkit sagemaker invoke: give exactly one of --sequence, --fasta, --body${given.length ? ` (got ${given.join(", ")})` : ""}`,
      {},
    );
  }
  if (v["content-type"] && !v.body) {
    throw new ConfigError("--content-type applies to --body only", {});
  }
  let body: Buffer;
  let contentType: string;
  if (v.sequence) {
    body = Buffer.from(JSON.stringify({ inputs: v.sequence }));
    contentType = "application/json";
  } else if (v.fasta) {
    body = await bodyOf(v.fasta);
    contentType = "text/x-fasta";
  } else {
    body = await bodyOf(v.body!);
    contentType = v["content-type"] ?? "application/json";
  }
  const { invokeEndpoint } = await import("../aws/sagemaker-endpoint");
  const res = await invokeEndpoint(v.endpoint!, body, {
    contentType,
    accept: v.accept,
    customAttributes: v["custom-attributes"],
    aws: awsOf(v),
  });
  process.stdout.write(res.body.endsWith("\n") ? res.body : `${res.body}\n`);
  return 0;
}

async function remove(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...COMMON_OPTIONS,
      endpoint: { type: "string" },
      "keep-model": { type: "boolean" },
    },
  });
  required("delete", v, ["endpoint"]);
  const { deleteEndpoint } = await import("../aws/sagemaker-endpoint");
  const result = await deleteEndpoint(v.endpoint!, {
    keepModels: v["keep-model"],
    aws: awsOf(v),
  });
  reporters(v.quiet).say(
    `deleted endpoint ${result.endpoint}${result.endpointConfig ? `, endpoint config ${result.endpointConfig}` : ""}${result.models.length ? `, model ${result.models.join(", ")}` : ""}`,
  );
  print(result);
  return 0;
}

async function transform(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...COMMON_OPTIONS,
      input: { type: "string" },
      output: { type: "string" },
      "model-name": { type: "string" },
      model: { type: "string" },
      image: { type: "string" },
      role: { type: "string" },
      artifact: { type: "string" },
      name: { type: "string" },
      "content-type": { type: "string" },
      "split-type": { type: "string" },
      "batch-strategy": { type: "string" },
      "max-payload-mb": { type: "string" },
      "max-concurrent": { type: "string" },
      "instance-type": { type: "string" },
      "instance-count": { type: "string" },
      env: { type: "string", multiple: true },
      tag: { type: "string", multiple: true },
      wait: { type: "boolean" },
      poll: { type: "string" },
    },
  });
  required("transform", v, ["input", "output"]);
  if (Boolean(v["model-name"]) === Boolean(v.model)) {
    throw new ConfigError(
      "esmkit sagemaker transform: give --model-name or --model (not both)",
      {},
    );
  }
  const split = v["split-type"] ?? "Line";
  if (split !== "Line" && split !== "None") {
    throw new ConfigError(`--split-type expects Line or None, got "${split}"`, { split });
  }
  const strategy = v["batch-strategy"] ?? "MultiRecord";
  if (strategy !== "MultiRecord" && strategy !== "SingleRecord") {
    throw new ConfigError(
      `--batch-strategy expects MultiRecord or SingleRecord, got "${strategy}"`,
      {
        strategy,
      },
    );
  }
  const sm = await import("../aws/sagemaker");
  const r = reporters(v.quiet);
  const aws = awsOf(v);
  let modelName = v["model-name"];
  const name = v.name ?? sm.uniqueName("esmkit-transform");
  if (!modelName) {
    required("transform", v, ["image", "role"]);
    const { createModel } = await import("../aws/sagemaker-endpoint");
    const made = await createModel({
      model: v.model!,
      name: `${name.slice(0, 57)}-model`,
      image: v.image!,
      role: v.role!,
      artifactUri: v.artifact,
      aws,
      onProgress: r.onTransfer,
      onMessage: r.say,
    });
    modelName = made.modelName;
    r.say(`created model ${modelName} from ${made.modelDataUrl}`);
  }
  const job = await sm.createTransformJob({
    name,
    modelName,
    input: v.input!,
    output: v.output!,
    contentType: v["content-type"],
    splitType: split,
    batchStrategy: strategy,
    maxPayloadMb: numberFlag("max-payload-mb", v["max-payload-mb"]),
    maxConcurrentTransforms: numberFlag("max-concurrent", v["max-concurrent"]),
    instanceType: v["instance-type"],
    instanceCount: numberFlag("instance-count", v["instance-count"]),
    environment: maybe(keyValues("env", v.env)),
    tags: maybe(keyValues("tag", v.tag)),
    aws,
  });
  r.say(`created transform job ${job.name}`);
  if (!v.wait) {
    print({ transformJobName: job.name, transformJobArn: job.arn, modelName });
    return 0;
  }
  const d = await sm.waitForTransformJob(job.name, {
    aws,
    pollSeconds: numberFlag("poll", v.poll, "float"),
    onStatus: r.onStatus,
    throwOnFailure: false,
  });
  print({
    transformJobName: job.name,
    transformJobArn: job.arn,
    modelName,
    status: d.TransformJobStatus,
    failureReason: d.FailureReason || undefined,
    output: d.TransformOutput?.S3OutputPath,
  });
  return jobExitCode("transform", job.name, d.TransformJobStatus, d.FailureReason);
}

async function describe(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...COMMON_OPTIONS,
      endpoint: { type: "string" },
      "training-job": { type: "string" },
      "transform-job": { type: "string" },
    },
  });
  const given = [v.endpoint, v["training-job"], v["transform-job"]].filter(Boolean);
  if (given.length !== 1) {
    throw new ConfigError(
      "esmkit sagemaker describe: give one of --endpoint, --training-job, --transform-job",
      {},
    );
  }
  const aws = awsOf(v);
  const sm = await import("../aws/sagemaker");
  let d: object;
  if (v.endpoint) {
    d = await (await import("../aws/sagemaker-endpoint")).describeEndpoint(v.endpoint, { aws });
  } else if (v["training-job"]) {
    d = await sm.describeTrainingJob(v["training-job"], { aws });
  } else {
    d = await sm.describeTransformJob(v["transform-job"]!, { aws });
  }
  const { $metadata: _, ...rest } = d as { $metadata?: unknown };
  print(rest);
  return 0;
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  train,
  deploy,
  invoke,
  delete: remove,
  transform,
  describe,
};

export const sagemakerCommand: Command = {
  summary: "SageMaker: training jobs, endpoints (deploy, invoke, delete), batch transform",
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (!sub || sub === "help") {
      // `esmkit sagemaker help deploy`: "esmkit <command> --help" is answered by main.
      const topic = rest[0] && USAGES[rest[0]];
      process.stdout.write(topic || USAGE);
      return sub ? 0 : 2;
    }
    const fn = SUBCOMMANDS[sub];
    if (!fn) {
      process.stderr.write(
        `esmkit sagemaker: unknown subcommand "${sub}"; expected one of: ${Object.keys(SUBCOMMANDS).join(", ")}\n`,
      );
      return 2;
    }
    if (rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(USAGES[sub]!);
      return 0;
    }
    return fn(rest);
  },
};
