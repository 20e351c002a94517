/**
 * What `POST /invocations` accepts, by Content-Type, turned into a flat list of raw
 * sequences plus how to regroup the answers:
 *
 * - `application/json` (also when no Content-Type is sent): `{"inputs": "SEQ"}` or
 *   `{"inputs": ["SEQ", ...]}`, optional `"parameters": {...}` (accepted, ignored:
 *   every class probability is always returned), optional `"id": "NAME"` next to a
 *   single sequence (echoed in its answer). Answer: a JSON array, one prediction
 *   per input (a single string gives a list of one, as Hugging Face does).
 * - `application/jsonlines` (`application/x-jsonlines`, `application/jsonl`,
 *   `application/x-ndjson`): one such object per line, blank lines skipped. Answer: one
 *   line per input line, each what that object alone would get as application/json.
 *   In Batch Transform mode (SAGEMAKER_BATCH=true) an `application/json` body that is
 *   not one JSON document but several lines of them (SplitType=Line with MULTI_RECORD)
 *   is read as JSON Lines too.
 * - `text/plain`, `text/x-fasta`, `application/x-fasta`: FASTA (the body starts with
 *   `>`), or else one bare sequence (line breaks ignored). Answer: a JSON array with
 *   the FASTA id on each prediction. A text body that starts with `{` or `[` is JSON
 *   sent with the wrong type (fetch's default): 415 saying so.
 */

import {
  FastaFormatError,
  InvalidSequenceError,
  MalformedRequestError,
  TooManySequencesError,
  UnsupportedMediaTypeError,
} from "./errors";
import { parseFasta, quoteId } from "./fasta";

export type InputFormat = "json" | "jsonlines" | "fasta";

const FORMATS: Record<string, InputFormat> = {
  "application/json": "json",
  "application/jsonlines": "jsonlines",
  "application/x-jsonlines": "jsonlines",
  "application/jsonl": "jsonlines",
  "application/x-ndjson": "jsonlines",
  "text/plain": "fasta",
  "text/x-fasta": "fasta",
  "application/x-fasta": "fasta",
};

export const ACCEPTED_MEDIA_TYPES: readonly string[] = Object.keys(FORMATS);

export interface MediaType {
  /** Lowercase type/subtype without parameters. */
  type: string;
  format: InputFormat;
}

/** Read a Content-Type header; 415 for anything we do not read or a non-UTF-8 charset. */
export function parseMediaType(header: string | undefined): MediaType {
  if (header === undefined || header.trim() === "") {
    return { type: "application/json", format: "json" };
  }
  const [base, ...params] = header.split(";");
  const type = base!.trim().toLowerCase();
  const format = FORMATS[type];
  if (!format) {
    throw new UnsupportedMediaTypeError(
      `Unsupported Content-Type ${JSON.stringify(clip(header, 100))}; send one of: ${ACCEPTED_MEDIA_TYPES.join(", ")}`,
      { contentType: clip(header, 100), accepted: ACCEPTED_MEDIA_TYPES },
    );
  }
  for (const p of params) {
    const [k, v] = p.split("=");
    if (k?.trim().toLowerCase() !== "charset") continue;
    const charset = (v ?? "").trim().replace(/^"|"$/g, "").toLowerCase();
    if (charset !== "utf-8" && charset !== "utf8") {
      throw new UnsupportedMediaTypeError(
        `Unsupported charset ${JSON.stringify(clip(charset, 40))}; send UTF-8`,
        { charset: clip(charset, 40) },
      );
    }
  }
  return { type, format };
}

export interface RawInput {
  /** The sequence as sent. */
  raw: string;
  /** Where it was in the request, for messages: `inputs[2]`, `line 3: inputs`. */
  where: string;
  /** The FASTA id, when there was one. */
  id?: string;
}

export interface ParsedInvocation {
  /** How the answer is written: JSON array, or JSON Lines. */
  format: "json" | "jsonlines";
  inputs: RawInput[];
  /** Inputs per answer group: one group for JSON/FASTA, one per line for JSON Lines. */
  groups: number[];
}

