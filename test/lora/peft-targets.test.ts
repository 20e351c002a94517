/**
 * LoRA targets that also name modules inside `modules_to_save` (`dense` and `out_proj`
 * reach classifier.dense / classifier.out_proj): PEFT adapts none of those, and esmkit
 * must agree in both directions. Fixtures: test/reference/make_lora_fixtures.py.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { AdapterError } from "../../src/errors";
import { loadAdapter, saveAdapter } from "../../src/lora/adapter-io";
import { applyLora } from "../../src/lora/lora";
import type { Esm2Model } from "../../src/model/esm2";
import { fromPretrained } from "../../src/model/pretrained";
import { readSafetensors } from "../../src/model/safetensors";
import { SeededRandom } from "../../src/util/random";
import { pythonSkipReason, REPO_ROOT, referencePython, runPython } from "../helpers/python";

const FIX = path.join(REPO_ROOT, "test", "fixtures", "lora");
const TINY = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");
interface Targeted {
  input_ids: number[][];
  attention_mask: number[][];
  adapters: Record<string, { targets: string[]; lora_modules: string[]; logits: number[][] }>;
}
const expected: Targeted = JSON.parse(
  readFileSync(path.join(FIX, "expected-targets.json"), "utf8"),
);
const CASES = [
  { adapter: "adapter-dense", skipped: "classifier.dense" },
  { adapter: "adapter-out-proj", skipped: "classifier.out_proj" },
];

before(async () => {
  await selectBackend({ backend: "wasm" });
});

const load = (dir = path.join(FIX, "base")) => fromPretrained(dir, { onWarning: () => undefined });

function logits(model: Esm2Model): Float32Array {
  const out = model.forward({
    inputIds: expected.input_ids,
    attentionMask: expected.attention_mask,
  });
  const values = out.logits.dataSync() as Float32Array;
  tf.dispose([out.lastHiddenState, out.logits]);
  return values;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

for (const { adapter, skipped } of CASES) {
  test(`a PEFT adapter targeting ${expected.adapters[adapter]!.targets.join(",")} loads with PEFT's layers and logits`, async () => {
    const want = expected.adapters[adapter]!;
    const model = await load();
    const lora = loadAdapter(model, path.join(FIX, adapter));
    assert.deepEqual([...lora.adapters.keys()].sort(), want.lora_modules);
    assert.ok(!lora.adapters.has(skipped));
    const excluded = lora.excluded.find((e) => e.name === skipped);
    assert.match(excluded?.reason ?? "", /inside modules_to_save "classifier"/);
    const d = maxAbsDiff(logits(model), want.logits.flat());
    console.log(`${adapter}: max |diff| vs PEFT ${d.toExponential(2)}`);
    assert.ok(d < 1e-4, `max diff ${d}`);
    lora.dispose();
    model.dispose();
  });
}

/** LoRA with the fixture's targets, B and the classifier set to seeded random values. */
async function trainedLookalike(base: string, targets: string[]) {
  const model = await load(base);
  const lora = applyLora(model, { rank: 2, alpha: 4, dropout: 0, targetModules: targets });
  const rng = new SeededRandom(7);
  const noise = (v: tf.Variable) =>
    v.assign(
      tf.add(
        v,
        tf.tensor(
          Float32Array.from({ length: v.size }, () => rng.next() - 0.5),
          v.shape,
        ),
      ),
    );
  for (const a of lora.adapters.values()) noise(a.bT);
  for (const [key, v] of model.namedVariables()) if (lora.isSaved(key)) noise(v);
  return { model, lora };
}

test("esmkit saves the same adapter keys PEFT does for dense and out_proj targets (masked-LM head skipped too)", async () => {
  for (const { adapter, skipped } of CASES) {
    const { targets } = expected.adapters[adapter]!;
    // tiny carries a masked-LM head: `dense` must not reach lm_head.dense either.
    const { model, lora } = await trainedLookalike(TINY, targets);
    assert.ok(model.namedLinears().has("lm_head.dense"));
    assert.ok(!lora.adapters.has("lm_head.dense") && !lora.adapters.has(skipped));
    if (adapter === "adapter-dense") {
      assert.match(
        lora.excluded.find((e) => e.name === "lm_head.dense")?.reason ?? "",
        /masked-LM head/,
      );
    }
    const dir = await mkdtemp(path.join(tmpdir(), "esmkit-targets-"));
    saveAdapter(lora, model, dir);
    const ours = [...readSafetensors(path.join(dir, "adapter_model.safetensors")).tensors.keys()];
    const theirs = [
      ...readSafetensors(path.join(FIX, adapter, "adapter_model.safetensors")).tensors.keys(),
    ];
    assert.deepEqual(ours.sort(), theirs.sort());
    lora.dispose();
    model.dispose();
  }
});

test("adapters saved here with dense / out_proj targets load in PEFT with the same logits and no missing or unexpected keys", async (t) => {
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  // tiny has a masked-LM head, which `dense` must not reach: PEFT's model has none.
  const bases = { "adapter-dense": TINY, "adapter-out-proj": path.join(FIX, "base") };
  for (const [adapter, base] of Object.entries(bases)) {
    const { model, lora } = await trainedLookalike(base, expected.adapters[adapter]!.targets);
    const dir = await mkdtemp(path.join(tmpdir(), "esmkit-targets-"));
    saveAdapter(lora, model, dir, { baseModel: base });
    const batchFile = path.join(dir, "batch.json");
    writeFileSync(batchFile, JSON.stringify(expected));
    const theirs = JSON.parse(
      runPython(python, "check_adapter.py", [base, dir, batchFile, "--keys"]),
    ) as { logits: number[][]; missing: string[]; unexpected: string[] };
    assert.deepEqual(theirs.missing, [], `${adapter}: missing keys`);
    assert.deepEqual(theirs.unexpected, [], `${adapter}: unexpected keys`);
    const d = maxAbsDiff(logits(model), theirs.logits.flat());
    console.log(`${adapter} saved here, in PEFT: max |diff| ${d.toExponential(2)}`);
    assert.ok(d < 1e-4, `max diff ${d}`);
    lora.dispose();
    model.dispose();
  }
});

test("targets that name only modules_to_save layers fail as in PEFT, saying why", async () => {
  const model = await load();
  assert.throws(
    () => applyLora(model, { targetModules: ["out_proj"] }),
    (e: unknown) => {
      assert.ok(e instanceof AdapterError);
      assert.match(
        e.message,
        /No module matched the LoRA targets \["out_proj"\]; the modules they name are all excluded: classifier\.out_proj \(inside modules_to_save "classifier", which is trained fully and saved whole/,
      );
      return true;
    },
  );
  model.dispose();
});
