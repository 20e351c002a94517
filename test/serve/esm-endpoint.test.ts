import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { selectBackend } from "../../src/backend";
import { type EsmPredictor, loadEsmPredictor } from "../../src/serve/model-predictor";
import { createServer, type EsmKitServer } from "../../src/serve/server";
import { loadWorkerPredictor } from "../../src/serve/worker-predictor";
import { REPO_ROOT } from "../helpers/python";
import { invoke, request } from "./http-client";

// The real ESM-2 predictor behind the real server: a tiny random checkpoint made by
// transformers (test/fixtures/model/tiny).
const MODEL = path.join(REPO_ROOT, "test", "fixtures", "model", "tiny");
const SEQS = [
  "MKTAYIAKQRQISFVKSHFSRQ",
  "LLV",
  "MEEPQSDPSVEPPLSQETFSDLWKLLPENNVLSPLPSQAMDDLMLSPDDIEQ",
  "GAVLIPFMW",
];

let predictor: EsmPredictor;
let server: EsmKitServer;
let base = "";

before(async () => {
  await selectBackend({ backend: "wasm" });
  predictor = await loadEsmPredictor(MODEL, { onWarning: () => undefined });
  server = createServer({ predictor, log: false, env: {}, maxWaitMs: 50 });
  const { port } = await server.listen(0, "127.0.0.1");
  base = `http://127.0.0.1:${port}`;
});

after(async () => {
  await server.close();
  predictor.dispose();
});

type Answer = { label: string; score: number; probabilities: Record<string, number> }[];

test("the ESM-2 endpoint answers a batch exactly as one request per sequence (1e-5)", async () => {
  const batch = await invoke(base, { inputs: SEQS });
  assert.equal(batch.status, 200);
  const together = batch.json as Answer;
  assert.equal(together.length, SEQS.length);
  // Concurrent single requests are micro-batched with each other, padded differently.
  const alone = await Promise.all(SEQS.map((s) => invoke(base, { inputs: s })));
  alone.forEach((r, i) => {
    assert.equal(r.status, 200);
    const one = (r.json as Answer)[0]!;
    for (const [label, p] of Object.entries(one.probabilities)) {
      assert.ok(Math.abs(p - together[i]!.probabilities[label]!) < 1e-5, `${SEQS[i]} ${label}`);
    }
    assert.equal(one.label, together[i]!.label);
  });
  // And the same as calling the model directly, one sequence at a time.
  for (const [i, s] of SEQS.entries()) {
    const [direct] = await predictor.predict([s]);
    direct!.probabilities.forEach((p, k) => {
      assert.ok(Math.abs(p - together[i]!.probabilities[predictor.labels[k]!]!) < 1e-5);
    });
  }
});

/** `other` gives the first protein the main predictor's probabilities, within `tol`. */
async function answersLikeMain(other: Pick<typeof predictor, "predict">, tol: number) {
  const [a] = await other.predict(SEQS.slice(0, 1));
  const [d] = await predictor.predict(SEQS.slice(0, 1));
  for (const [k, p] of d!.probabilities.entries())
    assert.ok(
      Math.abs(p - a!.probabilities[k]!) < tol,
      `probability ${k}: ${p} vs ${a!.probabilities[k]}`,
    );
}

test("worker-thread predictor by default: one worker on the onnx engine (one copy of the weights), more on tfjs", async () => {
  const onnx = await loadWorkerPredictor(MODEL, { engine: "onnx" });
  try {
    assert.equal(onnx.concurrency, 1);
    await answersLikeMain(onnx, 1e-6);
  } finally {
    await onnx.dispose();
  }
  const tfjs = await loadWorkerPredictor(MODEL, { engine: "tfjs" });
  try {
    assert.equal(tfjs.concurrency, Math.min(2, availableParallelism()));
  } finally {
    await tfjs.dispose();
  }
  // An explicit count is what the tfjs engine gets, without a notice.
  const warnings: string[] = [];
  const three = await loadWorkerPredictor(MODEL, {
    engine: "tfjs",
    workers: 3,
    onWarning: (m) => warnings.push(m),
  });
  try {
    assert.equal(three.concurrency, 3);
    assert.deepEqual(warnings, []);
    await answersLikeMain(three, 1e-4);
  } finally {
    await three.dispose();
  }
});

test("worker-thread predictor: workers=2 on onnx is one worker (one copy of the weights), same answers as in-process, /ping stays responsive while it works", async () => {
  const warnings: string[] = [];
  const workers = await loadWorkerPredictor(MODEL, {
    workers: 2,
    engine: "onnx",
    onWarning: (m) => warnings.push(m),
  });
  try {
    // onnxruntime-node cannot share weights between threads: one worker, said once.
    assert.equal(workers.concurrency, 1);
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(
      warnings[0]!,
      /^workers=2 on the onnx engine: one worker runs the model and holds the weights once/,
    );
    assert.deepEqual(workers.labels, predictor.labels);
    const [a, b] = await Promise.all([workers.predict(SEQS), workers.predict(SEQS.slice(1))]);
    const direct = await predictor.predict(SEQS);
    for (const [i, d] of direct.entries()) {
      for (const [k, p] of d.probabilities.entries())
        assert.ok(Math.abs(p - a![i]!.probabilities[k]!) < 1e-6);
    }
    assert.equal(b!.length, SEQS.length - 1);
    const srv = createServer({ predictor: workers, log: false, env: {} });
    const { port } = await srv.listen(0, "127.0.0.1");
    const url = `http://127.0.0.1:${port}`;
    const long = Array.from({ length: 16 }, () => "MKTAYIAKQRQISFVKSHFSRQ".repeat(20));
    const busy = invoke(url, { inputs: long });
    const t0 = Date.now();
    const ping = await request(url, "/ping", { method: "GET" });
    const pingMs = Date.now() - t0;
    assert.equal(ping.status, 200);
    assert.ok(pingMs < 2000, `/ping took ${pingMs} ms while the model worked`);
    assert.equal((await busy).status, 200);
    await srv.close();
  } finally {
    await workers.dispose();
  }
});
