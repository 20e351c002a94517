import { prepare } from "../data/prepare";
import { flag } from "../util/flags";
import { progressLine } from "../util/progress";
import { defineCommand } from "./command";

export const prepareCommand = defineCommand({
  name: "prepare",
  summary: "DeepLoc CSV -> tokenized train/test Parquet + stats.json",
  description: "Turn the DeepLoc-2.0 table into tokenized train/test Parquet files and stats.json.",
  flags: {
    input: flag.string("DeepLoc CSV (local path or http(s) URL)", {
      value: "PATH|URL",
      required: true,
    }),
    out: flag.string("output directory", { value: "DIR", required: true }),
    "label-column": flag.string("0/1 column used as the label", {
      value: "NAME",
      default: "Membrane",
    }),
    "min-length": flag.int("keep sequences with >= N residues", { min: 0, default: 100 }),
    "max-length": flag.int("keep sequences with <= N residues", { min: 0, default: 512 }),
    "token-max-length": flag.int("tokenizer max_length (<cls>/<eos> included)", {
      min: 3,
      default: 512,
    }),
    "test-size": flag.float("fraction in the test split", {
      min: 0,
      max: 1,
      minExclusive: true,
      maxExclusive: true,
      default: 0.2,
    }),
    seed: flag.int("seed of the random split", { default: 42 }),
    stratify: flag.bool("keep the class ratio equal in both splits"),
    "holdout-partition": flag.int("test split = DeepLoc partition K (leak-free)", {
      value: "K",
      conflicts: ["stratify"],
    }),
    overwrite: flag.bool("replace an existing output directory"),
    quiet: flag.bool("no progress output"),
  },
  async run(v) {
    const bar = progressLine("reading", { bytes: true, quiet: v.quiet });
    const result = await prepare({
      input: v.input,
      out: v.out,
      labelColumn: v["label-column"],
      minLength: v["min-length"],
      maxLength: v["max-length"],
      tokenMaxLength: v["token-max-length"],
      testSize: v["test-size"],
      seed: v.seed,
      stratify: v.stratify,
      holdoutPartition: v["holdout-partition"],
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
});
