import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { AdapterError, ConfigError } from "../../src/errors";
import {
  type AdaptableLinear,
  type AdaptableModel,
  applyLora,
  exclusionReason,
  matchedModules,
  matchesTarget,
  savedModuleOf,
  targetReport,
} from "../../src/lora/lora";

before(async () => {
  await selectBackend({ backend: "wasm" });
});

/** Two "layers" with query/key/value/dense Linear layers and a classifier, like ESM. */
function toyModel(hidden = 6): AdaptableModel & { linears: Map<string, AdaptableLinear> } {
  const linears = new Map<string, AdaptableLinear>();
  const vars = new Map<string, tf.Variable>();
  let seed = 1;
  for (const name of [
    "esm.encoder.layer.0.attention.self.query",
    "esm.encoder.layer.0.attention.self.key",
    "esm.encoder.layer.0.attention.self.value",
    "esm.encoder.layer.0.attention.output.dense",
    "esm.encoder.layer.1.attention.self.query",
    "esm.encoder.layer.1.attention.self.value",
    "classifier.dense",
    "lm_head.dense",
  ]) {
    const weight = tf.variable(tf.randomNormal([hidden, hidden], 0, 1, "float32", seed++));
    linears.set(name, { name, weight });
    vars.set(`${name}.weight`, weight);
    vars.set(`${name}.bias`, tf.variable(tf.zeros([hidden])));
  }
  return { linears, namedLinears: () => linears, namedVariables: () => vars };
}

test("target matching follows PEFT: exact or .suffix for lists, full-match regex for a string", () => {
  const n = "esm.encoder.layer.0.attention.self.query";
  assert.ok(matchesTarget(n, ["query"]));
  assert.ok(matchesTarget(n, ["self.query"]));
  assert.ok(matchesTarget(n, [n]));
  assert.ok(!matchesTarget(n, ["uery"]), "suffix must start at a dot");
  assert.ok(!matchesTarget(n, ["query.weight"]));
  assert.ok(matchesTarget(n, String.raw`.*\.layer\.0\..*query`));
  assert.ok(!matchesTarget(n, "query"), "a string is a full match, not a search");
  const m = toyModel();
  assert.deepEqual(matchedModules(m, ["value"]), [
    "esm.encoder.layer.0.attention.self.value",
    "esm.encoder.layer.1.attention.self.value",
  ]);
});

test("PEFT's exclusions come first: modules_to_save (regex, whole dotted names), exclude_modules, the masked-LM head", () => {
  const saved = { modulesToSave: ["classifier", "score"] };
  assert.match(
    exclusionReason("classifier.dense", saved) ?? "",
    /inside modules_to_save "classifier"/,
  );
  assert.ok(exclusionReason("classifier", saved));
  assert.ok(exclusionReason("model.classifier.out_proj", saved), "inside, at any depth");
  assert.equal(exclusionReason("classifier_head.dense", saved), undefined, "whole names only");
  assert.equal(exclusionReason("esm.encoder.layer.0.attention.output.dense", saved), undefined);
  assert.ok(
    exclusionReason("esm.encoder.layer.1.output.dense", { modulesToSave: [String.raw`layer\.\d`] }),
  );
  const n = "esm.encoder.layer.0.attention.output.dense";
  assert.match(
    exclusionReason(n, { modulesToSave: [], excludeModules: ["attention.output.dense"] }) ?? "",
    /named by exclude_modules/,
  );
  assert.ok(exclusionReason(n, { modulesToSave: [], excludeModules: String.raw`.*layer\.0.*` }));
  assert.equal(
    exclusionReason(n, { modulesToSave: [], excludeModules: "output.dense" }),
    undefined,
  );
  assert.equal(exclusionReason(n, { modulesToSave: [], excludeModules: [] }), undefined);
  assert.match(exclusionReason("lm_head.dense", saved) ?? "", /masked-LM head/);

  const r = targetReport(toyModel(), { targetModules: ["value", "dense"], ...saved });
  assert.deepEqual(r.matched, [
    "esm.encoder.layer.0.attention.self.value",
    "esm.encoder.layer.0.attention.output.dense",
    "esm.encoder.layer.1.attention.self.value",
  ]);
  assert.deepEqual(
    r.excluded.map((e) => e.name),
    ["classifier.dense", "lm_head.dense"],
  );
  assert.deepEqual(matchedModules(toyModel(), ["dense"]), [
    "esm.encoder.layer.0.attention.output.dense",
  ]);
  // As PeftModelForSequenceClassification: the classifier is always in modules_to_save.
  const lora = applyLora(toyModel(), { targetModules: ["dense"], modulesToSave: [] });
  assert.deepEqual(lora.config.modulesToSave, ["classifier", "score"]);
  assert.deepEqual([...lora.adapters.keys()], ["esm.encoder.layer.0.attention.output.dense"]);
  lora.dispose();
});

