import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { s3Client, sageMakerClient } from "../../src/aws/clients";
import { downloadFile, uploadFile } from "../../src/aws/s3";
import {
  checkName,
  type StatusUpdate,
  trainingJobRequest,
  transformJobRequest,
  uniqueName,
  waitForTrainingJob,
} from "../../src/aws/sagemaker";
import { deploy, describeEndpoint, findEndpoint } from "../../src/aws/sagemaker-endpoint";
import { packDirectory } from "../../src/aws/tar";
import { ConfigError } from "../../src/errors";
import { runCli, tinyModelDir, tmp } from "./fixtures";
import { cliEnv, type Moto, motoSkipReason, queueEndpointResults, startMoto } from "./moto";

const skip = motoSkipReason();
let moto: Moto;
let modelDir: string;
const BUCKET = "esmkit-sm-test";
const IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/esmkit:0.1.0";
const ROLE = "arn:aws:iam::123456789012:role/esmkit-sagemaker";

before(async () => {
  modelDir = await tinyModelDir();
  if (skip) return;
  moto = await startMoto();
  const { CreateBucketCommand } = await import("@aws-sdk/client-s3");
  const client = s3Client();
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  client.destroy();
});

after(async () => {
  await moto?.stop();
});

function tarList(file: string): string[] {
  const r = spawnSync("tar", ["-tzf", file], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split("\n").sort();
}

test("model.tar.gz: files at the archive root, readable by tar, bytes intact", async () => {
  const dir = await tmp("esmkit-tar-");
  const file = path.join(dir, "model.tar.gz");
  const packed = await packDirectory(modelDir, file);
  const list = tarList(file);
  assert.deepEqual(list, [...packed.entries].sort());
  assert.ok(list.includes("config.json") && list.includes("model.safetensors"), list.join(","));
  assert.ok(
    list.every((n) => !n.startsWith("./") && !n.startsWith("/") && !n.startsWith("model/")),
  );
  const out = path.join(dir, "x");
  await (await import("node:fs/promises")).mkdir(out);
  const x = spawnSync("tar", ["-xzf", file, "-C", out]);
  assert.equal(x.status, 0, String(x.stderr));
  for (const f of ["config.json", "model.safetensors"]) {
    assert.ok((await readFile(path.join(out, f))).equals(await readFile(path.join(modelDir, f))));
  }
  // Long nested names use the ustar prefix field.
  const deep = await tmp("esmkit-tar-deep-");
  const sub = path.join(deep, "a".repeat(60), "b".repeat(60));
  await (await import("node:fs/promises")).mkdir(sub, { recursive: true });
  await writeFile(path.join(sub, "c".repeat(80)), "deep");
  await packDirectory(deep, path.join(dir, "deep.tar.gz"));
  assert.ok(
    tarList(path.join(dir, "deep.tar.gz")).includes(
      `${"a".repeat(60)}/${"b".repeat(60)}/${"c".repeat(80)}`,
    ),
  );
});

test("names and requests are checked before anything is sent", () => {
  assert.match(
    uniqueName("my-endpoint", new Date("2024-01-02T03:04:05.678Z")),
    /^my-endpoint-20240102-030405-678$/,
  );
  assert.ok(uniqueName("x".repeat(100)).length <= 63);
  assert.throws(() => checkName("endpoint", "bad_name"), ConfigError);
  const base = { image: IMAGE, role: ROLE, train: "s3://b-1/d/", outputPath: "s3://b-1/o/" };
  assert.throws(
    () => trainingJobRequest({ ...base, hyperparameters: { learning_rate: "fast" } }),
    /learning_rate="fast" is invalid: expected a number > 0/,
  );
  assert.throws(
    () => trainingJobRequest({ ...base, spot: { maxWaitSeconds: 10 }, maxRuntimeSeconds: 60 }),
    /maxWaitSeconds \(10\) must be >= maxRuntimeSeconds \(60\)/,
  );
  assert.throws(() => trainingJobRequest({ ...base, train: "/local/dir" }), /Invalid S3 URI/);
});

test("deploy -> describe -> invoke -> delete against moto, with the payloads checked", {
  skip,
}, async () => {
  const endpoint = "esmkit-test-ep";
  const statuses: StatusUpdate[] = [];
  const result = await deploy({
    model: modelDir,
    artifactUri: `s3://${BUCKET}/artifacts/tiny/`,
    endpointName: endpoint,
    image: IMAGE,
    role: ROLE,
    instanceType: "ml.c5.large",
    environment: { ESMKIT_BACKEND: "wasm" },
    waitOptions: { pollSeconds: 0, onStatus: (s) => statuses.push(s) },
  });
  assert.equal(result.status, "InService");
  assert.equal(result.modelDataUrl, `s3://${BUCKET}/artifacts/tiny/model.tar.gz`);
  assert.deepEqual(
    statuses.map((s) => s.status),
    ["InService"],
  );

  // The uploaded artifact is the model directory, files at the root.
  const local = path.join(await tmp("esmkit-sm-art-"), "model.tar.gz");
  await downloadFile(result.modelDataUrl, local);
  assert.ok(tarList(local).includes("config.json"));

  // What reached SageMaker.
  const [model] = moto.calls("SageMaker.CreateModel");
  assert.deepEqual(model, {
    ModelName: result.modelName,
    ExecutionRoleArn: ROLE,
    PrimaryContainer: {
      Image: IMAGE,
      ModelDataUrl: result.modelDataUrl,
      Environment: { ESMKIT_BACKEND: "wasm" },
    },
  });
  const [config] = moto.calls("SageMaker.CreateEndpointConfig");
  assert.deepEqual(config, {
    EndpointConfigName: result.endpointConfigName,
    ProductionVariants: [
      {
        VariantName: "AllTraffic",
        ModelName: result.modelName,
        InstanceType: "ml.c5.large",
        InitialInstanceCount: 1,
        InitialVariantWeight: 1,
      },
    ],
  });
  const described = await describeEndpoint(endpoint);
  assert.equal(described.EndpointStatus, "InService");
  assert.equal(described.EndpointConfigName, result.endpointConfigName);

  // A second deploy to the same name is refused before anything is uploaded or created.
  const models = moto.calls("SageMaker.CreateModel").length;
  await assert.rejects(
    deploy({
      ...result,
      model: modelDir,
      artifactUri: `s3://${BUCKET}/a2/`,
      image: IMAGE,
      role: ROLE,
    }),
    /Endpoint esmkit-test-ep already exists/,
  );
  assert.equal(moto.calls("SageMaker.CreateModel").length, models);

  // invoke through the CLI: moto answers the canned body it was given.
  const canned = '[{"label":"membrane","score":0.9}]';
  await queueEndpointResults(moto, [{ Body: canned, ContentType: "application/json" }]);
  const inv = await runCli(
    [
      "sagemaker",
      "invoke",
      "--endpoint",
      endpoint,
      "--sequence",
      "MKTAYIAKQR",
      "--sequence",
      "LLVV",
    ],
    cliEnv(moto),
  );
  assert.equal(inv.status, 0, inv.stderr);
  assert.equal(inv.stdout.trim(), canned);
  const sent = moto.requests.filter((r) => r.path === `/endpoints/${endpoint}/invocations`);
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.method, "POST");
  assert.equal(sent[0]!.headers["content-type"], "application/json");
  assert.deepEqual(JSON.parse(sent[0]!.body.toString()), { inputs: ["MKTAYIAKQR", "LLVV"] });

  // describe through the CLI, then delete all three resources.
  const desc = await runCli(["sagemaker", "describe", "--endpoint", endpoint], cliEnv(moto));
  assert.equal(desc.status, 0, desc.stderr);
  assert.equal(JSON.parse(desc.stdout).EndpointStatus, "InService");
  const del = await runCli(["sagemaker", "delete", "--endpoint", endpoint], cliEnv(moto));
  assert.equal(del.status, 0, del.stderr);
  assert.deepEqual(JSON.parse(del.stdout), {
    endpoint,
    endpointConfig: result.endpointConfigName,
    models: [result.modelName],
  });
  assert.equal(await findEndpoint(endpoint), undefined);
  const sm = sageMakerClient();
  const sdk = await import("@aws-sdk/client-sagemaker");
  await assert.rejects(
    sm.send(
      new sdk.DescribeEndpointConfigCommand({ EndpointConfigName: result.endpointConfigName }),
    ),
    /Could not find endpoint configuration/,
  );
  await assert.rejects(
    sm.send(new sdk.DescribeModelCommand({ ModelName: result.modelName })),
    /Could not find model/,
  );
  sm.destroy();
  const again = await runCli(["sagemaker", "delete", "--endpoint", endpoint], cliEnv(moto));
  assert.equal(again.status, 2);
  assert.match(again.stderr, /There is no endpoint esmkit-test-ep/);
});

