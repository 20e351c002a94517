/**
 * `esmkit sagemaker train|deploy|invoke|delete|transform|describe`: the AWS workflow from
 * the shell, each subcommand a thin layer over a library function in src/aws (which is
 * loaded only when a subcommand runs). Results go to stdout as JSON, progress to stderr.
 */
import { readFile } from "node:fs/promises";
import type { AwsOptions } from "../aws/clients";
import type { S3TransferEvent } from "../aws/s3";
import {
  DEFAULT_TRAINING_INSTANCE,
  DEFAULT_TRANSFORM_INSTANCE,
  type StatusUpdate,
} from "../aws/sagemaker";
import { DEFAULT_ENDPOINT_INSTANCE } from "../aws/sagemaker-endpoint";
import { type FlagTable, flag } from "../util/flags";
import { transferPrinter } from "../util/progress";
import { type Command, type CommandSpec, defineCommand, defineGroup } from "./command";

/** Every subcommand's last flags. */
const AWS_FLAGS = {
  region: flag.string("AWS region", { value: "NAME", defaultText: "AWS_REGION / the profile" }),
  quiet: flag.bool("no progress on stderr"),
};

const AWS_NOTES = `
Credentials come from the standard chain (environment, profile, SSO, role);
AWS_ENDPOINT_URL points the clients at an S3/SageMaker-compatible endpoint.`;

/** A subcommand with the AWS flags last and the credentials note. */
function awsCommand<const F extends FlagTable>(
  spec: Omit<CommandSpec<F & typeof AWS_FLAGS>, "flags" | "notes"> & { flags: F },
): Command {
  return defineCommand({ ...spec, flags: { ...spec.flags, ...AWS_FLAGS }, notes: AWS_NOTES });
}

const endpoint = flag.string("endpoint name", { value: "NAME", required: true });
const env = flag.keyValues("container environment");
const tag = flag.keyValues("resource tag");
const imageOf = (entrypoint: string) => `ECR image with the esmkit ${entrypoint} entrypoint`;
const waitForJob = flag.bool("follow the job to the end (exit 1 unless it completes)");
const poll = (seconds: number) =>
  flag.float("seconds between status checks", { value: "SECONDS", min: 0, default: seconds });

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

