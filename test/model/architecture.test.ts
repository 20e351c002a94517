/**
 * The one description of ESM-2's modules (src/model/architecture.ts) against a checkpoint
 * transformers wrote (test/fixtures/model/tiny, made by test/reference/make_model_fixtures.py)
 * and against the model built from it.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { before, test } from "node:test";
import { selectBackend } from "../../src/backend";
import {
  classificationLinears,
  encoderNorms,
  groupOf,
  LM_HEAD,
  parameterSpecs,
} from "../../src/model/architecture";
import { customEsmConfig, parseEsmConfig } from "../../src/model/config";
import { Esm2Model } from "../../src/model/esm2";
import { SafetensorsFile } from "../../src/model/safetensors";
import { mapCheckpointKey } from "../../src/model/weights";
import { REPO_ROOT } from "../helpers/python";
import { readJson } from "../onnx/helpers";

const TINY = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");

before(async () => {
  await selectBackend({ backend: "wasm" });
});

test("the parameter table is the state dict transformers saved: every key and shape, nothing more", () => {
  const config = parseEsmConfig(readJson(path.join(TINY, "config.json")));
  const file = SafetensorsFile.open(path.join(TINY, "model.safetensors"));
  const saved = new Map<string, number[]>();
  const passthrough: string[] = [];
  try {
    for (const [raw, info] of file.tensors) {
      const m = mapCheckpointKey(raw, config);
      if (m.kind === "param") saved.set(m.key, info.shape);
      else if (m.kind === "passthrough") passthrough.push(m.key);
    }
  } finally {
    file.close();
  }
  // The fixture is EsmForMaskedLM-tied plus a classifier: the lm_head without a decoder.
  const specs = parameterSpecs(config, { lmHead: true });
  assert.deepEqual(
    specs.map((s) => s.key).sort(),
    [...saved.keys()].sort(),
    "architecture.ts's keys vs the checkpoint's",
  );
  for (const s of specs) assert.deepEqual(s.shape, saved.get(s.key), s.key);
  assert.ok(specs.some((s) => s.key === `${LM_HEAD.dense}.weight`));
  assert.ok(!specs.some((s) => s.key.startsWith(LM_HEAD.decoder)), "tied decoder not held");
  assert.deepEqual(passthrough.sort(), [
    "esm.contact_head.regression.bias",
    "esm.contact_head.regression.weight",
  ]);
});

test("the model's Linear modules, their sizes, norms and groups are the table's", () => {
  const config = customEsmConfig({
    hiddenSize: 24,
    intermediateSize: 40,
    numHiddenLayers: 3,
    numAttentionHeads: 4,
    numLabels: 5,
    tieWordEmbeddings: false,
  });
  const model = Esm2Model.random(config, { lmHead: true });
  try {
    const linears = model.namedLinears();
    const expected = [
      ...classificationLinears(config),
      { name: LM_HEAD.dense, inFeatures: 24, outFeatures: 24 },
      { name: LM_HEAD.decoder, inFeatures: 24, outFeatures: config.vocabSize },
    ];
    assert.deepEqual(
      [...linears.keys()],
      expected.map((m) => m.name),
    );
    assert.equal(classificationLinears(config).length, 3 * 6 + 2);
    for (const m of expected) {
      // Held transposed: [in, out].
      assert.deepEqual(linears.get(m.name)!.weight.shape, [m.inFeatures, m.outFeatures], m.name);
    }
    const vars = model.namedVariables();
    assert.equal(encoderNorms(config).length, 3 * 2 + 1);
    for (const n of encoderNorms(config))
      assert.ok(vars.has(`${n}.weight`) && vars.has(`${n}.bias`), n);
    for (const s of model.parameterSpecs()) assert.equal(s.group, groupOf(s.key));
    assert.deepEqual(
      [...new Set(model.parameterSpecs().map((s) => s.group))],
      ["encoder", "classifier", "lm_head"],
    );
  } finally {
    model.dispose();
  }
});
