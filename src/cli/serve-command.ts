import { parseArgs } from "node:util";
import { ConfigError } from "../errors";
import { resolveServerConfig, SERVER_DEFAULTS, type ServerLimits } from "../serve/config";
import { loadPredictor } from "../serve/predictor";
import { TOO_LONG_POLICIES, type TooLongPolicy } from "../serve/sequences";
import { createServer, DEFAULT_GRACE_MS } from "../serve/server";
import { waitForShutdownSignal } from "../serve/shutdown";
import type { Command } from "./main";
import { numberFlag } from "./main";

const USAGE = `Usage: esmkit serve [--model DIR] [options]

Serve the model over HTTP with the SageMaker inference contract:
GET /ping, POST /invocations, GET /execution-parameters.

  --model DIR               model directory                                /opt/ml/model
  --host HOST               address to bind (containers: 0.0.0.0)          127.0.0.1
  --port N                  port; without it SAGEMAKER_BIND_TO_PORT, else  8080
  --max-batch-size N        sequences per model call                       ${SERVER_DEFAULTS.maxBatchSize}
  --max-wait-ms N           wait for a batch to fill, ms                   ${SERVER_DEFAULTS.maxWaitMs}
  --max-queue N             sequences waiting before 503 + Retry-After     ${SERVER_DEFAULTS.maxQueue}
  --timeout-ms N            per request, ms (504 after)                    ${SERVER_DEFAULTS.timeoutMs}
  --max-sequences N         sequences per request (413 over it)            ${SERVER_DEFAULTS.maxSequencesPerRequest}
  --max-payload-mb F        request body limit; else SAGEMAKER_MAX_PAYLOAD_IN_MB, else 6
  --too-long POLICY         truncate (flagged "truncated": true) | reject  truncate
  --grace-ms N              on SIGTERM/SIGINT, time to finish requests     ${DEFAULT_GRACE_MS}
  --quiet                   no per-request log lines

Batch Transform (SAGEMAKER_BATCH=true) raises the defaults of --max-sequences to
${SERVER_DEFAULTS.batchMaxSequencesPerRequest}, --timeout-ms to ${SERVER_DEFAULTS.batchTimeoutMs} and --max-queue to hold full requests.
`;

/** The flag behind each ServerLimits field, for messages. */
const FLAG_OF: Record<string, string> = {
  maxBatchSize: "--max-batch-size",
  maxWaitMs: "--max-wait-ms",
  maxQueue: "--max-queue",
  timeoutMs: "--timeout-ms",
  maxSequencesPerRequest: "--max-sequences",
  maxPayloadBytes: "--max-payload-mb (in bytes)",
};

function portFrom(flag: string | undefined, env: string | undefined): number {
  const fromFlag = numberFlag("port", flag);
  const port = fromFlag ?? (env?.trim() ? Number(env) : 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(
      fromFlag === undefined
        ? `SAGEMAKER_BIND_TO_PORT=${JSON.stringify(env)} is not a port (0-65535)`
        : `--port expects 0-65535, got ${port}`,
      { port: flag ?? env },
    );
  }
  return port;
}

export const serveCommand: Command = {
  summary: "serve the model over HTTP (SageMaker /ping, /invocations)",
  usage: USAGE,
  async run(argv) {
    const { values: v } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        model: { type: "string" },
        host: { type: "string" },
        port: { type: "string" },
        "max-batch-size": { type: "string" },
        "max-wait-ms": { type: "string" },
        "max-queue": { type: "string" },
        "timeout-ms": { type: "string" },
        "max-sequences": { type: "string" },
        "max-payload-mb": { type: "string" },
        "too-long": { type: "string" },
        "grace-ms": { type: "string" },
        quiet: { type: "boolean" },
      },
    });
    const tooLong = v["too-long"];
    if (tooLong !== undefined && !TOO_LONG_POLICIES.includes(tooLong as TooLongPolicy)) {
      throw new ConfigError(
        `--too-long expects one of ${TOO_LONG_POLICIES.join(", ")}, got "${tooLong}"`,
        { tooLong },
      );
    }
    const payloadMb = numberFlag("max-payload-mb", v["max-payload-mb"], "float");
    const graceMs = numberFlag("grace-ms", v["grace-ms"]) ?? DEFAULT_GRACE_MS;
    if (graceMs < 0) throw new ConfigError(`--grace-ms must be >= 0, got ${graceMs}`, { graceMs });
    const port = portFrom(v.port, process.env.SAGEMAKER_BIND_TO_PORT);
    const host = v.host ?? "127.0.0.1";
    const modelDir = v.model ?? "/opt/ml/model";
    const limits: ServerLimits = {
      maxBatchSize: numberFlag("max-batch-size", v["max-batch-size"]),
      maxWaitMs: numberFlag("max-wait-ms", v["max-wait-ms"], "float"),
      maxQueue: numberFlag("max-queue", v["max-queue"]),
      timeoutMs: numberFlag("timeout-ms", v["timeout-ms"]),
      maxSequencesPerRequest: numberFlag("max-sequences", v["max-sequences"]),
      maxPayloadBytes: payloadMb === undefined ? undefined : Math.floor(payloadMb * 1024 * 1024),
      tooLong: tooLong as TooLongPolicy | undefined,
    };
    // Every flag and SAGEMAKER_* value is checked before the model loads (which takes
    // time and starts worker threads).
    try {
      resolveServerConfig(limits);
    } catch (e) {
      const flag = e instanceof ConfigError ? FLAG_OF[e.context.name as string] : undefined;
      if (!flag) throw e;
      throw new ConfigError(
        (e as Error).message.replace(/^\w+/, flag),
        (e as ConfigError).context,
        {
          cause: e,
        },
      );
    }

    const predictor = await loadPredictor(modelDir);
    // From here on the worker threads keep the process alive: every way out of this
    // block, a failed listen (EADDRINUSE) included, stops them.
    try {
      const server = createServer({ predictor, ...limits, log: v.quiet ? false : undefined });
      const address = await server.listen(port, host);
      const shutdown = waitForShutdownSignal();
      const c = server.config;
      const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
      process.stderr.write(
        `esmkit serve: listening on http://${shown}:${address.port} (model ${modelDir}: ` +
          `labels ${predictor.labels.join(", ")}, max length ${predictor.maxLength}; ` +
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
};
