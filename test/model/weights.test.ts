/**
 * Loading checkpoints that are not quite right: missing and unexpected keys, wrong
 * shapes, truncated files, bad config values, other key spellings, Hub MaskedLM
 * checkpoints without a classifier, pickled .bin-only directories.
 */
import assert from "node:assert/strict";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { ConfigError, StorageError, WeightsError } from "../../src/errors";
import { type Esm2Model, fromPretrained, readSafetensors, writeSafetensors } from "../../src/model";
import { REPO_ROOT } from "../helpers/python";

const TINY = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");
const ODD = path.join(REPO_ROOT, "test", "fixtures", "model", "odd");
const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-weights-"));
const inputs = JSON.parse(readFileSync(path.join(TINY, "inputs.json"), "utf8")) as {
  input_ids: number[][];
  attention_mask: number[][];
};
const feed = { inputIds: inputs.input_ids, attentionMask: inputs.attention_mask };

before(async () => {
  await selectBackend({ backend: "wasm" });
});
after(() => rmSync(tmp, { recursive: true, force: true }));

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/** A copy of the tiny fixture with its tensors and config edited. */
function variant(
  name: string,
  editTensors: (t: Tensors) => void = () => {},
  editConfig: (c: Record<string, unknown>) => void = () => {},
): string {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(TINY)) copyFileSync(path.join(TINY, f), path.join(dir, f));
  const { tensors } = readSafetensors(path.join(TINY, "model.safetensors"));
  editTensors(tensors);
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  const config = JSON.parse(readFileSync(path.join(TINY, "config.json"), "utf8"));
  editConfig(config);
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

