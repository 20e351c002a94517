/**
 * `exportModel` / `esmkit export` against transformers.js in Node: the exported folder
 * loads with `pipeline(...)` from a local path and gives esmkit's probabilities and
 * hidden states (and transformers' own, from the Python fixtures) within 1e-4, for a
 * merged model, a PEFT adapter, long sequences that transformers.js truncates
 * differently, and weights in an external data file; bad input fails clearly and leaves
 * nothing behind.
 */
import assert from "node:assert/strict";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { main } from "../../src/cli/main";
import { ConfigError, type EsmKitError, StorageError, TokenizerError } from "../../src/errors";
import { exportModel } from "../../src/export/export";
import { buildExportGraph } from "../../src/export/onnx-model";
import { fromPretrained } from "../../src/model/pretrained";
import { writeSafetensors } from "../../src/model/safetensors";
import { stateDict } from "../../src/model/weights";
import { loadEsmPredictor } from "../../src/serve/model-predictor";
import { EsmTokenizer } from "../../src/tokenizer/esm-tokenizer";
import {
  byLabel,
  LORA_FIX,
  MODEL_FIX,
  maxAbsDiff,
  maxProbDiff,
  pipelineProbabilities,
  readJson,
  TOLERANCE,
  transformersJs,
} from "./helpers";

const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-export-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Fixture {
  sequences: string[];
  input_ids: number[][];
  attention_mask: number[][];
}

const PROTEINS = [
  "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
  "MEEPQSDPSVEPPLSQETFSDLWKLLPENNVLSPLPSQAMDDLMLSPDDIEQWFTEDPGP",
  "W",
  "MK<mask>TAYIAKXBUZO",
];

async function esmkitProbabilities(
  model: string,
  sequences: string[],
  base?: string,
): Promise<Record<string, number>[]> {
  const p = await loadEsmPredictor(model, { threads: 1, base, onWarning: () => {} });
  try {
    return (await p.predict(sequences)).map((r) => byLabel(r.labels, r.probabilities));
  } finally {
    p.dispose();
  }
}

function softmaxRows(logits: number[][], labels: string[]): Record<string, number>[] {
  return logits.map((row) => {
    const m = Math.max(...row);
    const e = row.map((x) => Math.exp(x - m));
    const s = e.reduce((a, b) => a + b, 0);
    return byLabel(
      labels,
      e.map((x) => x / s),
    );
  });
}

/** Siblings of `out` left by a failed export (staging folders). */
function leftovers(parent: string): string[] {
  return existsSync(parent) ? readdirSync(parent).filter((f) => f.includes(".partial-")) : [];
}

for (const name of ["tiny", "odd"]) {
  test(`text-classification: transformers.js on the exported ${name} fixture gives esmkit's and transformers' probabilities`, async () => {
    const src = path.join(MODEL_FIX, name);
    const out = path.join(tmp, `cls-${name}`);
    const { manifest } = await exportModel({ model: src, out });
    assert.deepEqual(manifest.dtypes, ["fp32"]);
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"]) {
      assert.ok(existsSync(path.join(out, f)), f);
    }
    const fx = readJson<Fixture>(path.join(src, "inputs.json"));
    const expected = readJson<{ logits: number[][] }>(path.join(src, "expected.json"));
    const got = await pipelineProbabilities(out, fx.sequences);
    const esmkit = await esmkitProbabilities(src, fx.sequences);
    const python = softmaxRows(expected.logits, manifest.labels);
    const dEsmkit = maxProbDiff(got, esmkit);
    const dPython = maxProbDiff(got, python);
    console.log(
      `${name}: transformers.js vs esmkit max |dP| ${dEsmkit.toExponential(2)}, vs transformers (Python) ${dPython.toExponential(2)}`,
    );
    assert.ok(dEsmkit <= TOLERANCE, `vs esmkit ${dEsmkit}`);
    assert.ok(dPython <= TOLERANCE, `vs transformers ${dPython}`);
  });
}

