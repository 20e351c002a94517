import { parseArgs } from "node:util";
import { prepare } from "../data/prepare";
import type { Command } from "./main";
import { numberFlag } from "./main";
import { progressLine } from "./progress";

const USAGE = `Usage: esmkit prepare --input CSV|URL --out DIR [options]

Turn the DeepLoc-2.0 table into tokenized train/test Parquet files and stats.json.

  --input PATH|URL          DeepLoc CSV (local path or http(s) URL)        required
  --out DIR                 output directory                               required
  --label-column NAME       0/1 column used as the label                   Membrane
  --min-length N            keep sequences with >= N residues              100
  --max-length N            keep sequences with <= N residues              512
  --token-max-length N      tokenizer max_length (cls/eos included)        512
  --test-size F             fraction in the test split                     0.2
  --seed N                  seed of the random split                       42
  --stratify                keep the class ratio equal in both splits
  --holdout-partition K     test split = DeepLoc partition K (leak-free)
  --overwrite               replace an existing output directory
  --quiet                   no progress output
`;

export const prepareCommand: Command = {
  summary: "DeepLoc CSV -> tokenized train/test Parquet + stats.json",
  usage: USAGE,
  async run(argv) {
    const { values: v } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        input: { type: "string" },
        out: { type: "string" },
        "label-column": { type: "string" },
        "min-length": { type: "string" },
        "max-length": { type: "string" },
        "token-max-length": { type: "string" },
        "test-size": { type: "string" },
        seed: { type: "string" },
        stratify: { type: "boolean" },
        "holdout-partition": { type: "string" },
        overwrite: { type: "boolean" },
        quiet: { type: "boolean" },
      },
    });
    if (!v.input || !v.out) {
      process.stderr.write(`esmkit prepare: --input and --out are required\n\n${USAGE}`);
      return 2;
    }
    const bar = progressLine("reading", { bytes: true, quiet: v.quiet });
    const result = await prepare({
      input: v.input,
      out: v.out,
      labelColumn: v["label-column"],
      minLength: numberFlag("min-length", v["min-length"]),
      maxLength: numberFlag("max-length", v["max-length"]),
      tokenMaxLength: numberFlag("token-max-length", v["token-max-length"]),
      testSize: numberFlag("test-size", v["test-size"], "float"),
      seed: numberFlag("seed", v.seed),
      stratify: v.stratify,
      holdoutPartition: numberFlag("holdout-partition", v["holdout-partition"]),
      overwrite: v.overwrite,
      onProgress: (p) => {
        if (p.phase === "read" && p.bytes !== undefined)
          bar.update(p.bytes, p.total, `${p.rows} rows`);
        if (p.phase === "split") bar.finish(`${p.rows} rows kept`);
      },
    });
    const s = result.stats;
    const dropped = Object.entries(s.dropped)
      .map(([k, r]) => `${k} ${r!.count} (first lines ${r!.firstLines.slice(0, 5).join(", ")})`)
      .join("; ");
    const filtered = Object.entries(s.filtered)
      .map(([k, r]) => `${k} ${r!.count}`)
      .join(", ");
    const lines = [
      `read ${s.rowsRead} rows from ${s.source}`,
      `dropped: ${dropped || "none"}`,
      `filtered by length ${s.options.minLength}..${s.options.maxLength}: ${filtered || "none"}`,
      `kept ${s.rowsKept} rows (${s.labelColumn}=1: ${s.classCounts["1"]}, ${((100 * (s.classCounts["1"] ?? 0)) / s.rowsKept).toFixed(1)} %), truncated by the tokenizer: ${s.truncated}`,
      `train ${s.splits.train.rows} (${s.splits.train.classCounts["1"]} positive), test ${s.splits.test.rows} (${s.splits.test.classCounts["1"]} positive)`,
      `balanced class weights: ${s.classWeights?.map((w) => w.toFixed(4)).join(", ") ?? "n/a (a class is missing from the training split)"}`,
      `wrote ${result.files.join(", ")} to ${result.out} in ${s.seconds}s`,
    ];
    if (s.duplicateLabelConflicts.count > 0) {
      lines.splice(
        2,
        0,
        `duplicates with another label than the kept row: ${s.duplicateLabelConflicts.count} (first lines ${s.duplicateLabelConflicts.firstLines.slice(0, 5).join(", ")}; the first row's label was kept)`,
      );
    }
    if (!v.quiet) process.stderr.write(`${lines.join("\n")}\n`);
    // Warnings are about the data, not progress: shown even with --quiet.
    for (const w of s.warnings) process.stderr.write(`esmkit prepare: warning: ${w}\n`);
    return 0;
  },
};