function awsOf(v: { region?: string }): AwsOptions | undefined {
  return v.region ? { region: v.region } : undefined;
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

const train = awsCommand({
  name: "sagemaker train",
  summary: "create a training job (the esmkit image's train entrypoint); --wait follows it",
  description: 'Create a SageMaker training job that runs "esmkit train" in the esmkit image.',
  flags: {
    image: flag.string(imageOf("train"), { value: "URI", required: true }),
    role: flag.string("execution role", { value: "ARN", required: true }),
    train: flag.string('prepared data (output of "esmkit prepare")', {
      value: "S3",
      required: true,
    }),
    output: flag.string("output prefix (<output>/<job>/output/model.tar.gz)", {
      value: "S3",
      required: true,
    }),
    name: flag.string("job name", { value: "NAME", defaultText: "esmkit-train-<time>" }),
    hp: flag.keyValues(
      "hyperparameter (max_steps=200, lora_rank=8, ...; see docs/aws.md),\nchecked before the job is created",
    ),
    channel: flag.keyValues("another input channel (model=S3 for the base model)", {
      value: "NAME=S3",
    }),
    "instance-type": flag.string("instance type", {
      value: "TYPE",
      default: DEFAULT_TRAINING_INSTANCE,
    }),
    "volume-gb": flag.int("storage volume, GB", { min: 1, defaultText: "30" }),
    "max-runtime": flag.int("stop the job after this long", {
      value: "SECONDS",
      min: 1,
      defaultText: "86400",
    }),
    spot: flag.bool("managed spot training"),
    "max-wait": flag.int("spot: wait for capacity + run", {
      value: "SECONDS",
      min: 1,
      defaultText: "2 x max runtime",
      requires: ["spot"],
    }),
    checkpoint: flag.string("prefix synced with /opt/ml/checkpoints (spot resumes from it)", {
      value: "S3",
    }),
    env,
    tag,
    wait: waitForJob,
    poll: poll(15),
  },
  async run(v) {
    const sm = await import("../aws/sagemaker");
    const r = reporters(v.quiet);
    const aws = awsOf(v);
    const job = await sm.createTrainingJob({
      name: v.name,
      image: v.image,
      role: v.role,
      train: v.train,
      outputPath: v.output,
      channels: v.channel,
      hyperparameters: v.hp,
      instanceType: v["instance-type"],
      volumeSizeGb: v["volume-gb"],
      maxRuntimeSeconds: v["max-runtime"],
      spot: v.spot ? { maxWaitSeconds: v["max-wait"] } : undefined,
      checkpointS3Uri: v.checkpoint,
      environment: v.env,
      tags: v.tag,
      aws,
    });
    r.say(`created training job ${job.name}`);
    if (!v.wait) {
      print({ trainingJobName: job.name, trainingJobArn: job.arn });
      return 0;
    }
    const d = await sm.waitForTrainingJob(job.name, {
      aws,
      pollSeconds: v.poll,
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
  },
});

const deploy = awsCommand({
  name: "sagemaker deploy",
  summary: "model directory -> model.tar.gz -> model, endpoint config, endpoint (InService)",
  description: `
Pack the model as model.tar.gz (files at the archive root), upload it, create the model,
endpoint config and endpoint, and wait until it is InService.`,
  flags: {
    model: flag.string("model directory, S3 prefix of one, or s3://.../model.tar.gz", {
      value: "DIR|S3",
      required: true,
    }),
    endpoint,
    image: flag.string(imageOf("serve"), { value: "URI", required: true }),
    role: flag.string("execution role", { value: "ARN", required: true }),
    artifact: flag.string(
      "where to upload model.tar.gz (an object or a prefix);\nrequired unless --model is already a .tar.gz in S3",
      { value: "S3" },
    ),
    "instance-type": flag.string("instance type", {
      value: "TYPE",
      default: DEFAULT_ENDPOINT_INSTANCE,
    }),
    "instance-count": flag.int("instances", { min: 1, default: 1 }),
    "serverless-memory": flag.int("serverless endpoint (1024..6144) instead of instances", {
      value: "MB",
      min: 1024,
      max: 6144,
    }),
    "serverless-concurrency": flag.int("serverless: concurrent requests", {
      min: 1,
      max: 200,
      default: 5,
    }),
    env,
    tag,
    wait: flag.bool("wait until the endpoint is InService", { negatable: true, default: true }),
    poll: poll(30),
  },
  async run(v) {
    const memory = v["serverless-memory"];
    const { deploy } = await import("../aws/sagemaker-endpoint");
    const r = reporters(v.quiet);
    const result = await deploy({
      model: v.model,
      endpointName: v.endpoint,
      image: v.image,
      role: v.role,
      artifactUri: v.artifact,
      instanceType: v["instance-type"],
      instanceCount: v["instance-count"],
      serverless:
        memory !== undefined
          ? { memorySizeMb: memory, maxConcurrency: v["serverless-concurrency"] }
          : undefined,
      environment: v.env,
      tags: v.tag,
      wait: v.wait,
      waitOptions: { pollSeconds: v.poll, onStatus: r.onStatus },
      aws: awsOf(v),
      onProgress: r.onTransfer,
      onMessage: r.say,
    });
    print(result);
    return 0;
  },
});

const invoke = awsCommand({
  name: "sagemaker invoke",
  summary: "send sequences or a body to an endpoint",
  description: "Send one request to an endpoint and print its answer.",
  flags: {
    endpoint,
    sequence: flag.repeated('a sequence: {"inputs": [...]} as application/json', { value: "S" }),
    fasta: flag.string("FASTA sent as text/x-fasta", { value: "FILE|URL|S3" }),
    body: flag.string("a body sent as is, with --content-type", { value: "FILE|URL|S3" }),
    "content-type": flag.string("content type of --body", {
      value: "TYPE",
      defaultText: "application/json",
      requires: ["body"],
    }),
    accept: flag.string("response type", { value: "TYPE" }),
    "custom-attributes": flag.string("X-Amzn-SageMaker-Custom-Attributes"),
  },
  oneOf: [["sequence", "fasta", "body"]],
  async run(v) {
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
    const res = await invokeEndpoint(v.endpoint, body, {
      contentType,
      accept: v.accept,
      customAttributes: v["custom-attributes"],
      aws: awsOf(v),
    });
    process.stdout.write(res.body.endsWith("\n") ? res.body : `${res.body}\n`);
    return 0;
  },
});

const remove = awsCommand({
  name: "sagemaker delete",
  summary: "delete an endpoint with its endpoint config and models",
  description: "Delete an endpoint, its endpoint config and the models it serves.",
  flags: {
    endpoint,
    "keep-model": flag.bool("keep the SageMaker models (e.g. for transform jobs)"),
  },
  async run(v) {
    const { deleteEndpoint } = await import("../aws/sagemaker-endpoint");
    const result = await deleteEndpoint(v.endpoint, {
      keepModels: v["keep-model"],
      aws: awsOf(v),
    });
    reporters(v.quiet).say(
      `deleted endpoint ${result.endpoint}${result.endpointConfig ? `, endpoint config ${result.endpointConfig}` : ""}${result.models.length ? `, model ${result.models.join(", ")}` : ""}`,
    );
    print(result);
    return 0;
  },
});

const transform = awsCommand({
  name: "sagemaker transform",
  summary: "Batch Transform over an S3 prefix",
  description: `
Create a Batch Transform job over every object under an S3 prefix (JSON Lines by
default: one {"inputs": "SEQ"} per line, one prediction line out per line in).
A proteome's embeddings: --embed --content-type text/x-fasta --split-type None sends each
FASTA object whole (up to --max-payload-mb) and writes one JSON line per protein.`,
  flags: {
    input: flag.string("input prefix or object", { value: "S3", required: true }),
    output: flag.string("output prefix", { value: "S3", required: true }),
    "model-name": flag.string("an existing SageMaker model (e.g. from deploy)", {
      value: "NAME",
    }),
    model: flag.string("or: create a model from this (with --image, --role, --artifact)", {
      value: "DIR|S3",
      requires: ["image", "role"],
    }),
    image: flag.string(imageOf("serve"), { value: "URI" }),
    role: flag.string("execution role", { value: "ARN" }),
    artifact: flag.string("where to upload model.tar.gz, as for deploy", { value: "S3" }),
    name: flag.string("job name", { value: "NAME", defaultText: "esmkit-transform-<time>" }),
    "content-type": flag.string(
      "input type: application/jsonlines, application/json or text/x-fasta",
      { value: "TYPE", defaultText: "application/jsonlines" },
    ),
    "split-type": flag.choice(["Line", "None"], "how SageMaker splits the input", {
      default: "Line",
    }),
    "batch-strategy": flag.choice(["MultiRecord", "SingleRecord"], "records per request", {
      default: "MultiRecord",
    }),
    "max-payload-mb": flag.int("request size limit", { min: 1, max: 100, defaultText: "6" }),
    "max-concurrent": flag.int("concurrent requests per instance", { min: 1 }),
    "instance-type": flag.string("instance type", {
      value: "TYPE",
      default: DEFAULT_TRANSFORM_INSTANCE,
    }),
    "instance-count": flag.int("instances", { min: 1, default: 1 }),
    embed: flag.bool(
      "embeddings instead of class probabilities ({id, embedding, length, truncated}; ESMKIT_SERVE_MODE=embed)",
    ),
    pooling: flag.choice(
      ["mean", "cls"],
      "with --embed: mean over residues (no <cls>/<eos>) or <cls>",
      {
        defaultText: "mean",
        requires: ["embed"],
      },
    ),
    layer: flag.int("with --embed: hidden state as transformers numbers them (-1: the last)", {
      value: "N",
      defaultText: "the last",
      requires: ["embed"],
    }),
    env,
    tag,
    wait: waitForJob,
    poll: poll(15),
  },
  oneOf: [["model-name", "model"]],
  async run(v) {
    const sm = await import("../aws/sagemaker");
    const r = reporters(v.quiet);
    const aws = awsOf(v);
    let modelName = v["model-name"];
    const name = v.name ?? sm.uniqueName("esmkit-transform");
    if (!modelName) {
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
      input: v.input,
      output: v.output,
      contentType: v["content-type"],
      splitType: v["split-type"],
      batchStrategy: v["batch-strategy"],
      maxPayloadMb: v["max-payload-mb"],
      maxConcurrentTransforms: v["max-concurrent"],
      instanceType: v["instance-type"],
      instanceCount: v["instance-count"],
      embed: v.embed ? { pooling: v.pooling, layer: v.layer } : undefined,
      environment: v.env,
      tags: v.tag,
      aws,
    });
    r.say(`created transform job ${job.name}`);
    if (!v.wait) {
      print({ transformJobName: job.name, transformJobArn: job.arn, modelName });
      return 0;
    }
    const d = await sm.waitForTransformJob(job.name, {
      aws,
      pollSeconds: v.poll,
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
  },
});

const describe = awsCommand({
  name: "sagemaker describe",
  summary: "show an endpoint, training job or transform job",
  description: "Print SageMaker's description of a resource as JSON.",
  flags: {
    endpoint: flag.string("an endpoint", { value: "NAME" }),
    "training-job": flag.string("a training job", { value: "NAME" }),
    "transform-job": flag.string("a transform job", { value: "NAME" }),
  },
  oneOf: [["endpoint", "training-job", "transform-job"]],
  async run(v) {
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
  },
});

export const sagemakerCommand = defineGroup({
  name: "sagemaker",
  summary: "SageMaker: training jobs, endpoints (deploy, invoke, delete), batch transform",
  commands: [train, deploy, invoke, remove, transform, describe],
  notes: "See docs/aws.md for the image, the IAM policies and recipes.",
});
