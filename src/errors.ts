/**
 * One base error for everything esmkit throws on purpose, with a subclass per failure
 * domain. Each carries structured context so callers (the CLI, the server) can react
 * without parsing messages.
 */
export class EsmKitError extends Error {
  readonly context: Record<string, unknown>;
  constructor(
    message: string,
    context: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.context = context;
  }
}

/** A bad option, flag or config value. */
export class ConfigError extends EsmKitError {}
/** A checkpoint that cannot be read or does not fit the model. */
export class WeightsError extends EsmKitError {}
/** Tokenizer files or inputs that cannot be used. */
export class TokenizerError extends EsmKitError {}
/** Input data (CSV, FASTA, Parquet) that cannot be used. */
export class DataError extends EsmKitError {}
/** LoRA adapter problems (no target matched, incompatible adapter files). */
export class AdapterError extends EsmKitError {}
/** Backend selection or initialisation failures. */
export class BackendError extends EsmKitError {}
/** Storage (local, http, s3) failures. */
export class StorageError extends EsmKitError {}

export function isEsmKitError(e: unknown): e is EsmKitError {
  return e instanceof EsmKitError;
}