test("feature-extraction: transformers.js hidden states equal esmkit's encoder and transformers'", async () => {
  const src = path.join(MODEL_FIX, "tiny");
  const out = path.join(tmp, "features-tiny");
  const { manifest } = await exportModel({ model: src, out, task: "feature-extraction" });
  assert.equal(manifest.output, "last_hidden_state");
  assert.match(readFileSync(path.join(out, "config.json"), "utf8"), /"EsmModel"/);
  const fx = readJson<Fixture>(path.join(src, "inputs.json"));
  const expected = readJson<{ last_hidden_state: number[][][] }>(path.join(src, "expected.json"));
  const { pipeline } = await transformersJs();
  const extract = await pipeline("feature-extraction", out, { dtype: "fp32" });
  const model = await fromPretrained(src);
  try {
    const H = model.config.hiddenSize;
    const esmkit = tf.tidy(() => {
      const ids = tf.tensor2d(fx.input_ids, undefined, "int32");
      const mask = tf.tensor2d(fx.attention_mask, undefined, "int32");
      return model.encode(ids, mask).arraySync() as number[][][];
    });
    let dEsmkit = 0;
    let dPython = 0;
    for (let b = 0; b < fx.sequences.length; b++) {
      // One sequence at a time: transformers.js pads a batch to its own longest row.
      const t = await extract(fx.sequences[b]!);
      const n = fx.attention_mask[b]!.reduce((a, v) => a + v, 0);
      assert.deepEqual(t.dims, [1, n, H], `row ${b}`);
      const got = Array.from(t.data as Float32Array);
      const rows = (x: number[][]) => x.slice(0, n).flat();
      dEsmkit = Math.max(dEsmkit, maxAbsDiff(got, rows(esmkit[b]!)));
      dPython = Math.max(dPython, maxAbsDiff(got, rows(expected.last_hidden_state[b]!)));
    }
    console.log(
      `hidden states: vs esmkit ${dEsmkit.toExponential(2)}, vs transformers ${dPython.toExponential(2)}`,
    );
    assert.ok(dEsmkit <= TOLERANCE, `vs esmkit ${dEsmkit}`);
    assert.ok(dPython <= TOLERANCE, `vs transformers ${dPython}`);
  } finally {
    model.dispose();
    await extract.dispose();
  }
});

test("a PEFT adapter is merged at export; a base without a tokenizer is refused", async () => {
  const adapter = path.join(LORA_FIX, "adapter-step2");
  const bare = path.join(LORA_FIX, "base"); // config.json + weights, no tokenizer files
  const parent = path.join(tmp, "adapter");
  mkdirSync(parent);
  await assert.rejects(
    exportModel({ model: adapter, base: bare, out: path.join(parent, "out") }),
    (e: unknown) => {
      assert.ok(e instanceof TokenizerError, String(e));
      assert.match(e.message, /No tokenizer \(vocab\.txt\)/);
      assert.ok(e.message.includes(JSON.stringify(bare)), e.message);
      return true;
    },
  );
  assert.deepEqual(readdirSync(parent), [], "nothing written on failure");

  const base = path.join(tmp, "adapter-base");
  cpSync(bare, base, { recursive: true });
  await new EsmTokenizer().save(base);
  const out = path.join(parent, "out");
  await exportModel({ model: adapter, base, out });
  const got = await pipelineProbabilities(out, PROTEINS);
  const esmkit = await esmkitProbabilities(adapter, PROTEINS, base);
  const d = maxProbDiff(got, esmkit);
  console.log(`adapter: transformers.js vs esmkit (adapter merged) max |dP| ${d.toExponential(2)}`);
  assert.ok(d <= TOLERANCE, `adapter ${d}`);
  // The adapter changed the model: the base alone answers differently.
  const baseOnly = await esmkitProbabilities(base, PROTEINS);
  assert.ok(maxProbDiff(got, baseOnly) > 1e-3, "the adapter took part");
});

