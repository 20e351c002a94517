import { writeFileSync } from "node:fs";
import { ensureBackend } from "../backend";
import { loadPrepared } from "../data/frame";
import { loadEsmPredictor } from "../serve/model-predictor";
import { evaluate } from "../train/evaluate";
import { examplesFrom, resolveDataTask } from "../train/run";
import { flag } from "../util/flags";
import { checkHeadMatches, DEFAULT_THRESHOLD, PROBLEM_TYPES } from "../util/task";
import { defineCommand } from "./command";

export const evaluateCommand = defineCommand({
  name: "evaluate",
  summary: "metrics of a fine-tuned model on prepared data",
  description: `
Evaluate a fine-tuned model (Hugging Face directory, or a PEFT adapter directory) on
a prepared split: the unweighted loss (unweightedLoss: mean cross-entropy, every example
counting once; training's metrics.json also has the class-weighted weightedLoss),
accuracy, precision, recall, F1, MCC, ROC-AUC, confusion matrix. Other tasks (from the
data's stats.json; the model's head must fit it): k classes, accuracy, macro F1, MCC,
confusion matrix; multi-label, the BCE loss, subset accuracy, Jaccard, micro and macro
F1, MCC per label (labels at probability >= --threshold); regression, the MSE loss,
RMSE, MAE, Pearson and Spearman per target.`,
  flags: {
    model: flag.string("fine-tuned model directory", { value: "DIR", required: true }),
    data: flag.string('output of "esmkit prepare"', { value: "DIR", required: true }),
    split: flag.choice(["train", "test"], "which split", { default: "test" }),
    "batch-size": flag.int("sequences per model call", { min: 1, default: 16 }),
    "max-length": flag.int("tokens per sequence, <cls>/<eos> included", { min: 3, default: 512 }),
    limit: flag.int("only the first N examples", { min: 1 }),
    out: flag.string("also write the metrics as JSON", { value: "FILE" }),
    task: flag.choice(PROBLEM_TYPES, "the data's problem type (as train --task)", {
      defaultText: "stats.json's task, else binary",
    }),
    threshold: flag.float("multi-label: a label is predicted at or above this probability", {
      min: 0,
      max: 1,
      default: DEFAULT_THRESHOLD,
    }),
  },
  async run(v) {
    await ensureBackend();
    const data = await loadPrepared(v.data);
    const task = resolveDataTask(data.stats, data.train, v.task, v.data);
    const binary = task.problemType === "single_label_classification" && task.labels.length === 2;
    const examples = examplesFrom(data[v.split], {
      maxLength: v["max-length"],
      limit: v.limit,
      where: `${v.data}/${v.split}.parquet`,
      task: binary ? undefined : task,
    });
    const predictor = await loadEsmPredictor(v.model);
    try {
      checkHeadMatches(predictor.model.config, task, v.model);
      const result = evaluate(predictor.engine, examples, {
        batchSize: v["batch-size"],
        ...(binary ? {} : { task, threshold: v.threshold }),
      });
      const json = `${JSON.stringify({ model: v.model, data: v.data, split: v.split, examples: examples.length, metrics: result.metrics }, null, 2)}\n`;
      process.stdout.write(json);
      if (v.out) writeFileSync(v.out, json);
      return 0;
    } finally {
      predictor.dispose();
    }
  },
});
