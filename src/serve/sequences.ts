/**
 * One protein sequence as received -> the residues the model sees.
 *
 * Policy (the same for the HTTP server and `esmkit predict`):
 * - whitespace anywhere is dropped (pasted sequences carry line breaks), a-z become
 *   A-Z, and one `*` (stop codon) at the very end is removed;
 * - every other character must be a single-letter ESM-2 residue token
 *   (`LAGVSERTIDPKQNFYMHWCXBUZO.-`), otherwise the error names the character and its
 *   1-based residue position (whitespace not counted);
 * - an empty result is an error;
 * - longer than `maxLength - 2` residues (the model's limit without <cls>/<eos>):
 *   `"truncate"` (default) keeps the first residues and flags `truncated: true`, as the
 *   tokenizer's truncation would; `"reject"` fails with a 422.
 */
import { InvalidSequenceError } from "./errors";

/** The single-character tokens of the ESM-2 vocabulary: the residues we accept. */
export const RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO.-";

export type TooLongPolicy = "truncate" | "reject";
export const TOO_LONG_POLICIES: readonly TooLongPolicy[] = ["truncate", "reject"];

export interface NormaliseOptions {
  /** The model's max_length (tokens incl. <cls>/<eos>); no limit when absent. */
  maxLength?: number;
  tooLong?: TooLongPolicy;
  /** Where the sequence came from, for messages: `inputs[3]`, `record "P1" (line 7)`. */
  where?: string;
}

export interface NormalisedSequence {
  /** The residues given to the model (uppercase, possibly truncated). */
  sequence: string;
  /** Residues before truncation. */
  length: number;
  truncated: boolean;
}

const VALID = new Uint8Array(128);
for (const c of RESIDUES) VALID[c.charCodeAt(0)] = 1;

/** Whether a char code is an accepted residue, lowercase included. */
export function isResidueCode(code: number): boolean {
  if (code >= 0x61 && code <= 0x7a) code -= 0x20;
  return code < 128 && VALID[code] === 1;
}

/** The whitespace people paste (ASCII, no-break space, line separators, a BOM). */
export function isSpace(code: number): boolean {
  return (
    code === 0x20 ||
    (code >= 0x09 && code <= 0x0d) ||
    code === 0xa0 ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0xfeff
  );
}

/** `"J"`, or `U+0000` for characters that would not print. */
export function describeCharacter(codePoint: number): string {
  const hex = `U+${codePoint.toString(16).toUpperCase().padStart(4, "0")}`;
  const invisible = codePoint < 0x20 || (codePoint >= 0x7f && codePoint < 0xa0);
  if (invisible || (codePoint >= 0xd800 && codePoint <= 0xdfff) || codePoint > 0xffff) {
    return hex;
  }
  const ch = String.fromCodePoint(codePoint);
  return ch === '"' ? `'"' (${hex})` : `"${ch}"`;
}

function label(where: string | undefined): string {
  return where ? `${where}: ` : "";
}

export function normaliseSequence(raw: string, options: NormaliseOptions = {}): NormalisedSequence {
  const where = options.where;
  const out: string[] = [];
  let residues = 0;
  let star = -1; // residue position of a `*` seen so far
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    if (isSpace(code)) continue;
    residues++;
    if (star >= 0) {
      throw invalidCharacter(0x2a, star, where, " (a stop `*` is only allowed at the end)");
    }
    if (code === 0x2a) {
      star = residues;
      continue;
    }
    if (isResidueCode(code)) {
      out.push(String.fromCharCode(code >= 0x61 ? code - 0x20 : code));
      continue;
    }
    throw invalidCharacter(raw.codePointAt(i)!, residues, where);
  }
  if (out.length === 0) {
    throw new InvalidSequenceError(
      `${label(where)}empty sequence${star >= 0 ? " (only a stop `*`)" : ""}; expected residues from ${RESIDUES}`,
      { where, reason: "empty" },
    );
  }
  const length = out.length;
  const limit = options.maxLength === undefined ? Infinity : options.maxLength - 2;
  if (length <= limit) return { sequence: out.join(""), length, truncated: false };
  if ((options.tooLong ?? "truncate") === "reject") {
    throw new InvalidSequenceError(
      `${label(where)}sequence of ${length} residues is longer than the model's limit of ${limit} residues (max_length ${options.maxLength} includes <cls> and <eos>); shorten it or use the "truncate" policy`,
      { where, reason: "too_long", length, limit },
    );
  }
  return { sequence: out.slice(0, limit).join(""), length, truncated: true };
}

export function invalidCharacter(
  codePoint: number,
  position: number,
  where: string | undefined,
  extra = "",
): InvalidSequenceError {
  return new InvalidSequenceError(
    `${label(where)}invalid character ${describeCharacter(codePoint)} at position ${position}${extra}; valid residues: ${RESIDUES} (lowercase accepted)`,
    {
      where,
      reason: "invalid_character",
      character: String.fromCodePoint(codePoint),
      position,
    },
  );
}