test("deploy refuses a directory that is not a model, creating nothing", { skip }, async () => {
  const before = moto.requests.length;
  await assert.rejects(
    deploy({
      model: await tmp("esmkit-not-a-model-"),
      artifactUri: `s3://${BUCKET}/x/`,
      endpointName: "esmkit-never",
      image: IMAGE,
      role: ROLE,
    }),
    /is not a model directory \(missing config\.json, model\.safetensors\)/,
  );
  const made = moto.requests
    .slice(before)
    .filter((r) => r.method === "PUT" || /Create/.test(r.target ?? ""));
  assert.deepEqual(made, []);
});

test("training job: strings, channels, output, spot + checkpoints sent; --wait follows it", {
  skip,
}, async () => {
  const name = "esmkit-train-test-1";
  const r = await runCli(
    [
      "sagemaker",
      "train",
      "--name",
      name,
      "--image",
      IMAGE,
      "--role",
      ROLE,
      "--train",
      `s3://${BUCKET}/prepared/`,
      "--channel",
      `model=s3://${BUCKET}/base-model/`,
      "--output",
      `s3://${BUCKET}/jobs/`,
      "--hp",
      "max_steps=200",
      "--hp",
      "lora-rank=4",
      "--hp",
      "learning_rate=2e-4",
      "--instance-type",
      "ml.c5.2xlarge",
      "--max-runtime",
      "3600",
      "--spot",
      "--checkpoint",
      `s3://${BUCKET}/checkpoints/${name}/`,
      "--wait",
      "--poll",
      "0",
    ],
    cliEnv(moto),
  );
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.status, "Completed");
  assert.equal(out.modelArtifacts, `s3://${BUCKET}/jobs/${name}/output/model.tar.gz`);
  assert.match(r.stderr, /training job esmkit-train-test-1: Completed/);

  const [sent] = moto.calls("SageMaker.CreateTrainingJob");
  assert.deepEqual(sent!.HyperParameters, {
    max_steps: "200",
    lora_rank: "4",
    learning_rate: "2e-4",
  });
  assert.deepEqual(sent!.AlgorithmSpecification, {
    TrainingImage: IMAGE,
    TrainingInputMode: "File",
  });
  assert.deepEqual(
    (
      sent!.InputDataConfig as {
        ChannelName: string;
        DataSource: { S3DataSource: { S3Uri: string } };
      }[]
    ).map((c) => [c.ChannelName, c.DataSource.S3DataSource.S3Uri]),
    [
      ["train", `s3://${BUCKET}/prepared/`],
      ["model", `s3://${BUCKET}/base-model/`],
    ],
  );
  assert.deepEqual(sent!.OutputDataConfig, { S3OutputPath: `s3://${BUCKET}/jobs/` });
  assert.deepEqual(sent!.ResourceConfig, {
    InstanceType: "ml.c5.2xlarge",
    InstanceCount: 1,
    VolumeSizeInGB: 30,
  });
  assert.deepEqual(sent!.StoppingCondition, {
    MaxRuntimeInSeconds: 3600,
    MaxWaitTimeInSeconds: 7200,
  });
  assert.equal(sent!.EnableManagedSpotTraining, true);
  assert.deepEqual(sent!.CheckpointConfig, {
    S3Uri: `s3://${BUCKET}/checkpoints/${name}/`,
    LocalPath: "/opt/ml/checkpoints",
  });
  assert.equal(sent!.RoleArn, ROLE);

  // moto describes back what it stored; the library follows it too.
  const updates: StatusUpdate[] = [];
  const d = await waitForTrainingJob(name, { pollSeconds: 0, onStatus: (s) => updates.push(s) });
  assert.equal(d.TrainingJobStatus, "Completed");
  assert.deepEqual(d.HyperParameters, sent!.HyperParameters);
  assert.equal(d.CheckpointConfig?.S3Uri, `s3://${BUCKET}/checkpoints/${name}/`);
  assert.equal(updates[updates.length - 1]!.status, "Completed");
});

