/**
 * The serve container's embeddings mode: /invocations answers protein embeddings
 * instead of class probabilities, so a proteome can be embedded with Batch Transform
 * from the same image (`esmkit sagemaker transform --embed`).
 *
 * Chosen by the server options, else the environment:
 *   ESMKIT_SERVE_MODE    "predict" (default) or "embed"
 *   ESMKIT_EMBED_POOLING "mean" (default: residues only, no <cls>/<eos>) or "cls"
 *   ESMKIT_EMBED_LAYER   hidden state, transformers' numbering (default: the last;
 *                        negative counts from the end)
 *
 * Each answer is `{"id"?, "embedding": [hidden_size floats], "length", "truncated"}`:
 * `length` counts the residues sent, `truncated` says only the first max_length - 2
 * were embedded. Floats are written with 9 significant digits, which round-trip float32.
 */
import { ConfigError } from "../errors";
import type { EmbeddingRequest, Predictor } from "./predictor";

export const SERVE_MODES = ["predict", "embed"] as const;
export type ServeMode = (typeof SERVE_MODES)[number];

export interface EmbeddingModeOptions {
  /** Answer embeddings (default: ESMKIT_SERVE_MODE === "embed"). */
  embed?: boolean;
  /** Default ESMKIT_EMBED_POOLING, else "mean". */
  pooling?: string;
  /** Default ESMKIT_EMBED_LAYER, else the last hidden state. */
  layer?: number;
}

export interface EmbeddingAnswer {
  id?: string;
  embedding: number[];
  length: number;
  truncated: boolean;
}

type Env = Record<string, string | undefined>;

/** Whether the server embeds, from the options and the environment (no model needed). */
export function embeddingMode(options: EmbeddingModeOptions, env: Env): boolean {
  if (options.embed !== undefined) return options.embed;
  const raw = env.ESMKIT_SERVE_MODE?.trim();
  if (raw === undefined || raw === "") return false;
  if (!(SERVE_MODES as readonly string[]).includes(raw)) {
    throw new ConfigError(
      `ESMKIT_SERVE_MODE=${JSON.stringify(raw)} is not valid; expected ${SERVE_MODES.join(" or ")}`,
      { value: raw },
    );
  }
  return raw === "embed";
}

/**
 * The embedding request of an embeddings-mode server, checked against the model
 * (`numLayers`); undefined in predict mode.
 */
export function resolveEmbeddingRequest(
  options: EmbeddingModeOptions,
  env: Env,
  predictor: Pick<Predictor, "embed" | "numLayers">,
): EmbeddingRequest | undefined {
  if (!embeddingMode(options, env)) return undefined;
  if (!predictor.embed) {
    throw new ConfigError("This model's predictor cannot compute embeddings", {});
  }
  const pooling = options.pooling ?? (env.ESMKIT_EMBED_POOLING?.trim() || "mean");
  if (pooling !== "mean" && pooling !== "cls") {
    throw new ConfigError(
      `embedding pooling ${JSON.stringify(pooling)} is not valid (ESMKIT_EMBED_POOLING or --pooling); expected mean or cls`,
      { pooling },
    );
  }
  const rawLayer = env.ESMKIT_EMBED_LAYER?.trim();
  const layer = options.layer ?? (rawLayer ? Number(rawLayer) : undefined);
  const n = predictor.numLayers;
  if (layer === undefined) {
    if (n === undefined) throw new ConfigError("The predictor does not say its layer count", {});
    return { pooling, layer: n };
  }
  const bad = !Number.isInteger(layer) || (n !== undefined && (layer < -(n + 1) || layer > n));
  if (bad || (n === undefined && layer < 0)) {
    throw new ConfigError(
      `embedding layer ${rawLayer !== undefined && options.layer === undefined ? `ESMKIT_EMBED_LAYER=${JSON.stringify(rawLayer)}` : layer} is out of range: the model has ${n} layers, so hidden states 0..${n} (or -1..-${(n ?? 0) + 1} from the end)`,
      { layer, numLayers: n },
    );
  }
  return { pooling, layer: layer < 0 ? layer + n! + 1 : layer };
}

/** One answer; floats with 9 significant digits (exact for float32). */
export function toEmbeddingAnswer(
  vector: Float32Array,
  sequence: { length: number; truncated: boolean },
  id?: string,
): EmbeddingAnswer {
  const embedding = Array.from(vector, (x) => Number(x.toPrecision(9)));
  const body = { embedding, length: sequence.length, truncated: sequence.truncated };
  return id === undefined ? body : { id, ...body };
}

/** Whether an Accept header asks for JSON Lines. */
export function acceptsJsonLines(accept: string | undefined): boolean {
  return /application\/(x-)?jsonl(ines)?|application\/x-ndjson/i.test(accept ?? "");
}