test("long sequences: transformers.js drops <eos> when it truncates, the graph puts it back", async () => {
  const src = path.join(MODEL_FIX, "odd");
  const out = path.join(tmp, "long");
  const { manifest } = await exportModel({ model: src, out, maxLength: 64 });
  assert.equal(manifest.maxLength, 64);
  const residues = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ";
  const long = [
    residues.repeat(3),
    residues.repeat(2).slice(0, 63),
    residues.repeat(2).slice(0, 62),
  ];
  // What differs: transformers.js cuts after adding <cls>/<eos>; esmkit keeps <eos>.
  const { AutoTokenizer } = await transformersJs();
  const hf = await AutoTokenizer.from_pretrained(out);
  const ours = new EsmTokenizer(undefined, {}, 64);
  for (const s of long) {
    const enc = hf(s, { truncation: true }) as { input_ids: { data: ArrayLike<bigint> } };
    const js = Array.from(enc.input_ids.data, Number);
    const esm = ours.encode(s, { maxLength: 64 });
    if (s.length > 62) {
      assert.equal(js.length, 64);
      assert.notEqual(js.at(-1), ours.eosId, "transformers.js ends on a residue");
      assert.deepEqual(js.slice(0, 63), esm.slice(0, 63));
      assert.equal(esm.at(-1), ours.eosId);
    } else {
      assert.deepEqual(js, esm, "sequences that fit tokenize identically");
    }
  }
  const esmkit = await esmkitProbabilities(src, long); // truncates to maxLength from the dir (1024)
  const p = await loadEsmPredictor(src, { threads: 1, maxLength: 64 });
  const want = (await p.predict(long)).map((r) => byLabel(r.labels, r.probabilities));
  p.dispose();
  const got = await pipelineProbabilities(out, long);
  const d = maxProbDiff(got, want);
  console.log(`truncated at 64 tokens: transformers.js vs esmkit max |dP| ${d.toExponential(2)}`);
  assert.ok(d <= TOLERANCE, `truncated ${d}`);
  assert.ok(maxProbDiff(want, esmkit) > 1e-4, "truncation changed esmkit's answer (a real test)");

  // Control: the same graph without the <eos> repair disagrees with esmkit.
  const model = await fromPretrained(src);
  const plain = buildExportGraph(model, { task: "text-classification" }).build();
  model.dispose();
  const control = path.join(tmp, "long-control");
  cpSync(out, control, { recursive: true });
  await writeFile(path.join(control, "onnx", "model.onnx"), plain);
  const unrepaired = await pipelineProbabilities(control, long);
  assert.ok(maxProbDiff(unrepaired, want) > 1e-4, "without the repair the answers differ");
});

test("weights in an external data file (forced on a small model) load and agree", async () => {
  const src = path.join(MODEL_FIX, "odd");
  const out = path.join(tmp, "external");
  const { manifest } = await exportModel({
    model: src,
    out,
    externalData: "always",
    quantize: "int8",
  });
  assert.equal(manifest.externalData, true);
  for (const f of ["model.onnx", "model_quantized.onnx"]) {
    const graph = statSync(path.join(out, "onnx", f)).size;
    const data = statSync(path.join(out, "onnx", `${f}_data`)).size;
    assert.ok(data > 2 * graph, `${f}: ${graph} bytes of graph, ${data} of data`);
  }
  const config = readJson<Record<string, { use_external_data_format?: unknown }>>(
    path.join(out, "config.json"),
  );
  assert.deepEqual(config["transformers.js_config"]!.use_external_data_format, {
    "model.onnx": 1,
    "model_quantized.onnx": 1,
  });
  const got = await pipelineProbabilities(out, PROTEINS);
  const esmkit = await esmkitProbabilities(src, PROTEINS);
  assert.ok(maxProbDiff(got, esmkit) <= TOLERANCE);
  const q8 = await pipelineProbabilities(out, PROTEINS, { dtype: "q8" });
  assert.ok(maxProbDiff(q8, esmkit) < 0.05, "the int8 file loads from its data file too");
});

