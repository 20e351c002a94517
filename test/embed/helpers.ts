import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { REPO_ROOT, runPython } from "../helpers/python";

export const FIXTURES = path.join(REPO_ROOT, "test", "fixtures");

/** test/fixtures/embed/NAME.json, written by test/reference/embed_reference.py. */
export interface EmbedReference {
  model: string;
  num_layers: number;
  hidden_size: number;
  max_length: number;
  sequences: [string, string][];
  ids: string[];
  lengths: number[];
  embedded_residues: number[];
  mean: Record<string, number[][]>;
  cls: Record<string, number[][]>;
  per_residue: Record<string, number[][][]>;
  last_equals_last_hidden_state: boolean;
  last_is_final_norm_of_last_layer: boolean;
  last_differs_from_last_layer_output: boolean;
}

export function readReference(name: string): EmbedReference {
  return JSON.parse(readFileSync(path.join(FIXTURES, "embed", `${name}.json`), "utf8"));
}

/** Largest |a - b| over two equally long vectors (fails on a length mismatch). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, what: string): number {
  assert.equal(a.length, b.length, `${what}: length`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) max = d; // NaN counts as a mismatch
  }
  return max;
}

/**
 * The random-weight checkpoint of the facebook/esm2_t6_8M_UR50D architecture, built by
 * esm_reference.py into test/.generated (shared with test/model/reference-8m.test.ts,
 * same name and hash).
 */
export function checkpoint8m(python: string): string {
  const script = readFileSync(path.join(REPO_ROOT, "test", "reference", "esm_reference.py"));
  const hash = createHash("sha256").update(script).digest("hex").slice(0, 12);
  const dir = path.join(REPO_ROOT, "test", ".generated", `esm2_t6_8M_UR50D-random-${hash}`);
  if (!existsSync(path.join(dir, "expected.json"))) {
    const generated = path.dirname(dir);
    for (const old of existsSync(generated) ? readdirSync(generated) : []) {
      if (old.startsWith("esm2_t6_8M_UR50D-random-"))
        rmSync(path.join(generated, old), { recursive: true, force: true });
    }
    runPython(python, "esm_reference.py", [
      "build",
      dir,
      "--preset",
      "esm2_t6_8M_UR50D",
      "--seed",
      "0",
    ]);
  }
  return dir;
}

/** [id, sequence] pairs of a FASTA text (single-line or multi-line records). */
export function fastaPairs(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const block of text.split(">").slice(1)) {
    const [header, ...lines] = block.split(/\r?\n/);
    out.push([header!.split(/\s/)[0]!, lines.join("").trim()]);
  }
  return out;
}
