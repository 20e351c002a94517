/**
 * The SageMaker inference contract on node:http, no framework:
 *
 *   GET  /ping                   200 {"status": "ok"}; 503 while draining
 *   POST /invocations            predictions (see inputs.ts for bodies, prediction.ts
 *                                for the answer)
 *   GET  /execution-parameters   {"MaxConcurrentTransforms", "BatchStrategy",
 *                                "MaxPayloadInMB"} for Batch Transform
 *
 * Every non-2xx answer is JSON `{"error": {"type", "message", "status"}}` (errors.ts
 * holds the one class -> status table), malformed HTTP included. Every answer carries
 * `X-Request-Id` (the client's, when it sent a sane one). One log line per request,
 * without bodies or headers. Sequences from concurrent requests share predictor calls
 * through the MicroBatcher. `close(graceMs)` drains: the listening socket closes,
 * /ping and /invocations answer 503, in-flight requests finish (up to graceMs).
 */
import { randomUUID } from "node:crypto";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
  STATUS_CODES,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { ConfigError } from "../errors";
import { type BatcherStats, MicroBatcher } from "./batcher";
import { MB, resolveServerConfig, type ServerConfig, type ServerLimits } from "./config";
import {
  acceptsJsonLines,
  type EmbeddingModeOptions,
  resolveEmbeddingRequest,
  toEmbeddingAnswer,
} from "./embeddings";
import {
  HeadersTooLargeError,
  MalformedRequestError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  RequestTimeoutError,
  ShuttingDownError,
  toHttpError,
} from "./errors";
import { parseInvocation, parseMediaType } from "./inputs";
import { checkThreshold, DEFAULT_THRESHOLD, toPrediction } from "./prediction";
import type { ClassProbabilities, Predictor } from "./predictor";
import { normaliseSequence } from "./sequences";

export interface ServerOptions extends ServerLimits {
  predictor: Predictor;
  /**
   * Answer embeddings instead of class probabilities (see embeddings.ts); default from
   * ESMKIT_SERVE_MODE, ESMKIT_EMBED_POOLING and ESMKIT_EMBED_LAYER.
   */
  embeddings?: EmbeddingModeOptions;
  /** Multi-label models: a label is predicted at or above this probability (default 0.5). */
  threshold?: number;
  /** Where SAGEMAKER_* settings come from (default process.env). */
  env?: Record<string, string | undefined>;
  /** One line per request; default: stderr. `false` silences it. */
  log?: ((line: string) => void) | false;
}

export interface EsmKitServer {
  readonly config: ServerConfig;
  /** Predictor calls, items, refusals, timeouts so far. */
  readonly stats: BatcherStats;
  /** Sequences waiting for a batch now. */
  readonly queued: number;
  /** True once close() has begun. */
  readonly draining: boolean;
  /** Start listening (port 0 picks a free port); resolves with the bound address. */
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /** Stop accepting, let in-flight requests finish up to graceMs, then close. */
  close(graceMs?: number): Promise<void>;
}

export const DEFAULT_GRACE_MS = 20_000;
/** Bytes of an over-limit body we read and throw away before cutting the connection. */
const DISCARD_LIMIT = 16 * MB;
/** How long a connection closed after an error still reads what the client sends. */
const LINGER_MS = 2000;
const ROUTES: Record<string, string[]> = {
  "/ping": ["GET", "HEAD"],
  "/invocations": ["POST"],
  "/execution-parameters": ["GET", "HEAD"],
};
const ROUTE_LIST = "GET /ping, POST /invocations, GET /execution-parameters";

/** Printable and short: request paths go into logs and messages. */
function clean(s: string, n = 120): string {
  const printable = s.replace(/[^\x20-\x7e]/g, "?");
  return printable.length > n ? `${printable.slice(0, n)}...` : printable;
}

function requestIdOf(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  return typeof given === "string" && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : randomUUID();
}

/** Read the body up to `limit` bytes; past it, fail at once and discard the rest. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let discarded = 0;
    const discard = (chunk: Buffer) => {
      discarded += chunk.length;
      if (discarded > DISCARD_LIMIT) req.socket.destroy();
    };
    const tooLarge = (size: string) =>
      new PayloadTooLargeError(
        `The body is ${size}, over the limit of ${limit} bytes (${+(limit / MB).toFixed(3)} MB); send fewer or shorter sequences per request`,
        { limitBytes: limit },
      );
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      req.on("data", discard);
      reject(tooLarge(`${declared} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      settled = true;
      chunks.length = 0;
      req.off("data", onData);
      req.on("data", discard);
      reject(tooLarge(`more than ${limit} bytes`));
    };
    req.on("data", onData);
    req.once("end", () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks, size));
    });
    const aborted = (e?: Error) => {
      if (settled) return;
      settled = true;
      reject(e ?? new Error("The client closed the connection before sending the body"));
    };
    req.once("error", aborted);
    req.once("close", () => {
      if (!req.complete) aborted();
    });
  });
}

/**
 * After an answer to a request whose body was not read to the end, the connection
 * cannot carry another request (the rest of the body, or a next request sent in its
 * place, would be taken for body bytes and never answered): answer with
 * `Connection: close`, then close. Node closes such a socket as soon as the answer is
 * written, which resets the connection if the client is still sending, and it may then
 * lose the answer; so the socket keeps reading (and dropping) what arrives, for up to
 * LINGER_MS or DISCARD_LIMIT bytes, or until the client closes its side.
 */