test("clear errors: task, quantize, existing folder, web without classification, architecture, no classifier", async () => {
  const src = path.join(MODEL_FIX, "tiny");
  const parent = path.join(tmp, "errors");
  mkdirSync(parent);
  const out = path.join(parent, "out");
  const fails = async (
    options: Parameters<typeof exportModel>[0],
    type: new (...a: never[]) => EsmKitError,
    message: RegExp,
  ) => {
    await assert.rejects(exportModel(options), (e: unknown) => {
      assert.ok(e instanceof type, `${e}`);
      assert.match((e as Error).message, message);
      return true;
    });
    assert.deepEqual(leftovers(parent), [], "no staging folder left");
  };
  await fails(
    { model: src, out, task: "token-classification" as never },
    ConfigError,
    /task must be one of text-classification, feature-extraction; got "token-classification"/,
  );
  await fails({ model: src, out, quantize: "int4" as never }, ConfigError, /quantize.*"int4"/);
  await fails(
    { model: src, out, task: "feature-extraction", web: true },
    ConfigError,
    /needs task "text-classification"/,
  );
  await fails({ model: path.join(parent, "nope"), out }, ConfigError, /is not a directory/);
  assert.equal(existsSync(out), false);

  // An existing folder is kept unless overwrite.
  mkdirSync(out);
  await writeFile(path.join(out, "keep.txt"), "mine");
  await fails({ model: src, out }, StorageError, /already exists.*--overwrite/);
  assert.ok(existsSync(path.join(out, "keep.txt")));
  await exportModel({ model: src, out, overwrite: true });
  assert.equal(existsSync(path.join(out, "keep.txt")), false, "replaced");
  assert.ok(existsSync(path.join(out, "onnx", "model.onnx")));

  // Not ESM-2: a BERT config.
  const bert = path.join(tmp, "bert");
  cpSync(src, bert, { recursive: true });
  const cfg = readJson<Record<string, unknown>>(path.join(bert, "config.json"));
  await writeFile(path.join(bert, "config.json"), JSON.stringify({ ...cfg, model_type: "bert" }));
  await fails({ model: bert, out: path.join(parent, "bert") }, ConfigError, /model_type.*"bert"/);

  // A checkpoint without a classifier (masked-LM only) cannot be a text classifier.
  const mlm = path.join(tmp, "mlm");
  mkdirSync(mlm);
  const model = await fromPretrained(src);
  const entries = [...stateDict(model, { lmHead: true })].filter(
    ([k]) => !k.startsWith("classifier."),
  );
  writeSafetensors(
    path.join(mlm, "model.safetensors"),
    entries.map(([k, e]) => [k, { shape: e.shape, data: e.data }]),
  );
  model.dispose();
  cpSync(path.join(src, "config.json"), path.join(mlm, "config.json"));
  await new EsmTokenizer().save(mlm);
  await fails(
    { model: mlm, out: path.join(parent, "mlm"), onWarning: () => {} },
    ConfigError,
    /has no trained classifier \(classifier\.dense\.weight.*--task feature-extraction/,
  );
  await exportModel({
    model: mlm,
    out: path.join(parent, "mlm"),
    task: "feature-extraction",
    onWarning: () => {},
  });
});

test("esmkit export: exit 2 with the reason on bad usage, 0 with a summary on success", async () => {
  const out = path.join(tmp, "cli");
  const err: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => {
    err.push(String(s));
    return true;
  }) as typeof process.stderr.write;
  try {
    assert.equal(await main(["export", "--model", path.join(MODEL_FIX, "tiny")]), 2);
    assert.match(err.join(""), /--out is required/);
    assert.equal(await main(["export", "--model", "x", "--out", out, "--task", "nope"]), 2);
    assert.match(
      err.join(""),
      /--task .*"nope".*text-classification or feature-extraction|--task .*text-classification or feature-extraction.*"nope"/,
    );
    assert.equal(await main(["export", "--out", out]), 2);
    assert.match(err.join(""), /--model is required \(or --serve alone\)/);
    assert.equal(await main(["export", "--model", "x", "--out", out, "--port", "1"]), 2);
    assert.match(err.join(""), /--port needs --serve/);
    err.length = 0;
    const code = await main([
      "export",
      "--model",
      path.join(MODEL_FIX, "tiny"),
      "--out",
      out,
      "--quantize",
      "int8",
    ]);
    assert.equal(code, 0, err.join(""));
    assert.match(err.join(""), /onnx\/model\.onnx .* MB/);
    assert.ok(existsSync(path.join(out, "onnx", "model_quantized.onnx")));
    // --serve alone serves an existing export that has the page, and says why not.
    assert.equal(await main(["export", "--out", tmp, "--serve"]), 2);
    assert.match(err.join(""), /is not an esmkit export \(no esmkit-export\.json\)/);
    assert.equal(await main(["export", "--out", out, "--serve"]), 2);
    assert.match(err.join(""), /has no web page; export it with --web/);
  } finally {
    process.stderr.write = write;
  }
});