test("a bad hyperparameter fails before a training job is created", { skip }, async () => {
  const before = moto.calls("SageMaker.CreateTrainingJob").length;
  const base = ["sagemaker", "train", "--image", IMAGE, "--role", ROLE];
  const io = ["--train", `s3://${BUCKET}/p/`, "--output", `s3://${BUCKET}/o/`];
  const bad = await runCli([...base, ...io, "--hp", "learning_rate=fast"], cliEnv(moto));
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /learning_rate="fast" is invalid: expected a number > 0/);
  const unknown = await runCli([...base, ...io, "--hp", "lerning_rate=0.1"], cliEnv(moto));
  assert.equal(unknown.status, 2);
  assert.match(
    unknown.stderr,
    /Unknown hyperparameter "lerning_rate".*did you mean learning_rate\?/,
  );
  const missing = await runCli([...base, "--train", `s3://${BUCKET}/p/`], cliEnv(moto));
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--output is required/);
  assert.equal(moto.calls("SageMaker.CreateTrainingJob").length, before);
});

test("transform job over an S3 prefix, its model made from a model directory", {
  skip,
}, async () => {
  const input = `s3://${BUCKET}/batch/in/`;
  const dir = await tmp("esmkit-batch-");
  await writeFile(path.join(dir, "part-0.jsonl"), '{"inputs": "MKTAYIAKQR"}\n{"inputs": "LLVV"}\n');
  await uploadFile(path.join(dir, "part-0.jsonl"), `${input}part-0.jsonl`);
  const name = "esmkit-transform-test";
  const r = await runCli(
    [
      "sagemaker",
      "transform",
      "--name",
      name,
      "--input",
      input,
      "--output",
      `s3://${BUCKET}/batch/out/`,
      "--model",
      modelDir,
      "--image",
      IMAGE,
      "--role",
      ROLE,
      "--artifact",
      `s3://${BUCKET}/artifacts/batch/model.tar.gz`,
      "--max-payload-mb",
      "10",
      "--instance-count",
      "2",
      "--wait",
      "--poll",
      "0",
    ],
    cliEnv(moto),
  );
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.status, "Completed");
  assert.equal(out.modelName, `${name}-model`);

  const [model] = moto
    .calls("SageMaker.CreateModel")
    .filter((m) => m.ModelName === `${name}-model`);
  assert.equal(
    (model!.PrimaryContainer as { ModelDataUrl: string }).ModelDataUrl,
    `s3://${BUCKET}/artifacts/batch/model.tar.gz`,
  );
  const [sent] = moto.calls("SageMaker.CreateTransformJob");
  assert.deepEqual(sent, {
    TransformJobName: name,
    ModelName: `${name}-model`,
    BatchStrategy: "MultiRecord",
    MaxPayloadInMB: 10,
    TransformInput: {
      DataSource: { S3DataSource: { S3DataType: "S3Prefix", S3Uri: input } },
      ContentType: "application/jsonlines",
      SplitType: "Line",
      CompressionType: "None",
    },
    TransformOutput: {
      S3OutputPath: `s3://${BUCKET}/batch/out/`,
      Accept: "application/jsonlines",
      AssembleWith: "Line",
    },
    TransformResources: { InstanceType: "ml.m5.xlarge", InstanceCount: 2 },
    Environment: { SAGEMAKER_MAX_PAYLOAD_IN_MB: "10", SAGEMAKER_BATCH_STRATEGY: "MULTI_RECORD" },
  });
  const desc = await runCli(["sagemaker", "describe", "--transform-job", name], cliEnv(moto));
  assert.equal(desc.status, 0, desc.stderr);
  assert.equal(JSON.parse(desc.stdout).TransformInput.DataSource.S3DataSource.S3Uri, input);
});