function closeAfterAnswer(socket: Socket): void {
  const linger = () => {
    if (socket.destroyed) return;
    socket.end();
    let dropped = 0;
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));
    socket.on("data", (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > DISCARD_LIMIT) socket.destroy();
    });
    socket.resume();
  };
  // node:http ends a `Connection: close` socket with destroySoon(); linger instead.
  (socket as Socket & { destroySoon?: () => void }).destroySoon = linger;
}

export function createServer(options: ServerOptions): EsmKitServer {
  const { predictor } = options;
  const config = resolveServerConfig(options, options.env ?? process.env);
  const embedding = resolveEmbeddingRequest(
    options.embeddings ?? {},
    options.env ?? process.env,
    predictor,
  );
  const answerOptions = {
    problemType: predictor.problemType,
    threshold: checkThreshold(options.threshold ?? DEFAULT_THRESHOLD, "threshold"),
  };
  const log =
    options.log === false
      ? () => {}
      : (options.log ?? ((line: string) => process.stderr.write(`${line}\n`)));
  const batcherOptions = {
    maxBatchSize: config.maxBatchSize,
    maxWaitMs: config.maxWaitMs,
    maxQueue: config.maxQueue,
    timeoutMs: config.timeoutMs,
    concurrency: predictor.concurrency ?? 1,
  };
  // One batcher: classification, or embeddings in the embeddings mode.
  const classify = embedding
    ? undefined
    : new MicroBatcher<string, ClassProbabilities>(
        (seqs) => predictor.predict(seqs),
        batcherOptions,
      );
  const embedder = embedding
    ? new MicroBatcher<string, Float32Array>(
        (seqs) => predictor.embed!(seqs, embedding),
        batcherOptions,
      )
    : undefined;
  const batcher: Pick<MicroBatcher<string, unknown>, "stats" | "queued" | "close"> = (classify ??
    embedder)!;
  const inflight = new Set<ServerResponse>();
  let emptyWaiters: (() => void)[] = [];
  let draining = false;
  let closing: Promise<void> | undefined;

  const send = (
    res: ServerResponse,
    status: number,
    body: string,
    contentType: string,
    headers: Record<string, string> = {},
  ) => {
    if (res.headersSent || res.destroyed) return;
    if (draining) headers.Connection = "close";
    res.writeHead(status, {
      ...headers,
      "Content-Type": contentType,
      "Content-Length": String(Buffer.byteLength(body)),
    });
    res.end(body);
  };
  const sendJson = (res: ServerResponse, status: number, value: unknown) =>
    send(res, status, JSON.stringify(value), "application/json");

  async function invoke(req: IncomingMessage, res: ServerResponse, signal: AbortSignal) {
    if (draining)
      throw new ShuttingDownError("The server is shutting down; send the request elsewhere");
    const media = parseMediaType(req.headers["content-type"]);
    const body = await readBody(req, config.maxPayloadBytes);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    } catch {
      throw new MalformedRequestError("The body is not valid UTF-8", { reason: "encoding" });
    }
    const parsed = parseInvocation(text, media, {
      maxSequences: config.maxSequencesPerRequest,
      batchMode: config.batchMode,
    });
    const sequences = parsed.inputs.map((input) =>
      normaliseSequence(input.raw, {
        maxLength: predictor.maxLength,
        tooLong: config.tooLong,
        where: input.where,
      }),
    );
    if (embedder) {
      const vectors = await embedder.submit(
        sequences.map((s) => s.sequence),
        signal,
      );
      const answers = vectors.map((v, i) =>
        toEmbeddingAnswer(v, sequences[i]!, parsed.inputs[i]!.id),
      );
      if (media.format === "fasta" && acceptsJsonLines(req.headers.accept)) {
        // A proteome in FASTA (Batch Transform, SplitType None): one line per protein.
        const body = answers.map((a) => JSON.stringify(a)).join("\n");
        send(res, 200, `${body}\n`, "application/jsonlines");
        return;
      }
      if (parsed.format === "json") {
        sendJson(res, 200, answers);
        return;
      }
      const lines: string[] = [];
      let at = 0;
      for (const n of parsed.groups) {
        lines.push(JSON.stringify(answers.slice(at, at + n)));
        at += n;
      }
      const type = media.format === "jsonlines" ? media.type : "application/jsonlines";
      send(res, 200, `${lines.join("\n")}\n`, type);
      return;
    }
    const probabilities = await classify!.submit(
      sequences.map((s) => s.sequence),
      signal,
    );
    const predictions = probabilities.map((p, i) =>
      toPrediction(p, sequences[i]!.truncated, parsed.inputs[i]!.id, answerOptions),
    );
    if (parsed.format === "json") {
      sendJson(res, 200, predictions);
      return;
    }
    const lines: string[] = [];
    let at = 0;
    for (const n of parsed.groups) {
      lines.push(JSON.stringify(predictions.slice(at, at + n)));
      at += n;
    }
    const type = media.format === "jsonlines" ? media.type : "application/jsonlines";
    send(res, 200, `${lines.join("\n")}\n`, type);
  }

  async function route(req: IncomingMessage, res: ServerResponse, signal: AbortSignal) {
    const path = (req.url ?? "/").split("?")[0]!;
    const methods = ROUTES[path];
    if (!methods) {
      throw new NotFoundError(`No route ${clean(path)}; the routes are ${ROUTE_LIST}`, {
        path: clean(path),
      });
    }
    const method = req.method ?? "GET";
    if (!methods.includes(method)) {
      throw new MethodNotAllowedError(
        `${clean(method, 20)} is not allowed on ${path}; use ${methods.join(" or ")}`,
        { allow: methods },
      );
    }
    if (path === "/invocations") return invoke(req, res, signal);
    if (path === "/ping") {
      if (draining) throw new ShuttingDownError("The server is shutting down");
      return sendJson(res, 200, { status: "ok" });
    }
    return sendJson(res, 200, {
      MaxConcurrentTransforms: config.maxConcurrentTransforms,
      BatchStrategy: "MULTI_RECORD",
      MaxPayloadInMB: Math.max(1, Math.floor(config.maxPayloadBytes / MB)),
    });
  }

  const http = createHttpServer((req, res) => {
    const started = process.hrtime.bigint();
    const id = requestIdOf(req);
    res.setHeader("X-Request-Id", id);
    inflight.add(res);
    const abort = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) abort.abort();
      inflight.delete(res);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const status = res.writableFinished ? String(res.statusCode) : "aborted";
      log(
        `${new Date().toISOString()} ${req.method} ${clean(req.url ?? "/")} ${status} ${ms.toFixed(1)}ms ${id}`,
      );
      if (inflight.size === 0) {
        const waiters = emptyWaiters;
        emptyWaiters = [];
        for (const w of waiters) w();
      }
    });
    route(req, res, abort.signal).catch((e: unknown) => {
      if (res.headersSent || res.destroyed) return;
      const err = toHttpError(e, id);
      if (err.status >= 500 && err.status !== 503 && err.status !== 504) {
        const cause = (e as Error)?.cause as Error | undefined;
        log(
          `${new Date().toISOString()} error ${id}: ${clean(String((e as Error)?.stack ?? e), 2000)}${cause ? ` | cause: ${clean(String(cause.stack ?? cause), 2000)}` : ""}`,
        );
      }
      const headers = { ...err.headers };
      if (!req.complete) {
        headers.Connection = "close";
        closeAfterAnswer(req.socket);
      }
      send(res, err.status, JSON.stringify(err.body), "application/json", headers);
    });
  });
  // Keep idle keep-alive sockets open longer than clients and load balancers do: while a
  // long forward pass blocks the event loop, Node's 5 s default closes sockets that
  // clients are about to reuse, and they see ECONNRESET.
  http.keepAliveTimeout = 65_000;
  http.headersTimeout = 66_000;

  // Malformed HTTP never reaches the handler: answer it in JSON too.
  http.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const e =
      err.code === "HPE_HEADER_OVERFLOW"
        ? new HeadersTooLargeError("The request headers are too large")
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? new RequestTimeoutError("The request took too long to arrive")
          : new MalformedRequestError(`Malformed HTTP request (${err.code ?? "parse error"})`);
    const { status, body } = toHttpError(e);
    const text = JSON.stringify(body);
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
    log(`${new Date().toISOString()} - - ${status} bad HTTP (${err.code ?? "parse error"})`);
  });

  const whenIdle = (ms: number) =>
    new Promise<void>((resolve) => {
      if (inflight.size === 0) return resolve();
      const timer = setTimeout(resolve, ms);
      emptyWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });

  return {
    config,
    stats: batcher.stats,
    get queued() {
      return batcher.queued;
    },
    get draining() {
      return draining;
    },
    listen(port = 8080, host = "127.0.0.1") {
      return new Promise((resolve, reject) => {
        const onError = (e: NodeJS.ErrnoException) =>
          reject(
            new ConfigError(
              `Cannot listen on ${host}:${port}: ${e.code ?? e.message}`,
              {
                host,
                port,
              },
              { cause: e },
            ),
          );
        http.once("error", onError);
        http.listen(port, host, () => {
          http.off("error", onError);
          resolve(http.address() as AddressInfo);
        });
      });
    },
    close(graceMs = DEFAULT_GRACE_MS) {
      if (closing) return closing;
      draining = true;
      closing = (async () => {
        // Stops accepting and closes idle keep-alive connections (Node >= 19).
        const closed = new Promise<void>((resolve) => http.close(() => resolve()));
        await whenIdle(graceMs);
        // Past the grace period: work still queued is answered 503, then connections go.
        batcher.close();
        await whenIdle(1000);
        http.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}
