import * as path from "node:path";
import { ConfigError } from "../errors";
import {
  EXTERNAL_DATA_CHOICES,
  exportModel,
  QUANTIZE_CHOICES,
  readExportManifest,
} from "../export/export";
import { EXPORT_TASKS } from "../export/onnx-model";
import { startStaticServer } from "../export/static-server";
import { waitForShutdownSignal } from "../serve/shutdown";
import { flag } from "../util/flags";
import { defineCommand } from "./command";

export const exportCommand = defineCommand({
  name: "export",
  summary: "export a model for transformers.js (Node and browser), optionally with a web page",
  description: `
Write a folder that transformers.js (@huggingface/transformers) loads from a local path,
in Node or in the browser: config.json, tokenizer files and onnx/model.onnx (weights
inside; past 2 GB in onnx/model.onnx_data). pipeline("${EXPORT_TASKS[0]}", DIR) then
gives the probabilities esmkit predict gives. With --serve alone, serve an export made
with --web.`,
  usage: ["esmkit export --out DIR --serve [--port N]"],
  flags: {
    model: flag.string(
      "merged model directory, or a PEFT adapter directory (merged onto its base); required unless --serve alone",
      { value: "DIR" },
    ),
    base: flag.string("base model of an adapter", {
      value: "DIR|HUB_ID",
      defaultText: "its base_model_name_or_path",
      requires: ["model"],
    }),
    out: flag.string("folder to write (must not exist)", { value: "DIR", required: true }),
    task: flag.choice(EXPORT_TASKS, "what the model outputs: logits or last_hidden_state", {
      default: EXPORT_TASKS[0],
    }),
    quantize: flag.choice(
      QUANTIZE_CHOICES,
      'int8 also writes onnx/model_quantized.onnx (transformers.js dtype "q8")',
      { default: "none" },
    ),
    "external-data": flag.choice(
      EXTERNAL_DATA_CHOICES,
      "weights in .onnx_data files (auto: when the model would pass 2 GB)",
      { default: "auto" },
    ),
    "max-length": flag.int("tokens per sequence, <cls>/<eos> included", {
      min: 3,
      defaultText: "the tokenizer's model_max_length, else 1024",
    }),
    overwrite: flag.bool("replace an existing --out folder"),
    web: flag.bool(
      "also write a static page (index.html): paste FASTA, get a table and chart of class probabilities, computed in the browser",
    ),
    serve: flag.bool("then serve --out on http://127.0.0.1 (Ctrl-C stops)"),
    port: flag.int("port for --serve (0: any free port)", {
      min: 0,
      max: 65535,
      default: 8000,
      requires: ["serve"],
    }),
    quiet: flag.bool("no progress lines"),
  },
  async run(v) {
    if (!v.model && !v.serve) {
      process.stderr.write(
        `esmkit export: --model is required (or --serve alone)\n\n${exportCommand.help()}`,
      );
      return 2;
    }
    const log = (m: string) => {
      if (!v.quiet) process.stderr.write(`esmkit export: ${m}\n`);
    };
    if (v.model) {
      const started = Date.now();
      const { manifest } = await exportModel({
        model: v.model,
        base: v.base,
        out: v.out,
        task: v.task,
        quantize: v.quantize,
        externalData: v["external-data"],
        maxLength: v["max-length"],
        overwrite: v.overwrite ?? false,
        web: v.web ?? false,
        onProgress: log,
      });
      const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MB`;
      const onnx = Object.entries(manifest.files)
        .filter(([f]) => f.startsWith("onnx/"))
        .map(([f, n]) => `${f} ${mb(n)}`)
        .join(", ");
      log(
        `${manifest.task}, labels ${manifest.labels.join(", ")}, max length ${manifest.maxLength}: ${onnx} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
      log(
        `in Node: pipeline(${JSON.stringify(manifest.task)}, ${JSON.stringify(path.resolve(v.out))})`,
      );
    }
    const manifest = readExportManifest(path.resolve(v.out));
    if (!v.serve) return 0;
    if (!manifest.web) {
      throw new ConfigError(
        `${v.out} has no web page; export it with --web (e.g. esmkit export --model DIR --out ${v.out} --web --overwrite)`,
        { out: v.out },
      );
    }
    const shutdown = waitForShutdownSignal();
    const server = await startStaticServer({ root: v.out, port: v.port });
    process.stderr.write(`esmkit export: serving ${v.out} at ${server.url} (Ctrl-C stops)\n`);
    const signal = await shutdown;
    await server.close();
    process.stderr.write(`esmkit export: ${signal}: stopped\n`);
    return 0;
  },
});
