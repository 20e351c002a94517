import { ConfigError } from "../errors";
import { QUANTIZE_CHOICES } from "../onnx/select";
import { resolveServerConfig, SERVER_DEFAULTS, type ServerLimits } from "../serve/config";
import { type EmbeddingModeOptions, embeddingMode } from "../serve/embeddings";
import { checkThreshold, DEFAULT_THRESHOLD } from "../serve/prediction";
import { loadPredictor } from "../serve/predictor";
import { TOO_LONG_POLICIES } from "../serve/sequences";
import { createServer, DEFAULT_GRACE_MS } from "../serve/server";
import { waitForShutdownSignal } from "../serve/shutdown";
import { flag } from "../util/flags";
import { defineCommand } from "./command";

/** The port: --port, else SAGEMAKER_BIND_TO_PORT, else 8080. */
function portFrom(flagged: number | undefined, env: string | undefined): number {
  if (flagged !== undefined) return flagged;
  const port = env?.trim() ? Number(env) : 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`SAGEMAKER_BIND_TO_PORT=${JSON.stringify(env)} is not a port (0-65535)`, {
      port: env,
    });
  }
  return port;
}

/** The multi-label threshold: --threshold, else ESMKIT_THRESHOLD, else 0.5. */
function thresholdFrom(flagged: number | undefined, env: string | undefined): number {
  if (flagged !== undefined) return flagged;
  if (!env?.trim()) return DEFAULT_THRESHOLD;
  return checkThreshold(Number(env), `ESMKIT_THRESHOLD=${JSON.stringify(env)}`);
}

/** "multi_label_classification (threshold 0.5), " for tasks other than single-label. */
function taskWords(problemType: string | undefined, threshold: number): string {
  if (problemType === "multi_label_classification")
    return `${problemType} (threshold ${threshold}), `;
  return problemType === "regression" ? `${problemType}, ` : "";
}

const D = SERVER_DEFAULTS;
/** A server limit: the server applies its default (or the SageMaker environment's). */
const limit = (help: string, shown: number) =>
  flag.int(help, { min: 1, defaultText: String(shown) });

