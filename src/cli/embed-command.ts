import {
  DEFAULT_WINDOW,
  EMBEDDING_POOLINGS,
  embedToParquet,
  LAYER_CONVENTION,
  POOLING_CONVENTION,
} from "../embed";
import { TOO_LONG_POLICIES } from "../serve/sequences";
import { flag } from "../util/flags";
import { progressLine } from "../util/progress";
import { defineCommand } from "./command";

export const embedCommand = defineCommand({
  name: "embed",
  summary: "per-protein (or per-residue) ESM-2 embeddings -> Parquet",
  description: `
Embed proteins with ESM-2 and write a Parquet file with one row per protein, in input
order: id (string), length (int32, residues before truncation), truncated (bool),
embedding (list<float32>, hidden_size values) and, with --per-residue,
residue_embeddings (list<list<float32>>, one list per embedded residue). The numbers
are Hugging Face EsmModel's hidden states (output_hidden_states=True).
Input streams from a local path, http(s):// or s3://; the output (a local path or
s3://) is written whole or not at all.`,
  flags: {
    model: flag.string("Hub id, model directory or PEFT adapter directory", {
      value: "ID|DIR",
      required: true,
    }),
    base: flag.string("base model of an adapter", {
      value: "DIR|HUB_ID",
      defaultText: "its base_model_name_or_path",
    }),
    fasta: flag.string("FASTA input (multi-line records)", { value: "FILE|URL" }),
    csv: flag.string("CSV input with a header row", { value: "FILE|URL" }),
    "id-column": flag.string('CSV id column (without it: "id", else the row number)', {
      value: "NAME",
      requires: ["csv"],
    }),
    "sequence-column": flag.string("CSV sequence column (case-insensitive)", {
      value: "NAME",
      default: "sequence",
      requires: ["csv"],
    }),
    out: flag.string("Parquet file to write (local path or s3://)", {
      value: "FILE",
      required: true,
    }),
    pooling: flag.choice(EMBEDDING_POOLINGS, POOLING_CONVENTION, { default: "mean" }),
    layer: flag.int("hidden state to embed with (see below)", {
      value: "N",
      defaultText: "the last",
    }),
    "per-residue": flag.bool("also write every residue's vector (residue_embeddings)"),
    "batch-size": flag.int("sequences per forward pass", { min: 1, default: 8 }),
    "max-length": flag.int("tokens per sequence, <cls>/<eos> included", {
      min: 3,
      defaultText: "the tokenizer's model_max_length, else 1024",
    }),
    "too-long": flag.choice(
      TOO_LONG_POLICIES,
      "sequences over max length - 2 residues: truncate (truncated = true) or reject",
      { default: "truncate" },
    ),
    window: flag.int("sequences sorted by length together (memory grows with it)", {
      min: 1,
      default: DEFAULT_WINDOW,
    }),
    threads: flag.int("onnxruntime threads", {
      min: 1,
      max: 256,
      defaultText: "ESMKIT_THREADS, else every core",
    }),
    overwrite: flag.bool("replace an existing --out"),
    quiet: flag.bool("no progress or summary"),
  },
  oneOf: [["fasta", "csv"]],
  notes: `
--layer N: ${LAYER_CONVENTION}.
Pooling: ${POOLING_CONVENTION}. The Parquet file's key-value metadata
"esmkit.embeddings" records the model, pooling, layer and these conventions.
pandas: np.stack(pd.read_parquet(FILE)["embedding"]); polars: pl.read_parquet(FILE).`,
  async run(v) {
    const bar = progressLine("embedding", { bytes: true, quiet: v.quiet });
    const started = Date.now();
    const summary = await embedToParquet({
      model: v.model,
      base: v.base,
      fasta: v.fasta,
      csv: v.csv,
      idColumn: v["id-column"],
      sequenceColumn: v["sequence-column"],
      out: v.out,
      pooling: v.pooling,
      layer: v.layer,
      perResidue: v["per-residue"] ?? false,
      batchSize: v["batch-size"],
      maxLength: v["max-length"],
      tooLong: v["too-long"],
      window: v.window,
      threads: v.threads,
      overwrite: v.overwrite ?? false,
      onProgress: (p) => {
        const secs = (Date.now() - started) / 1000;
        const detail = `${p.proteins} proteins, ${(p.proteins / Math.max(secs, 1e-3)).toFixed(1)}/s`;
        if (p.bytes !== undefined) bar.update(p.bytes, p.totalBytes, detail);
        else bar.update(p.proteins, undefined, detail);
      },
    });
    bar.finish(`${summary.rows} proteins`);
    if (!v.quiet) {
      process.stderr.write(
        `esmkit embed: ${summary.rows} proteins (${summary.truncated} truncated) in ${summary.seconds.toFixed(1)} s, ${(summary.rows / Math.max(summary.seconds, 1e-3)).toFixed(1)} proteins/s -> ${summary.out} (${summary.hiddenSize} values per protein, ${summary.pooling} pooling, hidden state ${summary.layer} of 0..${summary.numLayers}${summary.perResidue ? ", per residue too" : ""})\n`,
      );
    }
    return 0;
  },
});
