/**
 * AWS SDK clients for S3, SageMaker and the SageMaker runtime, built from the standard
 * chain (environment, shared config and credentials files, SSO, container and instance
 * roles) plus explicit settings. The SDK packages are loaded on first use, so importing
 * esmkit (or running `esmkit serve`) does not pay for them.
 *
 * `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) points S3 at a compatible store or a
 * local emulator; with a custom endpoint, S3 uses path-style URLs and sends checksums
 * only where the API requires them, which most S3-compatible stores need.
 */
import type { S3Client } from "@aws-sdk/client-s3";
import type { SageMakerClient } from "@aws-sdk/client-sagemaker";
import type { SageMakerRuntimeClient } from "@aws-sdk/client-sagemaker-runtime";
import { rememberSecret } from "./errors";

export type S3Sdk = typeof import("@aws-sdk/client-s3");
export type SageMakerSdk = typeof import("@aws-sdk/client-sagemaker");
export type SageMakerRuntimeSdk = typeof import("@aws-sdk/client-sagemaker-runtime");
export type LibStorage = typeof import("@aws-sdk/lib-storage");

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface AwsOptions {
  /** Region; default AWS_REGION / AWS_DEFAULT_REGION / the profile's region. */
  region?: string;
  /** Endpoint URL for every service (S3-compatible store, local emulator). */
  endpoint?: string;
  /** Explicit credentials; default the SDK's credential chain. Never logged. */
  credentials?: AwsCredentials;
  /** Path-style S3 URLs; default true when a custom endpoint is set. */
  forcePathStyle?: boolean;
  /** Attempts per call, retries included (SDK default 3). */
  maxAttempts?: number;
}

let defaults: AwsOptions = {};

/** Settings used by every AWS call that is not given its own (e.g. from a notebook). */
export function configureAws(options: AwsOptions): void {
  rememberSecret(options.credentials?.secretAccessKey);
  rememberSecret(options.credentials?.sessionToken);
  rememberSecret(options.credentials?.accessKeyId);
  defaults = { ...options };
}

// The SDK warns once per process that releases after January 2027 need Node 22; the
// pinned release supports the Node 20 this package targets, so the warning is noise.
function quietNodeVersionWarning() {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
}

export function s3Sdk(): S3Sdk {
  quietNodeVersionWarning();
  return require("@aws-sdk/client-s3");
}
export function sageMakerSdk(): SageMakerSdk {
  quietNodeVersionWarning();
  return require("@aws-sdk/client-sagemaker");
}
export function sageMakerRuntimeSdk(): SageMakerRuntimeSdk {
  quietNodeVersionWarning();
  return require("@aws-sdk/client-sagemaker-runtime");
}
export function libStorage(): LibStorage {
  return require("@aws-sdk/lib-storage");
}

function resolve(options: AwsOptions | undefined): AwsOptions {
  return { ...defaults, ...options };
}

function common(o: AwsOptions) {
  return {
    ...(o.region ? { region: o.region } : {}),
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    ...(o.credentials ? { credentials: o.credentials } : {}),
    ...(o.maxAttempts ? { maxAttempts: o.maxAttempts } : {}),
  };
}

/** The S3 endpoint in effect when one is configured (explicitly or by environment). */
export function customS3Endpoint(options?: AwsOptions): string | undefined {
  const o = resolve(options);
  if (o.endpoint) return o.endpoint;
  if (process.env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS === "true") return undefined;
  return process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined;
}

export function s3Client(options?: AwsOptions): S3Client {
  const o = resolve(options);
  const custom = customS3Endpoint(o) !== undefined;
  const envPathStyle = process.env.AWS_S3_FORCE_PATH_STYLE;
  const forcePathStyle =
    o.forcePathStyle ?? (envPathStyle !== undefined ? envPathStyle === "true" : custom);
  const checksums =
    custom && !process.env.AWS_REQUEST_CHECKSUM_CALCULATION
      ? {
          requestChecksumCalculation: "WHEN_REQUIRED" as const,
          responseChecksumValidation: "WHEN_REQUIRED" as const,
        }
      : {};
  const { S3Client } = s3Sdk();
  return new S3Client({ ...common(o), forcePathStyle, ...checksums });
}

export function sageMakerClient(options?: AwsOptions): SageMakerClient {
  const { SageMakerClient } = sageMakerSdk();
  return new SageMakerClient(common(resolve(options)));
}

export function sageMakerRuntimeClient(options?: AwsOptions): SageMakerRuntimeClient {
  const { SageMakerRuntimeClient } = sageMakerRuntimeSdk();
  return new SageMakerRuntimeClient(common(resolve(options)));
}
