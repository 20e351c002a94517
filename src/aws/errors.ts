/**
 * AWS failures as esmkit errors, with every trace of a credential removed. SDK errors
 * carry the parsed response body as fields (S3's InvalidAccessKeyId has an
 * `AWSAccessKeyId` field), so the raw SDK error is never kept as `cause`: a scrubbed
 * copy of its name and message is.
 */
import { EsmKitError, StorageError } from "../errors";

/** An AWS call that failed. Context: operation, code, httpStatus, requestId (never keys). */
export class AwsError extends EsmKitError {}

export function isAwsError(e: unknown): e is AwsError {
  return e instanceof AwsError;
}

const extraSecrets = new Set<string>();

/** Remember a secret given in code (not the environment) so that messages never show it. */
export function rememberSecret(value: string | undefined): void {
  if (value && value.length >= 4) extraSecrets.add(value);
}

const SECRET_ENV = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"] as const;
// Access key ids (long-term AKIA, temporary ASIA) and the signing fields of a request.
const KEY_ID = /\b(?:AKIA|ASIA)[A-Z0-9]{8,}\b/g;
const SIGNED_QUERY = /(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s"'<]+/gi;
const AUTH_HEADER = /((?:Credential|Signature)=)[^,\s"'<]+/g;

/** `text` with access keys, secrets, session tokens and request signatures replaced by ***. */
export function scrubSecrets(text: string, env: NodeJS.ProcessEnv = process.env): string {
  let out = text;
  const secrets = [...SECRET_ENV.map((n) => env[n]), ...extraSecrets].filter(
    (s): s is string => typeof s === "string" && s.length >= 4,
  );
  // Longest first, so a secret that contains another is removed whole.
  for (const s of secrets.sort((a, b) => b.length - a.length)) out = out.split(s).join("***");
  return out.replace(KEY_ID, "***").replace(SIGNED_QUERY, "$1***").replace(AUTH_HEADER, "$1***");
}

interface SdkErrorShape {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string };
}

/** A hint for failures that are not about the request itself. */
function hintFor(code: string, message: string): string {
  if (code === "CredentialsProviderError" || /Could not load credentials/i.test(message)) {
    return " (no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role)";
  }
  if (/Region is missing/i.test(message)) return " (set AWS_REGION or pass region)";
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|socket hang up/i.test(`${code} ${message}`)) {
    const endpoint = process.env.AWS_ENDPOINT_URL;
    return endpoint ? ` (endpoint ${scrubSecrets(endpoint)} from AWS_ENDPOINT_URL)` : "";
  }
  return "";
}

/**
 * Turn anything an SDK call threw into an AwsError naming the operation and the
 * resource; esmkit errors pass through unchanged. `notFound` (for S3 reads) maps
 * missing buckets and keys to a StorageError instead.
 */
export function toAwsError(
  operation: string,
  e: unknown,
  context: Record<string, unknown> = {},
  options: { notFound?: string } = {},
): EsmKitError {
  if (e instanceof EsmKitError) return e;
  const err = (e ?? {}) as SdkErrorShape;
  const code = err.name && err.name !== "Error" ? err.name : (err.code ?? "Error");
  const status = err.$metadata?.httpStatusCode;
  const raw = typeof err.message === "string" && err.message ? err.message : String(e);
  const message = scrubSecrets(raw);
  const scrubbedContext = JSON.parse(scrubSecrets(JSON.stringify(context))) as Record<
    string,
    unknown
  >;
  const fields = {
    operation,
    code,
    httpStatus: status,
    requestId: err.$metadata?.requestId,
    ...scrubbedContext,
  };
  const cause = new Error(message);
  cause.name = code;
  if (
    options.notFound &&
    (status === 404 || ["NoSuchKey", "NoSuchBucket", "NotFound"].includes(code))
  ) {
    return new StorageError(
      scrubSecrets(`${options.notFound} (${code}: ${message})`),
      { ...fields },
      { cause },
    );
  }
  return new AwsError(
    `${operation} failed: ${code}: ${message}${status ? ` (HTTP ${status})` : ""}${hintFor(code, raw)}`,
    fields,
    { cause },
  );
}

/** Run one SDK call, converting its failure with `toAwsError`. */
export async function awsCall<T>(
  operation: string,
  context: Record<string, unknown>,
  fn: () => Promise<T>,
  options: { notFound?: string } = {},
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toAwsError(operation, e, context, options);
  }
}
