import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ensureBackend } from "../backend";
import { loadPrepared } from "../data/frame";
import { ConfigError } from "../errors";
import { loadEsmPredictor } from "../serve/model-predictor";
import { evaluate } from "../train/evaluate";
import { examplesFrom } from "../train/run";
import type { Command } from "./main";
import { numberFlag } from "./main";

const USAGE = `Usage: esmkit evaluate --model DIR --data DIR [options]

Evaluate a fine-tuned model (Hugging Face directory, or a PEFT adapter directory) on
a prepared split: loss, accuracy, precision, recall, F1, MCC, ROC-AUC, confusion matrix.

  --model DIR            fine-tuned model directory                    required
  --data DIR             output of "esmkit prepare"                    required
  --split NAME           train | test                                  test
  --batch-size N         16
  --max-length N         512
  --limit N              only the first N examples
  --out FILE             also write the metrics as JSON
`;

export const evaluateCommand: Command = {
  summary: "metrics of a fine-tuned model on prepared data",
  usage: USAGE,
  async run(argv) {
    const { values: v } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        model: { type: "string" },
        data: { type: "string" },
        split: { type: "string" },
        "batch-size": { type: "string" },
        "max-length": { type: "string" },
        limit: { type: "string" },
        out: { type: "string" },
      },
    });
    if (!v.model || !v.data) {
      process.stderr.write(`esmkit evaluate: --model and --data are required\n\n${USAGE}`);
      return 2;
    }
    const split = v.split ?? "test";
    if (split !== "test" && split !== "train") {
      throw new ConfigError(`--split must be train or test, got "${split}"`, { split });
    }
    await ensureBackend();
    const data = await loadPrepared(v.data);
    const examples = examplesFrom(data[split], {
      maxLength: numberFlag("max-length", v["max-length"]) ?? 512,
      limit: numberFlag("limit", v.limit),
      where: `${v.data}/${split}.parquet`,
    });
    const predictor = await loadEsmPredictor(v.model);
    try {
      const result = evaluate(predictor.model, examples, {
        batchSize: numberFlag("batch-size", v["batch-size"]) ?? 16,
        engine: predictor.onnx,
      });
      const json = `${JSON.stringify({ model: v.model, data: v.data, split, examples: examples.length, metrics: result.metrics }, null, 2)}\n`;
      process.stdout.write(json);
      if (v.out) writeFileSync(v.out, json);
      return 0;
    } finally {
      predictor.dispose();
    }
  },
};
