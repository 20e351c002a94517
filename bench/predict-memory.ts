/**
 * Peak resident memory of predicting one protein (issue 13, memory targets): esmkit's
 * predictor as `esmkit serve` / `predict` load it (worker threads, `ESMKIT_WORKERS`:
 * 0 = on the main thread, 1, 2, or d = unset, the default), float32 and int8, against PyTorch
 * (transformers EsmForSequenceClassification, float32, no_grad) on the same random
 * checkpoint and the same protein. Every measurement runs in a fresh process: its max
 * RSS (getrusage) is the peak; the RSS after load (and, for esmkit, after the first
 * prediction, when the int8 weights have been baked into onnxruntime) is also given.
 *
 *   node build/bench/predict-memory.js [--arch esm2_t33_650M_UR50D] [--length 400]
 *        [--modes 0:none,1:none,2:none,d:none,1:int8,d:int8] [--model-dir DIR] [--json FILE]
 *
 * The checkpoint (random weights, seed 1) is written once to --model-dir (default: a
 * temporary directory, removed at the end). Memory does not depend on the machine's
 * load; the seconds do.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { writeRandomCheckpoint } from "./random-checkpoint";

const ROOT = path.resolve(__dirname, "..", "..");
const AMINO = "ACDEFGHIKLMNPQRSTVWY";

function protein(length: number): string {
  let s = 1;
  let out = "";
  for (let i = 0; i < length; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out += AMINO[s % AMINO.length];
  }
  return out;
}

const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

/** Child: load the predictor the way serve does, predict one protein, report memory. */
async function measure(dir: string, workers: string, quantize: string, length: number) {
  const { ensureBackend } = await import("../src/backend");
  const { loadEsmPredictor } = await import("../src/serve/model-predictor");
  const { loadWorkerPredictor } = await import("../src/serve/worker-predictor");
  await ensureBackend();
  const t0 = performance.now();
  const q = quantize as "none" | "int8";
  const predictor =
    workers === "0"
      ? await loadEsmPredictor(dir, { quantize: q, onWarning: () => undefined })
      : await loadWorkerPredictor(dir, {
          quantize: q,
          ...(workers === "d" ? {} : { workers: Number(workers) }),
        });
  const loadSeconds = (performance.now() - t0) / 1000;
  const rssAfterLoad = process.memoryUsage().rss;
  const t1 = performance.now();
  const [p] = await predictor.predict([protein(length)]);
  const predictSeconds = (performance.now() - t1) / 1000;
  const rssAfterPredict = process.memoryUsage().rss;
  const t2 = performance.now();
  await predictor.predict([protein(length)]);
  const secondPredictSeconds = (performance.now() - t2) / 1000;
  const out = {
    side: "esmkit",
    workers,
    ...("concurrency" in predictor ? { concurrency: predictor.concurrency } : {}),
    quantize,
    loadSeconds,
    predictSeconds,
    secondPredictSeconds,
    rssAfterLoadMiB: mib(rssAfterLoad),
    rssAfterPredictMiB: mib(rssAfterPredict),
    rssAfterSecondPredictMiB: mib(process.memoryUsage().rss),
    maxRssMiB: mib(process.resourceUsage().maxRSS * 1024),
    probabilities: p!.probabilities,
  };
  await predictor.dispose();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const PYTORCH = `
import json, resource, sys, time
import torch
from transformers import EsmForSequenceClassification
d, seq = sys.argv[1], sys.argv[2]
vocab = [l.strip() for l in open(d + "/vocab.txt")] if __import__("os").path.exists(d + "/vocab.txt") else None
t0 = time.perf_counter()
m = EsmForSequenceClassification.from_pretrained(d).eval()
load = time.perf_counter() - t0
rss_load = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
aa = "LAGVSERTIDPKQNFYMHWC"
ids = torch.tensor([[0] + [4 + aa.index(c) for c in seq] + [2]])
t1 = time.perf_counter()
with torch.no_grad():
    p = torch.softmax(m(input_ids=ids).logits, -1)[0].tolist()
pred = time.perf_counter() - t1
print(json.dumps({"side": "pytorch", "threads": torch.get_num_threads(), "loadSeconds": load,
  "predictSeconds": pred, "rssAfterLoadMiB": round(rss_load / 2**20, 1),
  "maxRssMiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
  "probabilities": p}))
`;

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      child: { type: "string" },
      arch: { type: "string", default: "esm2_t33_650M_UR50D" },
      length: { type: "string", default: "400" },
      modes: { type: "string", default: "0:none,1:none,2:none,d:none,1:int8,d:int8" },
      "model-dir": { type: "string" },
      dir: { type: "string" },
      workers: { type: "string" },
      quantize: { type: "string" },
      json: { type: "string" },
    },
  });
  const length = Number(v.length);
  if (v.child === "make") return writeRandomCheckpoint(v.arch!, v.dir!);
  if (v.child === "measure") return measure(v.dir!, v.workers!, v.quantize!, length);

  const own = v["model-dir"] === undefined;
  const dir = v["model-dir"] ?? mkdtempSync(path.join(os.tmpdir(), "esmkit-predict-memory-"));
  const self = path.join(__dirname, "predict-memory.js");
  const rows: Record<string, unknown>[] = [];
  try {
    if (!existsSync(path.join(dir, "model.safetensors"))) {
      process.stderr.write(`writing a random ${v.arch} checkpoint to ${dir}\n`);
      execFileSync(process.execPath, [self, "--child", "make", "--arch", v.arch!, "--dir", dir], {
        stdio: "inherit",
      });
    }
    const python = path.join(ROOT, ".venv", "bin", "python");
    process.stderr.write("PyTorch\n");
    const py = spawnSync(python, ["-c", PYTORCH, dir, protein(length)], { encoding: "utf8" });
    if (py.status !== 0) throw new Error(`PyTorch side failed: ${py.stderr}`);
    const torchRow = JSON.parse(py.stdout.trim().split("\n").pop()!);
    rows.push(torchRow);
    for (const mode of v.modes!.split(",")) {
      const [workers, quantize] = mode.split(":");
      process.stderr.write(`esmkit workers=${workers} quantize=${quantize}\n`);
      const r = spawnSync(
        process.execPath,
        [
          self,
          "--child",
          "measure",
          "--dir",
          dir,
          "--workers",
          workers!,
          "--quantize",
          quantize!,
          "--length",
          String(length),
        ],
        { encoding: "utf8", env: { ...process.env, ESMKIT_ENGINE: "onnx" } },
      );
      if (r.status !== 0) {
        rows.push({ side: "esmkit", workers, quantize, error: r.stderr.slice(-2000) });
        continue;
      }
      const row = JSON.parse(r.stdout.trim().split("\n").pop()!);
      const maxDp = Math.max(
        ...row.probabilities.map((p: number, i: number) => Math.abs(p - torchRow.probabilities[i])),
      );
      rows.push({
        ...row,
        maxRssVsPytorch: Math.round((row.maxRssMiB / torchRow.maxRssMiB) * 100) / 100,
        maxAbsDeltaPVsPytorch: maxDp,
      });
    }
  } finally {
    if (own) rmSync(dir, { recursive: true, force: true });
  }
  const out = {
    arch: v.arch,
    length,
    cores: os.availableParallelism(),
    loadAverage: os.loadavg(),
    rows,
  };
  if (v.json) writeFileSync(v.json, `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
