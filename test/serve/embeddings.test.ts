/**
 * The serve container's embeddings mode on the real tiny model: the numbers match
 * EsmModel (test/fixtures/embed/tiny.json), in JSON, JSON Lines (with ids) and FASTA
 * answered as one JSON line per protein; chosen by options or the environment, and
 * refused clearly when misconfigured.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { selectBackend } from "../../src/backend";
import { serveCommand } from "../../src/cli/serve-command";
import { ConfigError } from "../../src/errors";
import { type EsmPredictor, loadEsmPredictor } from "../../src/serve/model-predictor";
import { createServer, type EsmKitServer } from "../../src/serve/server";
import { loadWorkerPredictor } from "../../src/serve/worker-predictor";
import { FIXTURES, maxAbsDiff, readReference } from "../embed/helpers";
import { invoke, request } from "./http-client";

const MODEL = path.join(FIXTURES, "model", "tiny");
const ref = readReference("tiny");
const LAST = String(ref.num_layers);
const SEQS = ref.sequences.map(([, s]) => s);

let predictor: EsmPredictor;
const servers: EsmKitServer[] = [];

async function start(
  options: Partial<Parameters<typeof createServer>[0]> = {},
): Promise<{ base: string; server: EsmKitServer }> {
  const server = createServer({ predictor, log: false, env: {}, maxWaitMs: 20, ...options });
  servers.push(server);
  const { port } = await server.listen(0, "127.0.0.1");
  return { base: `http://127.0.0.1:${port}`, server };
}

before(async () => {
  await selectBackend({ backend: "wasm" });
  predictor = await loadEsmPredictor(MODEL, {
    maxLength: ref.max_length,
    threads: 1,
    onWarning: () => undefined,
  });
});

after(async () => {
  for (const s of servers) await s.close();
  predictor.dispose();
});

type Answer = { id?: string; embedding: number[]; length: number; truncated: boolean };

function worst(answers: Answer[], want: number[][]): number {
  return Math.max(...answers.map((a, i) => maxAbsDiff(a.embedding, want[i]!, `#${i}`)));
}

test("JSON in, embeddings out: EsmModel's numbers, lengths and truncation", async () => {
  const { base } = await start({ embeddings: { embed: true } });
  const r = await invoke(base, { inputs: SEQS.map((s) => s.toLowerCase()) });
  assert.equal(r.status, 200, r.text);
  const answers = r.json as Answer[];
  assert.equal(answers.length, SEQS.length);
  assert.ok(worst(answers, ref.mean[LAST]!) < 1e-4);
  assert.deepEqual(
    answers.map((a) => a.length),
    ref.lengths,
  );
  assert.deepEqual(
    answers.map((a) => a.truncated),
    ref.lengths.map((n) => n > ref.max_length - 2),
  );
  assert.ok(answers.every((a) => a.id === undefined && a.embedding.length === ref.hidden_size));
  // A classification request shape gets no probabilities here.
  assert.equal((answers[0] as unknown as { label?: string }).label, undefined);
});

test("the onnx predictor embeds on its own engine (no TensorFlow.js copy of the weights); with int8 the embeddings stay float32", async () => {
  const tf = await import("@tensorflow/tfjs-core");
  for (const quantize of ["none", "int8"] as const) {
    const p = await loadEsmPredictor(MODEL, {
      maxLength: ref.max_length,
      threads: 1,
      engine: "onnx",
      quantize,
      onWarning: () => undefined,
    });
    assert.equal(p.model, undefined, "the onnx predictor of a full checkpoint has no tfjs model");
    const tensors = tf.memory().numTensors;
    const got = await p.embed(SEQS, { pooling: "mean", layer: ref.num_layers });
    assert.equal(
      tf.memory().numTensors,
      tensors,
      `${quantize}: no tfjs tensors made for embeddings`,
    );
    const d = Math.max(
      ...got.map((e, i) => maxAbsDiff(e, ref.mean[LAST]![i]!, `${quantize} #${i}`)),
    );
    assert.ok(d < 1e-4, `${quantize}: embeddings ${d} from EsmModel's`);
    p.dispose();
  }
});

test("FASTA with Accept: application/jsonlines -> one line per protein; JSON Lines carry ids", async () => {
  const { base } = await start({ embeddings: { embed: true } });
  const fasta = ref.sequences.map(([id, s]) => `>${id} x\n${s}\n`).join("");
  const r = await request(base, "/invocations", {
    method: "POST",
    headers: { "content-type": "text/x-fasta", accept: "application/jsonlines" },
    body: fasta,
  });
  assert.equal(r.status, 200, r.text);
  assert.match(String(r.headers["content-type"]), /application\/jsonlines/);
  const lines = r.text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Answer);
  assert.deepEqual(
    lines.map((l) => l.id),
    ref.ids,
  );
  assert.ok(worst(lines, ref.mean[LAST]!) < 1e-4);

  const body = ref.sequences
    .slice(0, 3)
    .map(([id, s]) => JSON.stringify({ inputs: s, id }))
    .join("\n");
  const jl = await request(base, "/invocations", {
    method: "POST",
    headers: { "content-type": "application/jsonlines" },
    body,
  });
  assert.equal(jl.status, 200, jl.text);
  const perLine = jl.text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Answer[]);
  assert.deepEqual(
    perLine.map((a) => a.map((x) => x.id)),
    [[ref.ids[0]], [ref.ids[1]], [ref.ids[2]]],
  );
  const bad = await invoke(base, { inputs: ["MKT"], id: "x" });
  assert.equal(bad.status, 400);
  assert.match(
    (bad.json as { error: { message: string } }).error.message,
    /"id" must be a string, next to a single "inputs" string/,
  );
});

test("the environment chooses the mode, pooling and layer; bad values are refused", async () => {
  const env = { ESMKIT_SERVE_MODE: "embed", ESMKIT_EMBED_POOLING: "cls", ESMKIT_EMBED_LAYER: "1" };
  const { base } = await start({ env });
  const r = await invoke(base, { inputs: SEQS });
  assert.equal(r.status, 200, r.text);
  assert.ok(worst(r.json as Answer[], ref.cls["1"]!) < 1e-4);
  const last = await start({ env: { ESMKIT_SERVE_MODE: "embed", ESMKIT_EMBED_LAYER: "-1" } });
  const r2 = await invoke(last.base, { inputs: SEQS });
  assert.ok(worst(r2.json as Answer[], ref.mean[LAST]!) < 1e-4);

  const refused = (env: Record<string, string>, re: RegExp) =>
    assert.throws(
      () => createServer({ predictor, log: false, env }),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
    );
  refused(
    { ESMKIT_SERVE_MODE: "embed", ESMKIT_EMBED_LAYER: "3" },
    /ESMKIT_EMBED_LAYER="3" is out of range: the model has 2 layers, so hidden states 0\.\.2/,
  );
  refused({ ESMKIT_SERVE_MODE: "embed", ESMKIT_EMBED_POOLING: "max" }, /expected mean or cls/);
  refused({ ESMKIT_SERVE_MODE: "embeddings" }, /ESMKIT_SERVE_MODE="embeddings" is not valid/);
  // Predict mode stays the default.
  const plain = await start();
  const p = await invoke(plain.base, { inputs: "MKTAYIAK" });
  assert.equal(typeof (p.json as { label: string }[])[0]!.label, "string");
});

test("worker threads embed too; serve refuses --pooling without --embed", async () => {
  const workers = await loadWorkerPredictor(MODEL, { workers: 1, maxLength: ref.max_length });
  try {
    assert.equal(workers.numLayers, ref.num_layers);
    const vectors = await workers.embed(SEQS, { pooling: "mean", layer: 1 });
    assert.ok(
      Math.max(...vectors.map((v, i) => maxAbsDiff(v, ref.mean["1"]![i]!, `#${i}`))) < 1e-4,
    );
  } finally {
    await workers.dispose();
  }
  await assert.rejects(
    serveCommand.run(["--model", MODEL, "--port", "0", "--pooling", "cls"]),
    /--pooling and --layer apply to embeddings: add --embed/,
  );
});