async function loadFails(
  dir: string,
  errorClass: typeof WeightsError | typeof ConfigError,
  ...patterns: RegExp[]
) {
  const tensorsBefore = tf.memory().numTensors;
  await assert.rejects(fromPretrained(dir, { onWarning: () => {} }), (e: unknown) => {
    assert.ok(e instanceof errorClass, `expected ${errorClass.name}, got ${e}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
  assert.equal(tf.memory().numTensors, tensorsBefore, "a failed load leaked tensors");
}

function logitsOf(model: Esm2Model): number[] {
  const { lastHiddenState, logits } = model.forward(feed);
  const out = Array.from(logits.dataSync());
  tf.dispose([lastHiddenState, logits]);
  return out;
}

test("a missing key is named", async () => {
  const dir = variant("missing", (t) => t.delete("esm.encoder.layer.1.output.dense.weight"));
  await loadFails(
    dir,
    WeightsError,
    /does not fit the config \(2 layers, hidden 32, 4 heads, 2 labels\)/,
    /missing keys \(1\):\n\s+esm\.encoder\.layer\.1\.output\.dense\.weight/,
    /model\.safetensors/,
  );
});

test("a wrong shape is named with expected and found shapes", async () => {
  const dir = variant("shape", (t) =>
    t.set("esm.encoder.layer.0.attention.self.query.weight", {
      shape: [32, 31],
      data: new Float32Array(32 * 31),
    }),
  );
  await loadFails(
    dir,
    WeightsError,
    /shape mismatches \(1\):\n\s+esm\.encoder\.layer\.0\.attention\.self\.query\.weight: expected \[32, 32\], found \[32, 31\]/,
  );
});

test("every problem is listed at once: missing, unexpected and mismatched", async () => {
  const dir = variant("many", (t) => {
    t.delete("esm.encoder.layer.0.LayerNorm.gamma");
    t.delete("lm_head.bias");
    t.set("esm.encoder.layer.2.attention.self.query.weight", {
      shape: [1],
      data: new Float32Array(1),
    });
    t.set("esm.embeddings.word_embeddings.weight", {
      shape: [34, 32],
      data: new Float32Array(34 * 32),
    });
  });
  await loadFails(
    dir,
    WeightsError,
    /missing keys \(2\):\n\s+esm\.encoder\.layer\.0\.LayerNorm\.weight\n\s+lm_head\.bias/,
    /unexpected keys \(1\):\n\s+esm\.encoder\.layer\.2\.attention\.self\.query\.weight/,
    /shape mismatches \(1\):\n\s+esm\.embeddings\.word_embeddings\.weight: expected \[33, 32\], found \[34, 32\]/,
  );
});

test("unexpected keys can be allowed, with a warning", async () => {
  const dir = variant("extra", (t) =>
    t.set("something.else", { shape: [2], data: new Float32Array(2) }),
  );
  await loadFails(dir, WeightsError, /unexpected keys \(1\):\n\s+something\.else/);
  const warnings: string[] = [];
  const model = await fromPretrained(dir, {
    allowUnexpected: true,
    onWarning: (m) => warnings.push(m),
  });
  assert.deepEqual(model.loadReport?.unexpected, ["something.else"]);
  assert.match(warnings.join("\n"), /the model does not use were skipped: \[something\.else\]/);
  model.dispose();
});

test("a truncated weights file fails naming the file", async () => {
  const dir = variant("truncated");
  const file = path.join(dir, "model.safetensors");
  truncateSync(file, statSync(file).size - 1000);
  await loadFails(
    dir,
    WeightsError,
    /truncated\/model\.safetensors: truncated file: tensor "[^"]+" ends at byte/,
  );
});

test("a half-written model directory names the missing or cut-off file and what is accepted", async () => {
  const accepted =
    /A model directory needs config\.json plus model\.safetensors \(or model\.safetensors\.index\.json and every shard it lists\); save or copy the model again/;
  const notPickle = async (dir: string, ...patterns: RegExp[]) => {
    await assert.rejects(fromPretrained(dir, { onWarning: () => {} }), (e: unknown) => {
      assert.ok(e instanceof WeightsError, `expected WeightsError, got ${e}`);
      for (const p of patterns) assert.match(e.message, p);
      assert.doesNotMatch(e.message, /pickle|convert/i);
      return true;
    });
  };
  // Killed while writing the weights: config.json and the temporary file are there.
  const killed = variant("half-written");
  renameSync(
    path.join(killed, "model.safetensors"),
    path.join(killed, "model.safetensors.tmp-4242"),
  );
  await notPickle(
    killed,
    /half-written is an incomplete model directory: it has config\.json but neither model\.safetensors nor model\.safetensors\.index\.json \(it holds config\.json, expected\.json, inputs\.json, model\.safetensors\.tmp-4242, tokenizer_config\.json, vocab\.txt\)\. model\.safetensors\.tmp-4242 is the leftover of a write that was interrupted\./,
    accepted,
  );
  // Weights never written, no leftover.
  rmSync(path.join(killed, "model.safetensors.tmp-4242"));
  await notPickle(killed, /it has config\.json but neither model\.safetensors/, accepted);
  // Weights written, config.json not (yet).
  const noConfig = variant("no-config");
  rmSync(path.join(noConfig, "config.json"));
  await notPickle(
    noConfig,
    /no-config is an incomplete model directory: it has no config\.json\./,
    accepted,
  );
  // Cut-off files.
  const cut = variant("cut-weights");
  truncateSync(path.join(cut, "model.safetensors"), 4096);
  await notPickle(
    cut,
    /cut-weights\/model\.safetensors: truncated file: .*\. The file is incomplete \(an interrupted save, copy or download\); esmkit needs the whole file/,
  );
  const empty = variant("empty-config");
  writeFileSync(path.join(empty, "config.json"), "");
  await notPickle(
    empty,
    /empty-config\/config\.json is not valid JSON \(it is empty\): it is cut off, a sign of an interrupted save or copy/,
  );
});

test("unknown config values fail with the field, value and accepted values", async () => {
  await loadFails(
    variant("absolute", undefined, (c) => {
      c.position_embedding_type = "absolute";
    }),
    ConfigError,
    /config\.json: unsupported position_embedding_type "absolute"; accepted: "rotary"/,
  );
  await loadFails(
    variant("dropout", undefined, (c) => {
      c.token_dropout = "sometimes";
    }),
    ConfigError,
    /unsupported token_dropout "sometimes"; accepted: true or false/,
  );
  await loadFails(
    variant("heads", undefined, (c) => {
      c.num_attention_heads = 5;
    }),
    ConfigError,
    /unsupported hidden_size 32; accepted: a multiple of num_attention_heads \(5\)/,
  );
});

test("bare EsmModel keys and LayerNorm.weight spellings load to the same model", async () => {
  const reference = await fromPretrained(TINY);
  const dir = variant("bare", (t) => {
    for (const [k, v] of [...t]) {
      if (!k.startsWith("esm.")) continue;
      t.delete(k);
      t.set(
        k
          .slice(4)
          .replace("LayerNorm.gamma", "LayerNorm.weight")
          .replace("LayerNorm.beta", "LayerNorm.bias"),
        v,
      );
    }
  });
  const bare = await fromPretrained(dir);
  assert.deepEqual(logitsOf(bare), logitsOf(reference));
  reference.dispose();
  bare.dispose();
});

test("inv_freq comes from the checkpoint (layer 0 of per-layer keys), else computed", async () => {
  const odd = await fromPretrained(ODD); // Hub layout: per-layer keys, fp16-rounded values
  assert.equal(
    odd.loadReport?.invFreqSource,
    "esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq",
  );
  assert.ok(
    odd.loadReport?.ignored.includes(
      "esm.encoder.layer.2.attention.self.rotary_embeddings.inv_freq",
    ),
  );
  assert.ok(odd.loadReport?.ignored.includes("esm.embeddings.position_ids"));
  const fromFile = Array.from(odd.invFreq.dataSync());
  const exact = [
    1,
    10000 ** (-2 / 12),
    10000 ** (-4 / 12),
    10000 ** (-6 / 12),
    10000 ** (-8 / 12),
    10000 ** (-10 / 12),
  ];
  assert.ok(
    fromFile.some((v, i) => v !== Math.fround(exact[i]!)),
    "the fixture holds fp16-rounded values",
  );
  odd.dispose();

  const dir = variant("no-inv-freq", (t) =>
    t.delete("esm.encoder.layer.*.attention.self.rotary_embeddings.inv_freq"),
  );
  const computed = await fromPretrained(dir);
  assert.equal(computed.loadReport?.invFreqSource, "computed");
  assert.deepEqual(
    Array.from(computed.invFreq.dataSync()),
    [1, 10000 ** (-2 / 8), 10000 ** (-4 / 8), 10000 ** (-6 / 8)].map(Math.fround),
  );
  computed.dispose();
});

test("a checkpoint without a classifier gets a seeded N(0, 0.02) one, reported", async () => {
  const dir = variant("maskedlm", (t) => {
    for (const k of [...t.keys()]) if (k.startsWith("classifier.")) t.delete(k);
  });
  const warnings: string[] = [];
  const a = await fromPretrained(dir, {
    seed: 7,
    numLabels: 3,
    onWarning: (m) => warnings.push(m),
  });
  assert.deepEqual(a.loadReport?.missingInitialised, [
    "classifier.dense.weight",
    "classifier.dense.bias",
    "classifier.out_proj.weight",
    "classifier.out_proj.bias",
  ]);
  assert.match(
    warnings[0] ?? "",
    /newly initialised: \[classifier\.dense\.weight, .*You should probably TRAIN/,
  );
  assert.equal(a.config.numLabels, 3);
  const w = Array.from(a.classifierDense.weight.dataSync());
  const mean = w.reduce((s, x) => s + x, 0) / w.length;
  const std = Math.sqrt(w.reduce((s, x) => s + (x - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(std - 0.02) < 0.002 && Math.abs(mean) < 0.002, `std ${std}, mean ${mean}`);
  assert.deepEqual(Array.from(a.classifierOut.bias!.dataSync()), [0, 0, 0]);
  const b = await fromPretrained(dir, { seed: 7, numLabels: 3, onWarning: () => {} });
  const c = await fromPretrained(dir, { seed: 8, numLabels: 3, onWarning: () => {} });
  assert.deepEqual(logitsOf(a), logitsOf(b));
  assert.notDeepEqual(logitsOf(a), logitsOf(c));
  for (const m of [a, b, c]) m.dispose();
});

test("a label count that differs from the checkpoint's classifier fails unless re-initialised", async () => {
  await assert.rejects(fromPretrained(TINY, { numLabels: 5 }), (e: unknown) => {
    assert.ok(e instanceof WeightsError);
    assert.match(
      e.message,
      /classifier\.out_proj\.weight: expected \[5, 32\], found \[2, 32\] \(the checkpoint has 2 labels/,
    );
    return true;
  });
  const warnings: string[] = [];
  const m = await fromPretrained(TINY, {
    id2label: ["a", "b", "c", "d", "e"],
    ignoreMismatchedSizes: true,
    onWarning: (w) => warnings.push(w),
  });
  assert.deepEqual(m.loadReport?.missingInitialised, [
    "classifier.out_proj.weight",
    "classifier.out_proj.bias",
  ]);
  assert.deepEqual(m.config.id2label, { 0: "a", 1: "b", 2: "c", 3: "d", 4: "e" });
  assert.equal(warnings.length, 1);
  m.dispose();
});

test("an untied masked-LM decoder loads from lm_head.decoder.weight", async () => {
  const dir = path.join(tmp, "untied");
  mkdirSync(dir);
  for (const f of readdirSync(ODD)) copyFileSync(path.join(ODD, f), path.join(dir, f));
  const config = JSON.parse(readFileSync(path.join(ODD, "config.json"), "utf8"));
  writeFileSync(
    path.join(dir, "config.json"),
    JSON.stringify({ ...config, tie_word_embeddings: false }),
  );
  const tied = await fromPretrained(ODD);
  const untied = await fromPretrained(dir);
  assert.equal(tied.lmHeadModule?.decoder, null);
  assert.ok(untied.namedLinears().has("lm_head.decoder"));
  const a = tied.maskedLmLogits(feed);
  const b = untied.maskedLmLogits(feed);
  assert.ok(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! < 1e-5);
  tf.dispose([a, b]);
  tied.dispose();
  untied.dispose();
});

test("a directory with only pickled .bin weights says safetensors are needed and how to convert", async () => {
  const dir = path.join(tmp, "bin-only");
  mkdirSync(dir);
  copyFileSync(path.join(TINY, "config.json"), path.join(dir, "config.json"));
  writeFileSync(path.join(dir, "pytorch_model.bin"), "not really");
  await loadFails(
    dir,
    WeightsError,
    /has no safetensors weights \(neither model\.safetensors nor model\.safetensors\.index\.json; it has pytorch_model\.bin\)/,
    /python -c "from transformers import EsmForMaskedLM as M; M\.from_pretrained\('.*bin-only'\)\.save_pretrained\('bin-only-safetensors'\)"/,
  );
  await assert.rejects(fromPretrained(path.join(tmp, "nowhere", "x")), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    assert.match(
      e.message,
      /nowhere\/x is neither an existing directory nor a Hub model id such as "facebook\/esm2_t6_8M_UR50D"/,
    );
    return true;
  });
});

test("sharded checkpoints are checked against their index", async () => {
  const dir = path.join(tmp, "bad-index");
  mkdirSync(dir);
  for (const f of readdirSync(ODD)) copyFileSync(path.join(ODD, f), path.join(dir, f));
  const indexFile = path.join(dir, "model.safetensors.index.json");
  const index = JSON.parse(readFileSync(indexFile, "utf8"));
  index.weight_map["esm.ghost.weight"] = "model-00001-of-00002.safetensors";
  writeFileSync(indexFile, JSON.stringify(index));
  await loadFails(
    dir,
    WeightsError,
    /says "esm\.ghost\.weight" is in model-00001-of-00002\.safetensors, but no shard holds it/,
  );
  rmSync(path.join(dir, "model-00002-of-00002.safetensors"));
  await loadFails(
    dir,
    WeightsError,
    /lists shard model-00002-of-00002\.safetensors, which is not in/,
  );
});
