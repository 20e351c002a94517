/**
 * The proteins of the real-length benchmarks: the first `count` proteins of 100..512
 * residues of the bundled DeepLoc sample (data/deeploc-sample.csv), in file order, as
 * token ids (`<cls>` ... `<eos>`).
 */
import { createReadStream } from "node:fs";
import * as path from "node:path";
import { readCsv } from "../src/data/csv";
import { EsmTokenizer } from "../src/tokenizer/esm-tokenizer";

export const DEEPLOC_SAMPLE = path.resolve(__dirname, "..", "..", "data", "deeploc-sample.csv");

export async function deeplocProteins(
  count: number,
  csv = DEEPLOC_SAMPLE,
): Promise<{ sequences: number[][]; padId: number }> {
  const tok = new EsmTokenizer();
  const sequences: number[][] = [];
  let column = -1;
  for await (const rec of readCsv(createReadStream(csv))) {
    if (column < 0) {
      column = rec.fields.indexOf("Sequence");
      if (column < 0) throw new Error(`${csv} has no Sequence column`);
      continue;
    }
    const seq = rec.fields[column] ?? "";
    if (seq.length < 100 || seq.length > 512) continue;
    sequences.push(tok.encode(seq));
    if (sequences.length === count) break;
  }
  if (sequences.length < count)
    throw new Error(`${csv} has only ${sequences.length} proteins of 100..512 residues`);
  return { sequences, padId: tok.padId };
}