export const serveCommand = defineCommand({
  name: "serve",
  summary: "serve the model over HTTP (SageMaker /ping, /invocations)",
  description: `
Serve the model over HTTP with the SageMaker inference contract:
GET /ping, POST /invocations, GET /execution-parameters.`,
  flags: {
    model: flag.string("model directory", { value: "DIR", default: "/opt/ml/model" }),
    host: flag.string("address to bind (containers: 0.0.0.0)", {
      value: "HOST",
      default: "127.0.0.1",
    }),
    port: flag.int("port", {
      min: 0,
      max: 65535,
      defaultText: "SAGEMAKER_BIND_TO_PORT, else 8080",
    }),
    "max-batch-size": limit("sequences per model call", D.maxBatchSize),
    "max-wait-ms": flag.float("wait for a batch to fill, ms", {
      min: 0,
      defaultText: String(D.maxWaitMs),
    }),
    "max-queue": limit("sequences waiting before 503 + Retry-After", D.maxQueue),
    "timeout-ms": limit("per request, ms (504 after)", D.timeoutMs),
    "max-sequences": limit("sequences per request (413 over it)", D.maxSequencesPerRequest),
    "max-payload-mb": flag.float("request body limit", {
      min: 0,
      minExclusive: true,
      defaultText: `SAGEMAKER_MAX_PAYLOAD_IN_MB, else ${D.maxPayloadBytes / 1024 / 1024}`,
    }),
    "too-long": flag.choice(
      TOO_LONG_POLICIES,
      'sequences over the model\'s max length: truncate (flagged "truncated": true) or reject',
      { defaultText: "truncate" },
    ),
    embed: flag.bool(
      "answer embeddings instead of class probabilities: {id, embedding, length, truncated}",
      { defaultText: "ESMKIT_SERVE_MODE=embed" },
    ),
    pooling: flag.choice(
      ["mean", "cls"],
      "embeddings: mean over residues (no <cls>/<eos>) or <cls>",
      {
        defaultText: "ESMKIT_EMBED_POOLING, else mean",
      },
    ),
    layer: flag.int(
      "embeddings: hidden state as transformers numbers them (negative: from the end)",
      {
        value: "N",
        defaultText: "ESMKIT_EMBED_LAYER, else the last",
      },
    ),
    threshold: flag.float("multi-label models: a label is predicted at or above this probability", {
      min: 0,
      max: 1,
      defaultText: `ESMKIT_THRESHOLD, else ${DEFAULT_THRESHOLD}`,
    }),
    "grace-ms": flag.int("on SIGTERM/SIGINT, time to finish requests", {
      min: 0,
      default: DEFAULT_GRACE_MS,
    }),
    quantize: flag.choice(QUANTIZE_CHOICES, "encoder weights as int8 (onnx engine) or none", {
      defaultText: "ESMKIT_QUANTIZE, else none",
    }),
    quiet: flag.bool("no per-request log lines"),
  },
  notes: `
Batch Transform (SAGEMAKER_BATCH=true) raises the defaults of --max-sequences to
${D.batchMaxSequencesPerRequest}, --timeout-ms to ${D.batchTimeoutMs} and --max-queue to hold full requests.
Embeddings mode (--embed): FASTA bodies sent with "Accept: application/jsonlines" get one
line per protein, as a proteome through Batch Transform needs.`,
  async run(v) {
    const port = portFrom(v.port, process.env.SAGEMAKER_BIND_TO_PORT);
    const threshold = thresholdFrom(v.threshold, process.env.ESMKIT_THRESHOLD);
    const { host, model: modelDir, "grace-ms": graceMs } = v;
    const payloadMb = v["max-payload-mb"];

    const limits: ServerLimits = {
      maxBatchSize: v["max-batch-size"],
      maxWaitMs: v["max-wait-ms"],
      maxQueue: v["max-queue"],
      timeoutMs: v["timeout-ms"],
      maxSequencesPerRequest: v["max-sequences"],
      maxPayloadBytes: payloadMb === undefined ? undefined : Math.floor(payloadMb * 1024 * 1024),
      tooLong: v["too-long"],
    };
    // The limits together and the SAGEMAKER_* values are checked before the model
    // loads (which takes time and starts worker threads).
    resolveServerConfig(limits);
    const embeddings: EmbeddingModeOptions = { embed: v.embed, pooling: v.pooling, layer: v.layer };
    const embedding = embeddingMode(embeddings, process.env);
    if (!embedding && (v.pooling !== undefined || v.layer !== undefined)) {
      throw new ConfigError("--pooling and --layer apply to embeddings: add --embed", {});
    }

    const predictor = await loadPredictor(
      modelDir,
      v.quantize === undefined ? undefined : { quantize: v.quantize },
    );
    // From here on the worker threads keep the process alive: every way out of this
    // block, a failed listen (EADDRINUSE) included, stops them.
    try {
      const server = createServer({
        predictor,
        ...limits,
        embeddings,
        threshold,
        log: v.quiet ? false : undefined,
      });
      const address = await server.listen(port, host);
      const shutdown = waitForShutdownSignal();
      const c = server.config;
      const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
      process.stderr.write(
        `esmkit serve: listening on http://${shown}:${address.port} (model ${modelDir}: ` +
          (embedding
            ? `embeddings, ${predictor.numLayers} layers`
            : `labels ${predictor.labels.join(", ")}`) +
          `, max length ${predictor.maxLength}; ` +
          `${taskWords(predictor.problemType, threshold)}labels ${predictor.labels.join(", ")}, max length ${predictor.maxLength}; ` +
          `batch <= ${c.maxBatchSize}, wait ${c.maxWaitMs} ms, queue ${c.maxQueue}, ` +
          `timeout ${c.timeoutMs} ms, payload ${+(c.maxPayloadBytes / 1024 / 1024).toFixed(3)} MB, ` +
          `<= ${c.maxSequencesPerRequest} sequences/request${c.batchMode ? ", Batch Transform mode" : ""})\n`,
      );
      const signal = await shutdown;
      process.stderr.write(`esmkit serve: ${signal}: draining (up to ${graceMs} ms)\n`);
      const t0 = Date.now();
      await server.close(graceMs);
      process.stderr.write(`esmkit serve: stopped after ${Date.now() - t0} ms\n`);
    } finally {
      await predictor.dispose?.();
    }
    // Whatever the model left running must not keep the process up.
    setTimeout(() => process.exit(0), 1000).unref();
    return 0;
  },
});
