/**
 * The bigger architectures (issue 13, item 6): load, predict and one LoRA training step
 * with the onnx engine, on random weights. Per architecture and `--quantize`, in a fresh
 * process: the load time and RSS after load (`fromPretrained`, the model the trainer
 * holds), one protein's prediction (time), then one LoRA step (r8 on query/key/value, as
 * `esmkit train`'s default) at B x L with gradient checkpointing: its time and the
 * process's max RSS (target for 650M at 8 x 512: at most 8 GB).
 *
 *   node build/bench/big-models.js [--archs 150m,650m] [--quantize none,int8]
 *        [--batch 8] [--length 512] [--threads 2] [--model-dirs 650m=DIR,...] [--json F]
 *
 * Checkpoints (seed 1) are written to temporary directories unless `--model-dirs` names
 * existing ones. Times depend on the machine's load (`loadAverage` is recorded); memory
 * does not.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { writeRandomCheckpoint } from "./random-checkpoint";

const ARCH: Record<string, string> = {
  "8m": "esm2_t6_8M_UR50D",
  "35m": "esm2_t12_35M_UR50D",
  "150m": "esm2_t30_150M_UR50D",
  "650m": "esm2_t33_650M_UR50D",
};
const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
const maxRssMiB = () => mib(process.resourceUsage().maxRSS * 1024);

async function child(
  dir: string,
  quantize: "none" | "int8",
  B: number,
  L: number,
  threads: number,
) {
  const tf = await import("@tensorflow/tfjs-core");
  const { selectBackend } = await import("../src/backend");
  const { applyLora } = await import("../src/lora/lora");
  const { fromPretrained } = await import("../src/model/pretrained");
  const { OnnxEsmEngine } = await import("../src/onnx/engine");
  const { SeededRandom } = await import("../src/util/random");
  await selectBackend({ backend: "wasm" });
  const out: Record<string, unknown> = { quantize, batch: B, length: L, threads };
  let t = performance.now();
  const model = await fromPretrained(dir, { onWarning: () => undefined });
  out.loadSeconds = (performance.now() - t) / 1000;
  out.rssAfterLoadMiB = mib(process.memoryUsage().rss);
  const rng = new SeededRandom(3);
  const row = (n: number) => [0, ...Array.from({ length: n - 2 }, () => 4 + rng.int(20)), 2];
  // One protein of 400 residues, on the engine alone (no LoRA).
  {
    const ids = row(402);
    const engine = new OnnxEsmEngine(model, { threads, quantize });
    t = performance.now();
    engine.logits({ inputIds: ids, attentionMask: ids.map(() => 1), batchSize: 1, seqLen: 402 });
    out.predictFirstSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    engine.logits({ inputIds: ids, attentionMask: ids.map(() => 1), batchSize: 1, seqLen: 402 });
    out.predictSeconds = (performance.now() - t) / 1000;
    out.rssAfterPredictMiB = mib(process.memoryUsage().rss);
    engine.dispose();
  }
  const lora = applyLora(model, { dropout: 0 }, 42);
  lora.training = true;
  const params = lora.trainableVariables();
  const engine = new OnnxEsmEngine(model, { threads, quantize, lora });
  const ids = Array.from({ length: B }, () => row(L));
  const batch = {
    inputIds: tf.tensor2d(ids, [B, L], "int32"),
    attentionMask: tf.ones([B, L], "int32") as import("@tensorflow/tfjs-core").Tensor2D,
    labels: tf.tensor1d(
      Array.from({ length: B }, (_, i) => i % 2),
      "int32",
    ),
  };
  out.maxRssBeforeStepMiB = maxRssMiB();
  t = performance.now();
  const r = engine.lossAndGradients(params, batch, { gradientCheckpointing: true });
  out.stepSeconds = (performance.now() - t) / 1000;
  out.loss = r.loss;
  out.maxRssMiB = maxRssMiB();
  tf.dispose([...r.grads.values()]);
  engine.dispose();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      child: { type: "string" },
      dir: { type: "string" },
      arch: { type: "string" },
      archs: { type: "string", default: "150m,650m" },
      quantize: { type: "string", default: "none,int8" },
      batch: { type: "string", default: "8" },
      length: { type: "string", default: "512" },
      threads: { type: "string", default: String(Math.min(2, os.availableParallelism())) },
      "model-dirs": { type: "string", default: "" },
      json: { type: "string" },
    },
  });
  const B = Number(v.batch);
  const L = Number(v.length);
  const threads = Number(v.threads);
  if (v.child === "make") return writeRandomCheckpoint(v.arch!, v.dir!);
  if (v.child === "run") return child(v.dir!, v.quantize as "none" | "int8", B, L, threads);
  const self = path.join(__dirname, "big-models.js");
  const given = new Map(
    v["model-dirs"]!.split(",")
      .filter(Boolean)
      .map((p) => p.split("=") as [string, string]),
  );
  const rows: Record<string, unknown>[] = [];
  const made: string[] = [];
  try {
    for (const a of v.archs!.split(",")) {
      const arch = ARCH[a];
      if (!arch) throw new Error(`--archs: unknown ${a}; expected ${Object.keys(ARCH)}`);
      let dir = given.get(a);
      if (!dir || !existsSync(path.join(dir, "model.safetensors"))) {
        dir = dir ?? mkdtempSync(path.join(os.tmpdir(), `esmkit-big-${a}-`));
        if (!given.has(a)) made.push(dir);
        process.stderr.write(`writing a random ${arch} checkpoint to ${dir}\n`);
        execFileSync(process.execPath, [self, "--child", "make", "--arch", arch, "--dir", dir], {
          stdio: "inherit",
        });
      }
      for (const q of v.quantize!.split(",")) {
        process.stderr.write(`${a} quantize ${q}: load, predict, LoRA step ${B}x${L}\n`);
        const r = spawnSync(
          process.execPath,
          [self, "--child", "run", "--dir", dir, "--quantize", q, "--batch", String(B)].concat([
            "--length",
            String(L),
            "--threads",
            String(threads),
          ]),
          { encoding: "utf8" },
        );
        const row =
          r.status === 0
            ? JSON.parse(r.stdout.trim().split("\n").pop()!)
            : { quantize: q, error: (r.stderr || String(r.signal)).slice(-2000) };
        rows.push({ arch: a, ...row });
        process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`);
      }
    }
  } finally {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  }
  const out = { cores: os.availableParallelism(), loadAverage: os.loadavg(), rows };
  if (v.json) writeFileSync(v.json, `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
