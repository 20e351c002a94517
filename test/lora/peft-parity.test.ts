import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { lossAndGradients } from "../../src/engine/tfjs-engine";
import { AdapterError } from "../../src/errors";
import { loadAdapter, saveAdapter } from "../../src/lora/adapter-io";
import { fromPretrained } from "../../src/model/pretrained";
import { readSafetensors } from "../../src/model/safetensors";
import { clipGradNorm } from "../../src/train/clip";
import { AdamW } from "../../src/train/optimizer";
import { linearScheduleWithWarmup } from "../../src/train/schedule";
import { pythonSkipReason, REPO_ROOT, referencePython, runPython } from "../helpers/python";

const FIX = path.join(REPO_ROOT, "test", "fixtures", "lora");
interface Expected {
  config: {
    lr: number;
    weight_decay: number;
    accumulation: number;
    warmup: number;
    total_steps: number;
    max_norm: number;
    class_weights: number[];
  };
  micro_batches: { input_ids: number[][]; attention_mask: number[][]; labels: number[] }[];
  lora_logits: number[][];
  steps: { lr: number; grad_norm: number; losses: number[] }[];
}
const expected: Expected = JSON.parse(readFileSync(path.join(FIX, "expected.json"), "utf8"));

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

before(async () => {
  await selectBackend({ backend: "wasm" });
});

const load = () => fromPretrained(path.join(FIX, "base"), { onWarning: () => undefined });

test("a Python-saved PEFT adapter loads and gives PEFT's LoRA logits (1e-4)", async () => {
  const model = await load();
  const lora = loadAdapter(model, path.join(FIX, "adapter-initial"));
  assert.equal(lora.adapters.size, 6);
  const mb = expected.micro_batches[0]!;
  const out = model.forward({ inputIds: mb.input_ids, attentionMask: mb.attention_mask });
  const d = maxAbsDiff(out.logits.dataSync(), expected.lora_logits.flat());
  console.log(`LoRA forward max |diff| vs PEFT: ${d.toExponential(2)}`);
  assert.ok(d < 1e-4, `max diff ${d}`);
  tf.dispose([out.lastHiddenState, out.logits]);
  lora.dispose();
  model.dispose();
});

test("two optimizer steps (accumulation 2, class weights, decay, warmup, clipping) match torch AdamW + PEFT (1e-5)", async () => {
  for (const checkpointing of [false, true]) {
    const model = await load();
    const lora = loadAdapter(model, path.join(FIX, "adapter-initial"));
    lora.training = true;
    const params = lora.trainableVariables();
    const c = expected.config;
    const opt = new AdamW(params, { lr: c.lr, weightDecay: c.weight_decay });
    const schedule = linearScheduleWithWarmup({
      lr: c.lr,
      totalSteps: c.total_steps,
      warmupSteps: c.warmup,
    });
    for (let s = 0; s < 2; s++) {
      let acc = new Map<string, tf.Tensor>();
      const losses: number[] = [];
      for (let k = 0; k < c.accumulation; k++) {
        const mb = expected.micro_batches[s * c.accumulation + k]!;
        const batch = {
          inputIds: tf.tensor2d(mb.input_ids, undefined, "int32"),
          attentionMask: tf.tensor2d(mb.attention_mask, undefined, "int32"),
          labels: tf.tensor1d(mb.labels, "int32"),
        };
        const r = lossAndGradients(model, params, batch, {
          classWeights: c.class_weights,
          lossScale: 1 / c.accumulation,
          gradientCheckpointing: checkpointing,
        });
        tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
        losses.push(r.loss);
        const next = new Map<string, tf.Tensor>();
        for (const [n, g] of r.grads) {
          const prev = acc.get(n);
          next.set(n, prev ? tf.add(prev, g) : g);
          if (prev) {
            prev.dispose();
            g.dispose();
          }
        }
        acc = next;
      }
      const lr = schedule.lrAt(opt.stepCount);
      assert.ok(Math.abs(lr - expected.steps[s]!.lr) < 1e-12, `lr ${lr}`);
      assert.ok(maxAbsDiff(losses, expected.steps[s]!.losses) < 1e-5, `losses ${losses}`);
      const clipped = clipGradNorm(acc, c.max_norm);
      assert.ok(
        Math.abs(clipped.totalNorm - expected.steps[s]!.grad_norm) < 1e-5,
        `grad norm ${clipped.totalNorm}`,
      );
      opt.step(clipped.grads, lr);
      tf.dispose([...acc.values(), ...clipped.grads.values()]);
    }
    // Compare every trainable tensor with the adapter PEFT saved after the same steps.
    const dir = await mkdtemp(path.join(tmpdir(), "esmkit-adapter-"));
    saveAdapter(lora, model, dir);
    const ours = readSafetensors(path.join(dir, "adapter_model.safetensors")).tensors;
    const theirs = readSafetensors(
      path.join(FIX, "adapter-step2", "adapter_model.safetensors"),
    ).tensors;
    assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
    let worst = 0;
    for (const [k, t] of theirs) worst = Math.max(worst, maxAbsDiff(ours.get(k)!.data, t.data));
    console.log(
      `after 2 steps (checkpointing ${checkpointing}): max |diff| vs torch ${worst.toExponential(2)}`,
    );
    assert.ok(worst < 1e-5, `max weight diff ${worst}`);
    opt.dispose();
    lora.dispose();
    model.dispose();
  }
});

