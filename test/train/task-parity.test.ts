/**
 * The three problem types against transformers + PEFT (test/fixtures/tasks/<task>, made
 * by test/reference/make_task_fixtures.py): the LoRA logits of a k-label head, the
 * unweighted loss transformers computes for the config's problem_type, and two optimizer
 * steps of HF-Trainer-style training with the task's weighted loss (class weights,
 * pos_weight, MSE) on both engines, plain and with gradient checkpointing: losses, grad
 * norms and every trained tensor.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { ensureBackend } from "../../src/backend";
import type { MicroBatch, StepOptions } from "../../src/engine/engine";
import { lossAndGradients, taskLoss } from "../../src/engine/tfjs-engine";
import { loadAdapter, saveAdapter } from "../../src/lora/adapter-io";
import { fromPretrained } from "../../src/model/pretrained";
import { readSafetensors } from "../../src/model/safetensors";
import { OnnxEsmEngine } from "../../src/onnx/engine";
import { clipGradNorm } from "../../src/train/clip";
import { AdamW } from "../../src/train/optimizer";
import { linearScheduleWithWarmup } from "../../src/train/schedule";
import { type ProblemType, taskOfConfig } from "../../src/util/task";
import { REPO_ROOT } from "../helpers/python";

const FIX = path.join(REPO_ROOT, "test", "fixtures", "tasks");
const TASKS = ["multiclass", "multilabel", "regression"] as const;

interface Expected {
  problem_type: ProblemType;
  labels: string[];
  config: {
    lr: number;
    weight_decay: number;
    accumulation: number;
    warmup: number;
    total_steps: number;
    max_norm: number;
    weight: number[] | null;
  };
  micro_batches: {
    input_ids: number[][];
    attention_mask: number[][];
    labels: number[] | number[][];
  }[];
  lora_logits: number[][];
  hf_loss: number;
  steps: { lr: number; grad_norm: number; losses: number[] }[];
}

const expected = (task: string): Expected =>
  JSON.parse(readFileSync(path.join(FIX, task, "expected.json"), "utf8"));

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

function microBatch(mb: Expected["micro_batches"][number], problemType: ProblemType): MicroBatch {
  const single = problemType === "single_label_classification";
  return {
    inputIds: tf.tensor2d(mb.input_ids, undefined, "int32"),
    attentionMask: tf.tensor2d(mb.attention_mask, undefined, "int32"),
    labels: single ? tf.tensor1d(mb.labels as number[], "int32") : tf.tensor1d([0, 0, 0], "int32"),
    ...(single ? {} : { targets: tf.tensor2d(mb.labels as number[][]) }),
  };
}

const dispose = (b: MicroBatch) =>
  tf.dispose([b.inputIds, b.attentionMask, b.labels, ...(b.targets ? [b.targets] : [])]);

function weights(e: Expected): Partial<StepOptions> {
  if (e.problem_type === "single_label_classification") return { classWeights: e.config.weight! };
  if (e.problem_type === "multi_label_classification") return { posWeight: e.config.weight! };
  return {};
}

before(async () => {
  await ensureBackend({ backend: "wasm" });
});

test("each fixture's config reads as its task: problem_type, num_labels, id2label", async () => {
  for (const name of TASKS) {
    const e = expected(name);
    const model = await fromPretrained(path.join(FIX, name, "base"), {
      onWarning: () => undefined,
    });
    assert.deepEqual(taskOfConfig(model.config), { problemType: e.problem_type, labels: e.labels });
    model.dispose();
  }
});

test("LoRA logits of a k-output head, and transformers' own loss for the problem_type (1e-5)", async () => {
  for (const name of TASKS) {
    const e = expected(name);
    const model = await fromPretrained(path.join(FIX, name, "base"), {
      onWarning: () => undefined,
    });
    const lora = loadAdapter(model, path.join(FIX, name, "adapter-initial"));
    const mb = e.micro_batches[0]!;
    const out = model.forward({ inputIds: mb.input_ids, attentionMask: mb.attention_mask });
    const d = maxAbsDiff(out.logits.dataSync(), e.lora_logits.flat());
    const batch = microBatch(mb, e.problem_type);
    const loss = taskLoss(out.logits as tf.Tensor2D, batch, { task: e.problem_type });
    const dl = Math.abs(loss.dataSync()[0]! - e.hf_loss);
    console.log(
      `${name}: LoRA logits |diff| ${d.toExponential(2)}, unweighted loss vs transformers ${dl.toExponential(2)}`,
    );
    assert.ok(d < 1e-5, `${name} logits ${d}`);
    assert.ok(dl < 1e-5, `${name} loss ${loss.dataSync()[0]} vs transformers ${e.hf_loss}`);
    tf.dispose([out.logits, out.lastHiddenState, loss]);
    dispose(batch);
    lora.dispose();
    model.dispose();
  }
});

for (const engineName of ["tfjs", "onnx"] as const) {
  test(`two weighted optimizer steps per task on the ${engineName} engine, plain and checkpointed, match torch + PEFT (1e-5)`, async () => {
    for (const name of TASKS) {
      const e = expected(name);
      const theirs = readSafetensors(
        path.join(FIX, name, "adapter-step2", "adapter_model.safetensors"),
      ).tensors;
      for (const gradientCheckpointing of [false, true]) {
        const model = await fromPretrained(path.join(FIX, name, "base"), {
          onWarning: () => undefined,
        });
        const lora = loadAdapter(model, path.join(FIX, name, "adapter-initial"));
        lora.training = true;
        const params = lora.trainableVariables();
        const engine = engineName === "onnx" ? new OnnxEsmEngine(model, { lora }) : undefined;
        const c = e.config;
        const opt = new AdamW(params, { lr: c.lr, weightDecay: c.weight_decay });
        const schedule = linearScheduleWithWarmup({
          lr: c.lr,
          totalSteps: c.total_steps,
          warmupSteps: c.warmup,
        });
        for (let s = 0; s < 2; s++) {
          const acc = new Map<string, tf.Tensor>();
          const losses: number[] = [];
          for (let k = 0; k < c.accumulation; k++) {
            const batch = microBatch(e.micro_batches[s * c.accumulation + k]!, e.problem_type);
            const options: StepOptions = {
              task: e.problem_type,
              ...weights(e),
              lossScale: 1 / c.accumulation,
              gradientCheckpointing,
            };
            const r = engine
              ? engine.lossAndGradients(params, batch, options)
              : lossAndGradients(model, params, batch, options);
            dispose(batch);
            losses.push(r.loss);
            for (const [n, g] of r.grads) {
              const prev = acc.get(n);
              acc.set(n, prev ? tf.add(prev, g) : g);
              if (prev) tf.dispose([prev, g]);
            }
          }
          const want = e.steps[s]!;
          const lr = schedule.lrAt(opt.stepCount);
          assert.ok(Math.abs(lr - want.lr) < 1e-12);
          const dl = maxAbsDiff(losses, want.losses);
          assert.ok(
            dl < 1e-5 * Math.max(1, Math.abs(want.losses[0]!)),
            `${name} step ${s} losses ${losses} vs ${want.losses}`,
          );
          const clipped = clipGradNorm(acc, c.max_norm);
          const dn = Math.abs(clipped.totalNorm - want.grad_norm);
          assert.ok(
            dn < 1e-5 * Math.max(1, want.grad_norm),
            `${name} step ${s} grad norm ${clipped.totalNorm} vs ${want.grad_norm}`,
          );
          opt.step(clipped.grads, lr);
          tf.dispose([...acc.values(), ...clipped.grads.values()]);
        }
        const dir = await mkdtemp(path.join(tmpdir(), "esmkit-task-adapter-"));
        saveAdapter(lora, model, dir);
        const ours = readSafetensors(path.join(dir, "adapter_model.safetensors")).tensors;
        assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
        let worst = 0;
        for (const [k, t] of theirs) worst = Math.max(worst, maxAbsDiff(ours.get(k)!.data, t.data));
        console.log(
          `${name}, ${engineName}, checkpointing ${gradientCheckpointing}: weights after 2 steps max |diff| ${worst.toExponential(2)}`,
        );
        assert.ok(worst < 1e-5, `${name} max weight diff ${worst}`);
        opt.dispose();
        engine?.dispose();
        lora.dispose();
        model.dispose();
      }
    }
  });
}
