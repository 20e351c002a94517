import { DEEPLOC_LOCATIONS } from "../data/labels";
import { type PrepareStats, prepare } from "../data/prepare";
import { flag, type Kind } from "../util/flags";
import { progressLine } from "../util/progress";
import { PROBLEM_TYPES } from "../util/task";
import { defineCommand } from "./command";

/** Comma-separated column names; names may hold spaces and "/" ("Cell membrane"). */
const columns: Kind<string[]> = {
  placeholder: "A,B,...",
  accepts: "comma-separated column names",
  parse(t) {
    const names = t.split(",").map((p) => p.trim());
    return names.every((n) => n !== "")
      ? { value: names }
      : { expected: "comma-separated column names" };
  },
};

const fmt = (w: number) => w.toFixed(4);

/** The label lines of the summary, by task. */
function labelLines(s: PrepareStats): string[] {
  const task = s.task;
  const split = (name: "train" | "test") => s.splits[name];
  if (task.problemType === "multi_label_classification") {
    const per = task.labels.map(
      (l) =>
        `${l} ${s.classCounts[l]} (train ${split("train").classCounts[l]}, test ${split("test").classCounts[l]})`,
    );
    return [
      `kept ${s.rowsKept} rows, ${task.labels.length} labels; positive rows per label: ${per.join("; ")}`,
      `train ${split("train").rows}, test ${split("test").rows}`,
      `positive weights (negatives / positives in train): ${s.posWeight?.map(fmt).join(", ") ?? "n/a (a label has no positive in the training split)"}`,
    ];
  }
  if (task.problemType === "regression") {
    const per = task.labels.map((t) => {
      const x = s.targets![t]!;
      return `${t} mean ${x.mean}, std ${x.std}, range ${x.min}..${x.max}`;
    });
    return [
      `kept ${s.rowsKept} rows; targets: ${per.join("; ")}`,
      `train ${split("train").rows}, test ${split("test").rows}`,
    ];
  }
  const weights = `balanced class weights: ${s.classWeights?.map(fmt).join(", ") ?? "n/a (a class is missing from the training split)"}`;
  if (task.labels.length > 2 || task.labels[0] !== "LABEL_0") {
    const per = task.labels.map((l, i) => `${i} ${l}: ${s.classCounts[String(i)]}`);
    return [
      `kept ${s.rowsKept} rows, ${task.labels.length} classes of ${s.labelColumn}: ${per.join(", ")}`,
      `train ${split("train").rows}, test ${split("test").rows}`,
      weights,
    ];
  }
  return [
    `kept ${s.rowsKept} rows (${s.labelColumn}=1: ${s.classCounts["1"]}, ${((100 * (s.classCounts["1"] ?? 0)) / s.rowsKept).toFixed(1)} %), truncated by the tokenizer: ${s.truncated}`,
    `train ${split("train").rows} (${split("train").classCounts["1"]} positive), test ${split("test").rows} (${split("test").classCounts["1"]} positive)`,
    weights,
  ];
}

export const prepareCommand = defineCommand({
  name: "prepare",
  summary: "DeepLoc CSV -> tokenized train/test Parquet + stats.json",
  description: `
Turn the DeepLoc-2.0 table into tokenized train/test Parquet files and stats.json.
The task follows the columns: --label-column (a 0/1 column; with --task
single_label_classification a column of k classes), --label-columns or --locations
(multi-label), --target-column (regression).`,
  flags: {
    input: flag.string("DeepLoc CSV (local path or http(s) URL)", {
      value: "PATH|URL",
      required: true,
    }),
    out: flag.string("output directory", { value: "DIR", required: true }),
    "label-column": flag.string(
      "the label column: 0/1, or k classes with --task single_label_classification",
      {
        value: "NAME",
        default: "Membrane",
        conflicts: ["label-columns", "locations", "target-column"],
      },
    ),
    "label-columns": flag.custom(columns, "multi-label: 0/1 columns, one label each", {
      conflicts: ["locations", "target-column"],
    }),
    locations: flag.bool(
      `multi-label on DeepLoc's ten locations (${DEEPLOC_LOCATIONS.join(", ")})`,
      {
        conflicts: ["target-column"],
      },
    ),
    "target-column": flag.custom(columns, "regression: numeric column(s), one output each", {
      value: "NAME[,NAME]",
    }),
    task: flag.choice(PROBLEM_TYPES, "problem type", {
      defaultText: "from the columns given",
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
      labelColumns: v["label-columns"],
      locations: v.locations || undefined,
      targetColumns: v["target-column"],
      task: v.task,
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
      ...labelLines(s),
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
