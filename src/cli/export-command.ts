import * as path from "node:path";
import { parseArgs } from "node:util";
import { ConfigError } from "../errors";
import {
  EXTERNAL_DATA_CHOICES,
  type ExportQuantize,
  type ExternalDataChoice,
  exportModel,
  QUANTIZE_CHOICES,
  readExportManifest,
} from "../export/export";
import { EXPORT_TASKS, type ExportTask } from "../export/onnx-model";
import { startStaticServer } from "../export/static-server";
import { waitForShutdownSignal } from "../serve/shutdown";
import type { Command } from "./main";
import { numberFlag } from "./main";

const USAGE = `Usage: esmkit export --model DIR --out DIR [options]
       esmkit export --out DIR --serve [--port N]

Write a folder that transformers.js (@huggingface/transformers) loads from a local path,
in Node or in the browser: config.json, tokenizer files and onnx/model.onnx (weights
inside; past 2 GB in onnx/model.onnx_data). pipeline("${EXPORT_TASKS[0]}", DIR) then gives
the probabilities esmkit predict gives.

  --model DIR               merged model directory, or a PEFT adapter      required
                            directory (merged onto its base at export)
  --base DIR|HUB_ID         base model of an adapter          its base_model_name_or_path
  --out DIR                 folder to write (must not exist)               required
  --task TASK               ${EXPORT_TASKS.join(" | ")}   ${EXPORT_TASKS[0]}
  --quantize ${QUANTIZE_CHOICES.join("|")}      int8 also writes onnx/model_quantized.onnx     none
                            (transformers.js dtype "q8")
  --external-data MODE      ${EXTERNAL_DATA_CHOICES.join(" | ")}: weights in .onnx_data files       auto
                            (auto: when the model would pass 2 GB)
  --max-length N            tokens per sequence incl. <cls>/<eos>   tokenizer's, else 1024
  --overwrite               replace an existing --out folder
  --web                     also write a static page (index.html): paste FASTA, get a
                            table and chart of class probabilities, all in the browser
  --serve                   then serve --out on http://127.0.0.1 (Ctrl-C stops)
  --port N                  port for --serve (0: any free port)            8000
  --quiet                   no progress lines
`;

export const exportCommand: Command = {
  summary: "export a model for transformers.js (Node and browser), optionally with a web page",
  usage: USAGE,
  async run(argv) {
    const { values: v } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        model: { type: "string" },
        base: { type: "string" },
        out: { type: "string" },
        task: { type: "string" },
        quantize: { type: "string" },
        "external-data": { type: "string" },
        "max-length": { type: "string" },
        overwrite: { type: "boolean" },
        web: { type: "boolean" },
        serve: { type: "boolean" },
        port: { type: "string" },
        quiet: { type: "boolean" },
      },
    });
    if (!v.out || (!v.model && !v.serve)) {
      const why = !v.out ? "--out is required" : "--model is required (or --serve alone)";
      process.stderr.write(`esmkit export: ${why}\n\n${USAGE}`);
      return 2;
    }
    const port = numberFlag("port", v.port) ?? 8000;
    if (port < 0 || port > 65535) throw new ConfigError(`--port expects 0-65535, got ${port}`, {});
    if (v.port !== undefined && !v.serve) {
      throw new ConfigError("--port applies to --serve only", { port: v.port });
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
        task: (v.task ?? EXPORT_TASKS[0]) as ExportTask,
        quantize: (v.quantize ?? "none") as ExportQuantize,
        externalData: (v["external-data"] ?? "auto") as ExternalDataChoice,
        maxLength: numberFlag("max-length", v["max-length"]),
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
    } else {
      readExportManifest(path.resolve(v.out));
    }
    if (!v.serve) return 0;
    const manifest = readExportManifest(path.resolve(v.out));
    if (!manifest.web) {
      throw new ConfigError(
        `${v.out} has no web page; export it with --web (e.g. esmkit export --model DIR --out ${v.out} --web --overwrite)`,
        { out: v.out },
      );
    }
    const shutdown = waitForShutdownSignal();
    const server = await startStaticServer({ root: v.out, port });
    process.stderr.write(`esmkit export: serving ${v.out} at ${server.url} (Ctrl-C stops)\n`);
    const signal = await shutdown;
    await server.close();
    process.stderr.write(`esmkit export: ${signal}: stopped\n`);
    return 0;
  },
};