test("modules_to_save wraps the outermost module whose name ends with an entry (PEFT's _set_trainable)", () => {
  assert.equal(savedModuleOf("classifier.dense.weight", ["classifier", "score"]), "classifier");
  assert.equal(savedModuleOf("classifier.out_proj.bias", ["out_proj"]), "classifier.out_proj");
  assert.equal(
    savedModuleOf("esm.encoder.layer.0.attention.self.query.weight", ["classifier"]),
    undefined,
  );
});

test("no matching target is an AdapterError quoting the targets and real names", () => {
  assert.throws(
    () => applyLora(toyModel(), { targetModules: ["q_proj", "v_proj"] }),
    (e: unknown) => {
      assert.ok(e instanceof AdapterError);
      assert.match(
        e.message,
        /No module matched the LoRA targets \["q_proj","v_proj"\]; Linear layers are named like: esm\.encoder\.layer\.0\.attention\.self\.query/,
      );
      return true;
    },
  );
  assert.throws(() => applyLora(toyModel(), { rank: 0 }), ConfigError);
  assert.throws(
    () => applyLora(toyModel(), { dropout: 1 }),
    /Invalid LoRA dropout: 1; expected a number in \[0, 1\)/,
  );
});

test("adapters start as a no-op (B = 0), freeze the base and report trainable parameters", () => {
  const m = toyModel(6);
  const lora = applyLora(m, { rank: 2, alpha: 4 });
  assert.equal(lora.adapters.size, 5);
  assert.deepEqual(lora.excluded, [], "query, key, value touch no excluded module");
  const q = m.linears.get("esm.encoder.layer.0.attention.self.query")!;
  const x = tf.randomNormal([3, 6]) as tf.Tensor2D;
  const out = q.adapter!.apply(x);
  assert.equal(tf.max(tf.abs(out)).dataSync()[0], 0);
  const vars = m.namedVariables();
  assert.equal(vars.get("esm.encoder.layer.0.attention.self.query.weight")!.trainable, false);
  assert.equal(vars.get("classifier.dense.weight")!.trainable, true);
  const report = lora.parameterReport();
  // 5 adapters x (6*2 + 2*6) + classifier (36 + 6); base 8 x 42 = 336.
  assert.equal(report.trainable, 5 * 24 + 42);
  assert.equal(report.total, 336 + 5 * 24);
  assert.equal(lora.trainableVariables().size, 5 * 2 + 2);
  lora.dispose();
});

test("merge folds scaling * B A into the weight and unmerge restores it bit for bit", () => {
  const m = toyModel(6);
  const lora = applyLora(m, { rank: 2, alpha: 4 });
  for (const a of lora.adapters.values())
    a.bT.assign(tf.randomNormal(a.bT.shape, 0, 1, "float32", 9));
  const q = m.linears.get("esm.encoder.layer.0.attention.self.query")!;
  const x = tf.randomNormal([4, 6], 0, 1, "float32", 3) as tf.Tensor2D;
  const before = q.weight.dataSync().slice();
  const adapted = tf.add(tf.matMul(x, q.weight), q.adapter!.apply(x));
  lora.merge();
  assert.equal(q.adapter, undefined, "merged layers run without the side path");
  const merged = tf.matMul(x, q.weight);
  const diff = tf.max(tf.abs(tf.sub(adapted, merged))).dataSync()[0]!;
  assert.ok(diff < 1e-5, `merged output differs by ${diff}`);
  assert.notDeepEqual(q.weight.dataSync(), before);
  lora.unmerge();
  assert.deepEqual(q.weight.dataSync(), before);
  assert.ok(q.adapter, "unmerge puts the side path back");
  lora.dispose();
});
