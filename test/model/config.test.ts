import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../../src/errors";
import {
  customEsmConfig,
  ESM2_PRESET_NAMES,
  ESM2_PRESETS,
  esm2Config,
  esmConfigJsonText,
  esmConfigToJson,
  parameterSpecs,
  parseEsmConfig,
} from "../../src/model";

/** config.json of facebook/esm2_t6_8M_UR50D as published. */
const HUB_8M = {
  architectures: ["EsmForMaskedLM"],
  attention_probs_dropout_prob: 0.0,
  classifier_dropout: null,
  emb_layer_norm_before: false,
  esmfold_config: null,
  hidden_act: "gelu",
  hidden_dropout_prob: 0.0,
  hidden_size: 320,
  initializer_range: 0.02,
  intermediate_size: 1280,
  is_folding_model: false,
  layer_norm_eps: 1e-5,
  mask_token_id: 32,
  max_position_embeddings: 1026,
  model_type: "esm",
  num_attention_heads: 20,
  num_hidden_layers: 6,
  pad_token_id: 1,
  position_embedding_type: "rotary",
  token_dropout: true,
  torch_dtype: "float32",
  transformers_version: "4.25.0.dev0",
  use_cache: true,
  vocab_list: null,
  vocab_size: 33,
};

test("the six presets have the published sizes and parameter counts", () => {
  // Parameter counts of EsmForSequenceClassification with 2 labels (spec table).
  const expected: Record<string, [number, number, number, number]> = {
    esm2_t6_8M_UR50D: [6, 320, 20, 7.5e6],
    esm2_t12_35M_UR50D: [12, 480, 20, 33.5e6],
    esm2_t30_150M_UR50D: [30, 640, 20, 148e6],
    esm2_t33_650M_UR50D: [33, 1280, 20, 651e6],
    esm2_t36_3B_UR50D: [36, 2560, 40, 2.84e9],
    esm2_t48_15B_UR50D: [48, 5120, 40, 15.1e9],
  };
  assert.deepEqual(ESM2_PRESET_NAMES, Object.keys(expected));
  for (const [name, [layers, hidden, heads, params]] of Object.entries(expected)) {
    const c = ESM2_PRESETS[name as keyof typeof ESM2_PRESETS];
    assert.equal(c.numHiddenLayers, layers);
    assert.equal(c.hiddenSize, hidden);
    assert.equal(c.numAttentionHeads, heads);
    assert.equal(c.intermediateSize, 4 * hidden);
    assert.equal(c.layerNormEps, 1e-5);
    assert.equal(c.tokenDropout, true);
    assert.equal(c.maskTokenId, 32);
    const n = parameterSpecs(c, { lmHead: false })
      .filter((s) => s.trainable)
      .reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    // The table rounds to 3 significant digits.
    assert.ok(
      Math.abs(n - params) / params < 0.01,
      `${name}: ${n} parameters, table says ${params}`,
    );
  }
});

test("a Hub config.json parses to the 8M preset, unknown fields kept for saving", () => {
  const c = parseEsmConfig(HUB_8M);
  const preset = esm2Config("esm2_t6_8M_UR50D");
  for (const k of [
    "vocabSize",
    "hiddenSize",
    "numHiddenLayers",
    "numAttentionHeads",
    "intermediateSize",
    "layerNormEps",
    "maskTokenId",
    "padTokenId",
    "tokenDropout",
    "maxPositionEmbeddings",
  ] as const) {
    assert.equal(c[k], preset[k], k);
  }
  assert.equal(c.numLabels, 2);
  assert.deepEqual(c.extra, {
    classifier_dropout: null,
    esmfold_config: null,
    use_cache: true,
    vocab_list: null,
  });
  const json = esmConfigToJson(c);
  assert.deepEqual(json.architectures, ["EsmForSequenceClassification"]);
  assert.equal(json.classifier_dropout, null);
  assert.equal(json.layer_norm_eps, 1e-5);
  assert.deepEqual(json.id2label, { "0": "LABEL_0", "1": "LABEL_1" });
  // Round trip.
  assert.deepEqual(parseEsmConfig(json), { ...c, extra: { ...c.extra } });
});

test("absent fields take transformers' class defaults (layer_norm_eps 1e-12)", () => {
  const { layer_norm_eps: _, ...rest } = HUB_8M;
  assert.equal(parseEsmConfig(rest).layerNormEps, 1e-12);
  const { token_dropout: __, ...noDropout } = HUB_8M;
  assert.equal(parseEsmConfig(noDropout).tokenDropout, false);
});

test("labels come from id2label, or num_labels", () => {
  const c = parseEsmConfig({
    ...HUB_8M,
    id2label: { "0": "soluble", "1": "membrane", "2": "secreted" },
  });
  assert.equal(c.numLabels, 3);
  assert.deepEqual(c.id2label, { 0: "soluble", 1: "membrane", 2: "secreted" });
  assert.deepEqual(c.label2id, { soluble: 0, membrane: 1, secreted: 2 });
  assert.equal(parseEsmConfig({ ...HUB_8M, num_labels: 5 }).numLabels, 5);
});