test("checkpointed and plain gradients agree within 1e-6, dropout masks included", async () => {
  const model = await load();
  const lora = loadAdapter(model, path.join(FIX, "adapter-initial"));
  (lora.config as { dropout: number }).dropout = 0.1;
  lora.training = true;
  const params = lora.trainableVariables();
  const mb = expected.micro_batches[1]!;
  const batch = {
    inputIds: tf.tensor2d(mb.input_ids, undefined, "int32"),
    attentionMask: tf.tensor2d(mb.attention_mask, undefined, "int32"),
    labels: tf.tensor1d(mb.labels, "int32"),
  };
  const start = lora.dropoutRng.getState();
  const before = tf.memory().numTensors;
  const plain = lossAndGradients(model, params, batch, { dropoutRng: lora.dropoutRng });
  const afterPlain = lora.dropoutRng.getState();
  lora.dropoutRng.setState(start);
  const ckpt = lossAndGradients(model, params, batch, {
    gradientCheckpointing: true,
    dropoutRng: lora.dropoutRng,
  });
  assert.equal(lora.dropoutRng.getState(), afterPlain, "both paths consume the same random stream");
  assert.ok(Math.abs(plain.loss - ckpt.loss) < 1e-6);
  assert.deepEqual([...plain.grads.keys()].sort(), [...ckpt.grads.keys()].sort());
  let worst = 0;
  for (const [k, g] of plain.grads)
    worst = Math.max(worst, maxAbsDiff(g.dataSync(), ckpt.grads.get(k)!.dataSync()));
  console.log(`checkpointed vs plain gradients: max |diff| ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-6, `max grad diff ${worst}`);
  tf.dispose([...plain.grads.values(), ...ckpt.grads.values()]);
  assert.equal(tf.memory().numTensors, before, "no tensors leak from either path");
  tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
  lora.dispose();
  model.dispose();
});

test("an adapter saved here loads in Python PeftModel.from_pretrained with the same logits", async (t) => {
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  const model = await load();
  const lora = loadAdapter(model, path.join(FIX, "adapter-step2"));
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-adapter-"));
  saveAdapter(lora, model, dir, { baseModel: path.join(FIX, "base") });
  const mb = expected.micro_batches[2]!;
  const batchFile = path.join(dir, "batch.json");
  writeFileSync(batchFile, JSON.stringify(mb));
  const theirs = JSON.parse(
    runPython(python, "check_adapter.py", [path.join(FIX, "base"), dir, batchFile]),
  ) as number[][];
  const out = model.forward({ inputIds: mb.input_ids, attentionMask: mb.attention_mask });
  const d = maxAbsDiff(out.logits.dataSync(), theirs.flat());
  console.log(`TS-saved adapter in PEFT: max |diff| ${d.toExponential(2)}`);
  assert.ok(d < 1e-4);
  tf.dispose([out.lastHiddenState, out.logits]);
  lora.dispose();
  model.dispose();
});

test("an adapter that does not fit fails with the missing keys named, leaving the model unchanged", async () => {
  const model = await load();
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-adapter-"));
  const cfg = JSON.parse(
    readFileSync(path.join(FIX, "adapter-initial", "adapter_config.json"), "utf8"),
  );
  cfg.target_modules = ["query", "key", "value", "dense"];
  writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify(cfg));
  writeFileSync(
    path.join(dir, "adapter_model.safetensors"),
    readFileSync(path.join(FIX, "adapter-initial", "adapter_model.safetensors")),
  );
  const before = model.namedVariables().get("classifier.dense.weight")!.dataSync().slice();
  assert.throws(
    () => loadAdapter(model, dir),
    (e: unknown) => {
      assert.ok(e instanceof AdapterError);
      assert.match(
        e.message,
        /missing keys: base_model\.model\.esm\.encoder\.layer\.0\.attention\.output\.dense\.lora_A\.weight/,
      );
      return true;
    },
  );
  assert.deepEqual(model.namedVariables().get("classifier.dense.weight")!.dataSync(), before);
  cfg.use_dora = true;
  writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify(cfg));
  assert.throws(() => loadAdapter(model, dir), /use_dora = true is not supported; expected false/);
  model.dispose();
});