test("transform --embed: the serve container's embeddings mode in the job's environment", {
  skip,
}, async () => {
  const input = `s3://${BUCKET}/proteome/in/`;
  const dir = await tmp("esmkit-proteome-");
  await writeFile(path.join(dir, "proteome.fasta"), ">P1\nMKTAYIAKQR\n>P2\nLLVV\n");
  await uploadFile(path.join(dir, "proteome.fasta"), `${input}proteome.fasta`);
  const name = "esmkit-embed-test";
  const r = await runCli(
    [
      "sagemaker",
      "transform",
      "--name",
      name,
      "--input",
      input,
      "--output",
      `s3://${BUCKET}/proteome/out/`,
      "--model",
      modelDir,
      "--image",
      IMAGE,
      "--role",
      ROLE,
      "--artifact",
      `s3://${BUCKET}/artifacts/embed/model.tar.gz`,
      "--content-type",
      "text/x-fasta",
      "--split-type",
      "None",
      "--embed",
      "--pooling",
      "cls",
      "--layer=-2",
    ],
    cliEnv(moto),
  );
  assert.equal(r.status, 0, r.stderr);
  const sent = moto.calls("SageMaker.CreateTransformJob").find((c) => c.TransformJobName === name)!;
  assert.deepEqual(sent.Environment, {
    SAGEMAKER_MAX_PAYLOAD_IN_MB: "6",
    SAGEMAKER_BATCH_STRATEGY: "MULTI_RECORD",
    ESMKIT_SERVE_MODE: "embed",
    ESMKIT_EMBED_POOLING: "cls",
    ESMKIT_EMBED_LAYER: "-2",
  });
  assert.deepEqual(sent.TransformInput, {
    DataSource: { S3DataSource: { S3DataType: "S3Prefix", S3Uri: input } },
    ContentType: "text/x-fasta",
    SplitType: "None",
    CompressionType: "None",
  });
  assert.equal((sent.TransformOutput as { Accept: string }).Accept, "application/jsonlines");
  // --pooling and --layer only mean something with --embed.
  const before = moto.calls("SageMaker.CreateTransformJob").length;
  const lone = await runCli(
    [
      "sagemaker",
      "transform",
      "--input",
      input,
      "--output",
      `s3://${BUCKET}/proteome/out2/`,
      "--model-name",
      `${name}-model`,
      "--pooling",
      "cls",
    ],
    cliEnv(moto),
  );
  assert.equal(lone.status, 2);
  assert.match(lone.stderr, /--pooling needs --embed/);
  assert.equal(moto.calls("SageMaker.CreateTransformJob").length, before);
});

test("transformJobRequest: embed settings become the serve container's environment", () => {
  const base = {
    modelName: "m",
    input: "s3://my-bucket/in/",
    output: "s3://my-bucket/out/",
  };
  assert.equal(transformJobRequest(base).Environment!.ESMKIT_SERVE_MODE, undefined);
  assert.deepEqual(transformJobRequest({ ...base, embed: true }).Environment, {
    SAGEMAKER_MAX_PAYLOAD_IN_MB: "6",
    SAGEMAKER_BATCH_STRATEGY: "MULTI_RECORD",
    ESMKIT_SERVE_MODE: "embed",
  });
  assert.equal(
    transformJobRequest({ ...base, embed: { layer: 0 } }).Environment!.ESMKIT_EMBED_LAYER,
    "0",
  );
  assert.throws(
    () => transformJobRequest({ ...base, embed: { pooling: "max" as "mean" } }),
    (e: unknown) =>
      e instanceof ConfigError && /pooling must be mean or cls, got "max"/.test(e.message),
  );
});