export interface ParseOptions {
  /** Most sequences one request may carry. */
  maxSequences: number;
  /** Batch Transform mode: application/json may hold several JSON lines. */
  batchMode?: boolean;
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}...` : s;
}

function tooMany(count: number, limit: number): TooManySequencesError {
  return new TooManySequencesError(
    `Too many sequences in one request: ${count}; the limit is ${limit} per request (split the request)`,
    { count, limit },
  );
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MalformedRequestError(
      `${where}malformed JSON: ${clip((e as Error).message, 120)}; expected {"inputs": "SEQUENCE"} or {"inputs": ["SEQUENCE", ...]}`,
      { reason: "json" },
    );
  }
}

/** Validate one `{"inputs": ...}` document and append its sequences. */
function collectInputs(
  doc: unknown,
  prefix: string,
  out: RawInput[],
  options: ParseOptions,
): number {
  const shape = 'expected {"inputs": "SEQUENCE"} or {"inputs": ["SEQUENCE", ...]}';
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new MalformedRequestError(
      `${prefix}the body must be a JSON object, got ${Array.isArray(doc) ? "an array" : doc === null ? "null" : typeof doc}; ${shape}`,
      { reason: "shape" },
    );
  }
  const obj = doc as Record<string, unknown>;
  if (!("inputs" in obj)) {
    throw new MalformedRequestError(`${prefix}missing "inputs"; ${shape}`, { reason: "shape" });
  }
  const params = obj.parameters;
  if (
    params !== undefined &&
    (typeof params !== "object" || params === null || Array.isArray(params))
  ) {
    throw new MalformedRequestError(`${prefix}"parameters" must be an object when given`, {
      reason: "shape",
    });
  }
  const inputs = obj.inputs;
  // An "id" string names a single sequence; answers carry it back (Batch Transform).
  const id = obj.id;
  if (id !== undefined && (typeof id !== "string" || typeof inputs !== "string")) {
    throw new MalformedRequestError(
      `${prefix}"id" must be a string, next to a single "inputs" string`,
      { reason: "shape" },
    );
  }
  if (typeof inputs === "string") {
    if (out.length + 1 > options.maxSequences) throw tooMany(out.length + 1, options.maxSequences);
    out.push(
      id === undefined
        ? { raw: inputs, where: `${prefix}inputs` }
        : { raw: inputs, where: `${prefix}inputs (id ${quoteId(id)})`, id },
    );
    return 1;
  }
  if (!Array.isArray(inputs)) {
    throw new MalformedRequestError(
      `${prefix}"inputs" must be a string or an array of strings, got ${inputs === null ? "null" : typeof inputs}`,
      { reason: "shape" },
    );
  }
  if (inputs.length === 0) {
    throw new InvalidSequenceError(
      `${prefix}"inputs" is an empty array; send at least one sequence`,
      {
        reason: "empty",
      },
    );
  }
  if (out.length + inputs.length > options.maxSequences) {
    throw tooMany(out.length + inputs.length, options.maxSequences);
  }
  for (let i = 0; i < inputs.length; i++) {
    const v = inputs[i];
    if (typeof v !== "string") {
      throw new MalformedRequestError(
        `${prefix}inputs[${i}] must be a string, got ${Array.isArray(v) ? "an array" : v === null ? "null" : typeof v}`,
        { reason: "shape", index: i },
      );
    }
    out.push({ raw: v, where: `${prefix}inputs[${i}]` });
  }
  return inputs.length;
}

function parseJsonLines(text: string, options: ParseOptions): ParsedInvocation {
  const inputs: RawInput[] = [];
  const groups: number[] = [];
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!;
    if (line.trim() === "") continue;
    const prefix = `line ${n + 1}: `;
    groups.push(collectInputs(parseJson(line, prefix), prefix, inputs, options));
  }
  if (groups.length === 0) {
    throw new InvalidSequenceError("The body has no JSON lines; send one JSON object per line", {
      reason: "empty",
    });
  }
  return { format: "jsonlines", inputs, groups };
}

function parseFastaBody(text: string, options: ParseOptions): ParsedInvocation {
  const trimmed = text.replace(/^[\s\ufeff]+/, "");
  if (trimmed === "") {
    // normaliseSequence reports the empty sequence with its 422.
    return { format: "json", inputs: [{ raw: "", where: "sequence" }], groups: [1] };
  }
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    // fetch() labels string bodies text/plain: say so rather than report "{" as a residue.
    throw new UnsupportedMediaTypeError(
      'The body looks like JSON but was sent as text (FASTA); send it with "Content-Type: application/json"',
      { reason: "json_as_text" },
    );
  }
  if (!trimmed.startsWith(">")) {
    return { format: "json", inputs: [{ raw: text, where: "sequence" }], groups: [1] };
  }
  const records = parseFasta(text);
  if (records.length > options.maxSequences) throw tooMany(records.length, options.maxSequences);
  if (records.length === 0) throw new FastaFormatError("The FASTA has no records", {});
  const inputs = records.map((r) => ({
    raw: r.sequence,
    where: `record ${quoteId(r.id)} (line ${r.line})`,
    id: r.id,
  }));
  return { format: "json", inputs, groups: [inputs.length] };
}

/** Parse a decoded body according to its media type. */
export function parseInvocation(
  text: string,
  media: MediaType,
  options: ParseOptions,
): ParsedInvocation {
  if (media.format === "fasta") return parseFastaBody(text, options);
  if (media.format === "jsonlines") return parseJsonLines(text, options);
  let doc: unknown;
  try {
    doc = parseJson(text, "");
  } catch (e) {
    if (options.batchMode && /\n\s*\S/.test(text.trim())) return parseJsonLines(text, options);
    throw e;
  }
  const inputs: RawInput[] = [];
  return { format: "json", inputs, groups: [collectInputs(doc, "", inputs, options)] };
}
