/**
 * Errors of the serving layer. Each failure is its own class with context fields;
 * `HTTP_ERRORS` below is the one place that maps classes to an HTTP status and a
 * stable `type` string, and `toHttpError` turns anything thrown into the JSON error
 * body every non-2xx answer carries: `{"error": {"type", "message", "status"}}`.
 */
import { EsmKitError } from "../errors";

export class ServeError extends EsmKitError {
  /** The HTTP status this error is answered with (from `HTTP_ERRORS`). */
  get status(): number {
    return lookup(this).status;
  }
  /** The stable machine-readable name used in the JSON body. */
  get type(): string {
    return lookup(this).type;
  }
}

/** Not JSON, not UTF-8, or JSON of the wrong shape (`{"inputs": 5}`). */
export class MalformedRequestError extends ServeError {}
/** The client took too long to send its request. */
export class RequestTimeoutError extends ServeError {}
/** Request headers over Node's limit (16 KiB). */
export class HeadersTooLargeError extends ServeError {}
/** A route that does not exist. */
export class NotFoundError extends ServeError {}
/** A route that exists but not for this method; `context.allow` lists the methods. */
export class MethodNotAllowedError extends ServeError {}
/** A body over the payload limit; `context.limitBytes`. */
export class PayloadTooLargeError extends ServeError {}
/** More sequences than one request may carry; `context.count`, `context.limit`. */
export class TooManySequencesError extends ServeError {}
/** A Content-Type (or charset) that /invocations does not read. */
export class UnsupportedMediaTypeError extends ServeError {}
/** An empty sequence, a bad residue (`context.character`, `context.position`), or too long. */
export class InvalidSequenceError extends ServeError {}
/** FASTA that cannot be read: data before a header, an empty record; `context.line`. */
export class FastaFormatError extends ServeError {}
/** The prediction queue is full; `context.retryAfterSeconds`. */
export class QueueFullError extends ServeError {}
/** The server is draining after SIGTERM and takes no new work. */
export class ShuttingDownError extends ServeError {}
/** A request waited longer than the per-request timeout; `context.timeoutMs`. */
export class PredictionTimeoutError extends ServeError {}
/** The predictor failed or answered with the wrong shape. */
export class PredictionError extends ServeError {}

type ErrorClass = abstract new (...args: never[]) => Error;

/** Error class -> HTTP status and type. First match wins, so subclasses go first. */
const HTTP_ERRORS: ReadonlyArray<readonly [ErrorClass, number, string]> = [
  [MalformedRequestError, 400, "malformed_request"],
  [NotFoundError, 404, "not_found"],
  [MethodNotAllowedError, 405, "method_not_allowed"],
  [RequestTimeoutError, 408, "request_timeout"],
  [PayloadTooLargeError, 413, "payload_too_large"],
  [TooManySequencesError, 413, "too_many_sequences"],
  [UnsupportedMediaTypeError, 415, "unsupported_media_type"],
  [InvalidSequenceError, 422, "invalid_sequence"],
  [FastaFormatError, 422, "invalid_fasta"],
  [HeadersTooLargeError, 431, "headers_too_large"],
  [QueueFullError, 503, "queue_full"],
  [ShuttingDownError, 503, "shutting_down"],
  [PredictionTimeoutError, 504, "timeout"],
  [PredictionError, 500, "prediction_failed"],
];

function lookup(e: unknown): { status: number; type: string } {
  for (const [cls, status, type] of HTTP_ERRORS) {
    if (e instanceof cls) return { status, type };
  }
  return { status: 500, type: "internal_error" };
}

export interface HttpErrorBody {
  error: { type: string; message: string; status: number };
}

export interface HttpError {
  status: number;
  headers: Record<string, string>;
  body: HttpErrorBody;
}

/** Messages are for people, never a copy of the payload: cap them. */
const MAX_MESSAGE = 500;

/**
 * The HTTP answer for anything thrown while handling a request. Errors we did not
 * raise on purpose become a 500 with a generic message (the details go to the log).
 */
export function toHttpError(e: unknown, requestId?: string): HttpError {
  const { status, type } = lookup(e);
  const headers: Record<string, string> = {};
  let message: string;
  if (e instanceof ServeError) {
    message = e.message;
    const retry = e.context.retryAfterSeconds;
    if (typeof retry === "number") headers["Retry-After"] = String(Math.max(1, Math.ceil(retry)));
    const allow = e.context.allow;
    if (Array.isArray(allow)) headers.Allow = allow.join(", ");
  } else {
    message = `Internal error${requestId ? ` (request ${requestId})` : ""}; see the server log`;
  }
  if (message.length > MAX_MESSAGE) message = `${message.slice(0, MAX_MESSAGE - 1)}…`;
  return { status, headers, body: { error: { type, message, status } } };
}

export function isServeError(e: unknown): e is ServeError {
  return e instanceof ServeError;
}