function rejects(json: Record<string, unknown>, field: string, pattern: RegExp): void {
  assert.throws(
    () => parseEsmConfig(json, "my/config.json"),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
      assert.equal(e.context.field, field);
      assert.match(e.message, /^my\/config\.json: /);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test("unsupported values fail naming the field, the value and what is accepted", () => {
  rejects(
    { ...HUB_8M, position_embedding_type: "absolute" },
    "position_embedding_type",
    /unsupported position_embedding_type "absolute"; accepted: "rotary"/,
  );
  const { position_embedding_type: _, ...noPos } = HUB_8M;
  rejects(
    noPos,
    "position_embedding_type",
    /position_embedding_type is missing, which transformers reads as "absolute"/,
  );
  rejects(
    { ...HUB_8M, token_dropout: "yes" },
    "token_dropout",
    /token_dropout "yes"; accepted: true or false/,
  );
  rejects({ ...HUB_8M, hidden_act: "relu" }, "hidden_act", /hidden_act "relu"; accepted: "gelu"/);
  rejects(
    { ...HUB_8M, hidden_size: 330 },
    "hidden_size",
    /hidden_size 330; accepted: a multiple of num_attention_heads \(20\)/,
  );
  rejects(
    { ...HUB_8M, hidden_size: 300 },
    "num_attention_heads",
    /even head dimension.*300 \/ 20 = 15/,
  );
  rejects(
    { ...HUB_8M, emb_layer_norm_before: true },
    "emb_layer_norm_before",
    /true; accepted: false or null/,
  );
  rejects({ ...HUB_8M, is_decoder: true }, "is_decoder", /accepted: false/);
  rejects({ ...HUB_8M, model_type: "bert" }, "model_type", /"bert"; accepted: "esm"/);
  rejects({ ...HUB_8M, num_hidden_layers: 0 }, "num_hidden_layers", /0; accepted: an integer >= 1/);
  rejects({ ...HUB_8M, layer_norm_eps: -1 }, "layer_norm_eps", /-1; accepted: a number > 0/);
  rejects({ ...HUB_8M, vocab_size: undefined }, "vocab_size", /required/);
  rejects({ ...HUB_8M, mask_token_id: 40 }, "mask_token_id", /40; accepted: an id in \[0, 33\)/);
  rejects(
    { ...HUB_8M, problem_type: "ranking" },
    "problem_type",
    /"ranking"; accepted: null or regression/,
  );
  rejects(
    { ...HUB_8M, id2label: { "0": "a" }, num_labels: 2 },
    "num_labels",
    /num_labels 2; accepted: 1, the number of id2label entries/,
  );
});

test("config.json text keeps float fields floats (transformers' strict config rejects 0 for 0.0)", () => {
  const text = esmConfigJsonText(esm2Config("esm2_t6_8M_UR50D"));
  assert.match(text, /"hidden_dropout_prob": 0\.0,/);
  assert.match(text, /"attention_probs_dropout_prob": 0\.0,/);
  assert.match(text, /"rope_theta": 10000\.0,/);
  assert.match(text, /"layer_norm_eps": 0\.00001,/);
  assert.match(text, /"pad_token_id": 1,/);
  const parsed = parseEsmConfig(JSON.parse(text));
  assert.equal(parsed.ropeTheta, 10000);
  assert.equal(parsed.hiddenDropoutProb, 0);
});

test("custom configs derive labels and are validated too", () => {
  const named = customEsmConfig({
    numHiddenLayers: 1,
    hiddenSize: 16,
    numAttentionHeads: 2,
    id2label: { 0: "soluble", 1: "membrane", 2: "other" },
  });
  assert.equal(named.numLabels, 3);
  assert.deepEqual(named.label2id, { soluble: 0, membrane: 1, other: 2 });
  assert.deepEqual(
    customEsmConfig({ numHiddenLayers: 1, hiddenSize: 16, numAttentionHeads: 2, numLabels: 1 })
      .id2label,
    {
      0: "LABEL_0",
    },
  );
  const c = customEsmConfig({ numHiddenLayers: 2, hiddenSize: 32, numAttentionHeads: 4 });
  assert.equal(c.intermediateSize, 128);
  assert.throws(
    () => customEsmConfig({ numHiddenLayers: 2, hiddenSize: 32, numAttentionHeads: 5 }),
    (e: unknown) => e instanceof ConfigError && /hidden_size 32/.test(e.message),
  );
  assert.throws(
    () => esm2Config("esm2_t99_1T" as never),
    (e: unknown) => e instanceof ConfigError && /expected one of: esm2_t6_8M_UR50D/.test(e.message),
  );
});
