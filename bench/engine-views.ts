/**
 * Does feeding onnxruntime views of the TensorFlow.js weights (src/onnx/weights.ts `view`,
 * wasm backend) cost step time against feeding it copies? In one process, on one model and
 * one batch, alternate a LoRA step (r8, query/key/value, gradient checkpointing) on an
 * engine that reads the weights through views with the same step on an engine that copies
 * them (its weights' `view` removed), so that a changing machine load hits both alike.
 * Then the same for one frozen Linear's Gemm at the model's intermediate shape, forward
 * and `transB` (the backward's dX), on a view against a copy.
 *
 *   node build/bench/engine-views.js --arch 35m|150m|650m [--model-dir DIR] [--batch 8]
 *        [--length 256] [--reps 2] [--threads 2] [--json F]
 *
 * Without `--model-dir` a random checkpoint (seed 1) is written to a temporary directory.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../src/backend";
import { applyLora } from "../src/lora/lora";
import { fromPretrained } from "../src/model/pretrained";
import { OnnxEsmEngine } from "../src/onnx/engine";
import { GraphBuilder } from "../src/onnx/graph";
import { floatTensor, OrtSession } from "../src/onnx/runtime";
import { wasmView } from "../src/onnx/weights";
import { SeededRandom } from "../src/util/random";
import { writeRandomCheckpoint } from "./random-checkpoint";

const ARCH: Record<string, string> = {
  "8m": "esm2_t6_8M_UR50D",
  "35m": "esm2_t12_35M_UR50D",
  "150m": "esm2_t30_150M_UR50D",
  "650m": "esm2_t33_650M_UR50D",
};
const seconds = (t0: number) => Math.round(performance.now() - t0) / 1000;

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      arch: { type: "string", default: "35m" },
      "model-dir": { type: "string" },
      batch: { type: "string", default: "8" },
      length: { type: "string", default: "256" },
      reps: { type: "string", default: "2" },
      threads: { type: "string", default: String(Math.min(2, os.availableParallelism())) },
      json: { type: "string" },
    },
  });
  const arch = ARCH[v.arch!];
  if (!arch) throw new Error(`--arch: unknown ${v.arch}; expected one of ${Object.keys(ARCH)}`);
  const [B, L, reps, threads] = [v.batch, v.length, v.reps, v.threads].map(Number) as number[];
  let dir = v["model-dir"];
  const made = !dir || !existsSync(path.join(dir, "model.safetensors"));
  if (made) {
    dir = dir ?? mkdtempSync(path.join(os.tmpdir(), `esmkit-views-${v.arch}-`));
    writeRandomCheckpoint(arch, dir);
  }
  try {
    await selectBackend({ backend: "wasm" });
    const model = await fromPretrained(dir!, { onWarning: () => undefined });
    const lora = applyLora(model, { dropout: 0 }, 42);
    lora.training = true;
    const params = lora.trainableVariables();
    const rng = new SeededRandom(3);
    const ids = Array.from({ length: B! }, () => [
      0,
      ...Array.from({ length: L! - 2 }, () => 4 + rng.int(20)),
      2,
    ]);
    const batch = {
      inputIds: tf.tensor2d(ids, [B!, L!], "int32"),
      attentionMask: tf.ones([B!, L!], "int32") as tf.Tensor2D,
      labels: tf.tensor1d(
        Array.from({ length: B! }, (_, i) => i % 2),
        "int32",
      ),
    };
    const engines = {
      views: new OnnxEsmEngine(model, { threads, lora }),
      copies: new OnnxEsmEngine(model, { threads, lora }),
    };
    delete (engines.copies.weights as { view?: unknown }).view;
    const step: Record<string, number[]> = { views: [], copies: [] };
    const losses: Record<string, number[]> = { views: [], copies: [] };
    for (let rep = 0; rep < reps!; rep++) {
      const order = rep % 2 ? (["copies", "views"] as const) : (["views", "copies"] as const);
      for (const name of order) {
        const t0 = performance.now();
        const r = engines[name].lossAndGradients(params, batch, { gradientCheckpointing: true });
        step[name]!.push(seconds(t0));
        losses[name]!.push(r.loss);
        tf.dispose([...r.grads.values()]);
        process.stderr.write(`step ${rep} ${name}: ${step[name]!.at(-1)} s\n`);
      }
    }
    engines.views.dispose();
    engines.copies.dispose();
    // One frozen Linear's products at the intermediate shape: [B*L, H] x [H, I], and dX.
    const [H, I, N] = [model.config.hiddenSize, model.config.intermediateSize, B! * L!];
    const gemm = (transB: boolean) => {
      const g = new GraphBuilder("gemm");
      const x = g.input("x", "float", [N, transB ? I : H]);
      const w = g.input("w", "float", [H, I]);
      g.output("y", g.op("Gemm", [x, w], transB ? { transB: 1 } : {}), "float", null);
      return new OrtSession(g.build(), { threads });
    };
    const sessions = { forward: gemm(false), transB: gemm(true) };
    const w = tf.variable(tf.randomUniform([H, I], -0.1, 0.1, "float32", 5));
    const copy = new Float32Array(w.dataSync());
    const xs = {
      forward: new Float32Array(N * H).map(() => rng.next()),
      transB: new Float32Array(N * I).map(() => rng.next()),
    };
    const gemmMs: Record<string, number[]> = {};
    for (let rep = 0; rep < 6; rep++) {
      const order = rep % 2 ? (["copy", "view"] as const) : (["view", "copy"] as const);
      for (const source of order) {
        for (const kind of ["forward", "transB"] as const) {
          const data = source === "view" ? wasmView(w)! : copy;
          const t0 = performance.now();
          sessions[kind].run({
            x: floatTensor(xs[kind], [N, kind === "transB" ? I : H]),
            w: floatTensor(data, [H, I]),
          });
          const key = `${kind} ${source}`;
          gemmMs[key] = [...(gemmMs[key] ?? []), Math.round(performance.now() - t0)];
        }
      }
    }
    const out = {
      arch: v.arch,
      batch: B,
      length: L,
      threads,
      cores: os.availableParallelism(),
      loadAverage: os.loadavg(),
      stepSeconds: step,
      losses,
      gemmShape: [N, H, I],
      gemmMs,
    };
    if (v.json) writeFileSync(v.json, `${JSON.stringify(out, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    if (made && !v["model-dir"]) rmSync(dir!, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
