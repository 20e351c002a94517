/**
 * A random ESM-2 checkpoint for the memory benches (big-models.ts, predict-memory.ts):
 * config.json from esmkit's preset, the weights drawn and saved by transformers (torch
 * seed 1; writing 650M parameters through TensorFlow.js on wasm takes far longer).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { esm2Config, esmConfigJsonText } from "../src/model/config";

const ROOT = path.resolve(__dirname, "..", "..");

export function writeRandomCheckpoint(arch: string, dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), esmConfigJsonText(esm2Config(arch as never)));
  execFileSync(
    path.join(ROOT, ".venv", "bin", "python"),
    [
      "-c",
      [
        "import sys, torch",
        "from transformers import EsmConfig, EsmForSequenceClassification",
        "torch.manual_seed(1)",
        "d = sys.argv[1]",
        "EsmForSequenceClassification(EsmConfig.from_pretrained(d)).save_pretrained(d)",
      ].join("\n"),
      dir,
    ],
    { stdio: "inherit" },
  );
}
