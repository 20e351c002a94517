import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { connect, type Socket } from "node:net";
import { test } from "node:test";
import { resolveServerConfig } from "../../src/serve/config";
import type { Prediction } from "../../src/serve/prediction";
import { createServer, type EsmKitServer, type ServerOptions } from "../../src/serve/server";
import { FakePredictor, fakeProbabilities } from "./fake-predictor";
import { invoke, type Reply, request } from "./http-client";

const SEQS = [
  "MKTAYIAKQRQISFVKSHFSRQ",
  "ACDEFGHIKLMNPQRSTVWY",
  "LLLLVVVAAA",
  "DEKRDEKRHH",
  "MSTNPKPQRK",
];

async function start(
  options: Partial<ServerOptions> = {},
  predictor = new FakePredictor(),
): Promise<{ base: string; server: EsmKitServer; predictor: FakePredictor; logs: string[] }> {
  const logs: string[] = [];
  const server = createServer({ predictor, log: (l) => logs.push(l), env: {}, ...options });
  const { port } = await server.listen(0, "127.0.0.1");
  return { base: `http://127.0.0.1:${port}`, server, predictor, logs };
}

function expected(seq: string, labels = ["0", "1"]) {
  const p = fakeProbabilities(seq, labels.length);
  const best = p.indexOf(Math.max(...p));
  return {
    label: labels[best]!,
    score: p[best]!,
    probabilities: Object.fromEntries(labels.map((l, i) => [l, p[i]!])),
  };
}

/** A JSON error answer with this status, whose message matches. */
function assertError(r: Reply, status: number, type: string, message?: RegExp) {
  assert.equal(r.status, status, r.text);
  assert.match(String(r.headers["content-type"]), /^application\/json/);
  const body = r.json as { error: { type: string; message: string; status: number } };
  assert.equal(body.error.status, status);
  assert.equal(body.error.type, type);
  if (message) assert.match(body.error.message, message);
  assert.ok(r.headers["x-request-id"], "every answer has a request id");
}

test("GET /ping, GET /execution-parameters, request ids, one log line per request", async (t) => {
  const { base, server, logs } = await start({ maxPayloadBytes: 5 * 1024 * 1024 });
  t.after(() => server.close(100));
  const ping = await request(base, "/ping");
  assert.equal(ping.status, 200);
  assert.deepEqual(ping.json, { status: "ok" });
  assert.match(String(ping.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
  const mine = await request(base, "/ping", { headers: { "X-Request-Id": "abc-123" } });
  assert.equal(mine.headers["x-request-id"], "abc-123");
  const params = await request(base, "/execution-parameters");
  assert.deepEqual(params.json, {
    MaxConcurrentTransforms: 2,
    BatchStrategy: "MULTI_RECORD",
    MaxPayloadInMB: 5,
  });
  assert.equal(logs.length, 3);
  assert.match(logs[0]!, /^\S+Z GET \/ping 200 \d+\.\dms [0-9a-f-]{36}$/);
  assert.match(logs[1]!, / abc-123$/);
});

test("POST /invocations: a string, a list, FASTA, a bare sequence; HF-style answers with all probabilities", async (t) => {
  const { base, server } = await start(
    {},
    new FakePredictor({ labels: ["non-membrane", "membrane"] }),
  );
  t.after(() => server.close(100));
  const labels = ["non-membrane", "membrane"];

  const one = await invoke(base, { inputs: SEQS[0] });
  assert.equal(one.status, 200, one.text);
  assert.match(String(one.headers["content-type"]), /^application\/json/);
  const [p] = one.json as Prediction[];
  assert.deepEqual(Object.keys(p!), ["label", "score", "probabilities", "truncated"]);
  assert.equal((one.json as Prediction[]).length, 1, "a single string answers a list of one");
  const want = expected(SEQS[0]!, labels);
  assert.equal(p!.label, want.label);
  assert.ok(Math.abs(p!.score - want.score) < 1e-12);
  assert.deepEqual(Object.keys(p!.probabilities), labels);
  assert.ok(Math.abs(p!.probabilities.membrane! + p!.probabilities["non-membrane"]! - 1) < 1e-9);
  assert.equal(p!.truncated, false);

  const many = await invoke(base, { inputs: SEQS, parameters: { top_k: 2 } });
  assert.equal(many.status, 200, many.text);
  const preds = many.json as Prediction[];
  assert.equal(preds.length, SEQS.length);
  assert.deepEqual(
    preds.map((q) => q.label),
    SEQS.map((s) => expected(s, labels).label),
  );

  const fasta = await invoke(
    base,
    `>a first\r\n${SEQS[1]!.toLowerCase()}*\r\n\r\n>b\n${SEQS[2]!.slice(0, 4)}\n${SEQS[2]!.slice(4)}\n`,
    "text/x-fasta",
  );
  assert.equal(fasta.status, 200, fasta.text);
  const fp = fasta.json as Prediction[];
  assert.deepEqual(
    fp.map((q) => q.id),
    ["a", "b"],
  );
  assert.deepEqual(Object.keys(fp[0]!), ["id", "label", "score", "probabilities", "truncated"]);
  assert.deepEqual(fp[1]!.probabilities, expected(SEQS[2]!, labels).probabilities);

  const bare = await invoke(
    base,
    `  ${SEQS[3]!.slice(0, 5)}\n${SEQS[3]!.slice(5)}\n`,
    "text/plain; charset=utf-8",
  );
  assert.equal(bare.status, 200, bare.text);
  assert.deepEqual(
    (bare.json as Prediction[])[0]!.probabilities,
    expected(SEQS[3]!, labels).probabilities,
  );
  const noType = await request(base, "/invocations", {
    method: "POST",
    body: JSON.stringify({ inputs: "MKT" }),
  });
  assert.equal(noType.status, 200, "no Content-Type is read as JSON");
});

test("sequences longer than the model's limit are truncated and flagged (or 422 with --too-long reject)", async (t) => {
  const predictor = new FakePredictor({ maxLength: 12 }); // 10 residues
  const { base, server } = await start({}, predictor);
  t.after(() => server.close(100));
  const long = "MKTAYIAKQRQISFVKSHF";
  const r = await invoke(base, { inputs: [long, "MKT"] });
  const [a, b] = r.json as Prediction[];
  assert.equal(a!.truncated, true);
  assert.equal(b!.truncated, false);
  assert.deepEqual(a!.probabilities, expected(long.slice(0, 10)).probabilities);
  assert.deepEqual(predictor.calls.flat(), [long.slice(0, 10), "MKT"]);

  const strict = await start({ tooLong: "reject" }, new FakePredictor({ maxLength: 12 }));
  t.after(() => strict.server.close(100));
  assertError(
    await invoke(strict.base, { inputs: ["MKT", long] }),
    422,
    "invalid_sequence",
    /inputs\[1\]: sequence of 19 residues is longer than the model's limit of 10 residues/,
  );
});

test("concurrent requests are micro-batched, and batched answers equal one-by-one answers", async (t) => {
  const { base, server, predictor } = await start({ maxBatchSize: 16, maxWaitMs: 1000 });
  t.after(() => server.close(100));
  const seqs = Array.from(
    { length: 16 },
    (_, i) => `${SEQS[i % SEQS.length]}${"ACDEFGHIK".slice(0, i % 9)}`,
  );
  const together = await Promise.all(seqs.map((s) => invoke(base, { inputs: s })));
  const callsTogether = predictor.calls.length;
  assert.ok(callsTogether <= 2, `16 concurrent requests took ${callsTogether} predictor calls`);
  assert.equal(server.stats.items, 16);

  const alone = await start({ maxBatchSize: 1, maxWaitMs: 0 });
  t.after(() => alone.server.close(100));
  for (let i = 0; i < seqs.length; i++) {
    const single = ((await invoke(alone.base, { inputs: seqs[i] })).json as Prediction[])[0]!;
    const batched = (together[i]!.json as Prediction[])[0]!;
    assert.equal(batched.label, single.label);
    for (const k of Object.keys(single.probabilities)) {
      assert.ok(Math.abs(batched.probabilities[k]! - single.probabilities[k]!) < 1e-5);
    }
  }
  assert.equal(alone.predictor.calls.length, 16);
  assert.ok(alone.predictor.calls.every((c) => c.length === 1));
});

test("JSON Lines (Batch Transform): one answer line per input line, in order", async (t) => {
  const { base, server } = await start({ maxBatchSize: 3, maxWaitMs: 5 });
  t.after(() => server.close(100));
  const body = `${JSON.stringify({ inputs: SEQS[0] })}\n\n${JSON.stringify({ inputs: [SEQS[1], SEQS[2]] })}\r\n${JSON.stringify({ inputs: SEQS[3] })}\n`;
  for (const type of ["application/jsonlines", "application/x-jsonlines"]) {
    const r = await invoke(base, body, type);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers["content-type"], type);
    const lines = r.text
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Prediction[]);
    assert.deepEqual(
      lines.map((l) => l.length),
      [1, 2, 1],
    );
    assert.deepEqual(lines[1]![1]!.probabilities, expected(SEQS[2]!).probabilities);
    assert.deepEqual(lines[2]![0]!.probabilities, expected(SEQS[3]!).probabilities);
  }
  assertError(
    await invoke(base, `{"inputs":"MKT"}\n{"inputs": 5}\n`, "application/jsonlines"),
    400,
    "malformed_request",
    /^line 2: "inputs" must be a string or an array of strings, got number/,
  );
  assertError(
    await invoke(base, `{"inputs":"MKT"}\n{"inputs": "MK9"}\n`, "application/jsonlines"),
    422,
    "invalid_sequence",
    /^line 2: inputs: invalid character "9" at position 3/,
  );

  // SAGEMAKER_BATCH=true: application/json split by line (MULTI_RECORD) is JSON Lines too.
  const batch = await start({ env: { SAGEMAKER_BATCH: "true" } });
  t.after(() => batch.server.close(100));
  assert.equal(batch.server.config.maxSequencesPerRequest, 100_000);
  const r = await invoke(batch.base, body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text.trimEnd().split("\n").length, 3);
  assertError(await invoke(base, body), 400, "malformed_request", /malformed JSON/);
});

test("errors: 400 malformed JSON and wrong shapes, 404, 405, 415, 422 with character and position", async (t) => {
  const { base, server } = await start();
  t.after(() => server.close(100));
  assertError(await invoke(base, '{"inputs": "MKT"'), 400, "malformed_request", /malformed JSON/);
  assertError(await invoke(base, ""), 400, "malformed_request", /malformed JSON/);
  assertError(
    await invoke(base, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])),
    400,
    "malformed_request",
    /not valid UTF-8/,
  );
  const shapes: [unknown, RegExp][] = [
    [{ inputs: 5 }, /"inputs" must be a string or an array of strings, got number/],
    [{ inputs: null }, /got null/],
    [{ sequence: "MKT" }, /missing "inputs"/],
    [["MKT"], /must be a JSON object, got an array/],
    ["MKT", /must be a JSON object, got string/],
    [{ inputs: ["MKT", ["MKT"]] }, /inputs\[1\] must be a string, got an array/],
    [{ inputs: ["MKT", 7] }, /inputs\[1\] must be a string, got number/],
    [{ inputs: "MKT", parameters: 3 }, /"parameters" must be an object/],
  ];
  for (const [body, message] of shapes) {
    assertError(await invoke(base, JSON.stringify(body)), 400, "malformed_request", message);
  }
  assertError(
    await request(base, "/nope"),
    404,
    "not_found",
    /No route \/nope; the routes are GET \/ping/,
  );
  const r405 = await request(base, "/invocations");
  assertError(r405, 405, "method_not_allowed", /GET is not allowed on \/invocations; use POST/);
  assert.equal(r405.headers.allow, "POST");
  assertError(await request(base, "/ping", { method: "DELETE" }), 405, "method_not_allowed");
  assertError(
    await invoke(base, "inputs=MKT", "application/x-www-form-urlencoded"),
    415,
    "unsupported_media_type",
    /Unsupported Content-Type "application\/x-www-form-urlencoded"; send one of: application\/json/,
  );
  assertError(
    await invoke(base, '{"inputs":"MKT"}', "application/json; charset=latin1"),
    415,
    "unsupported_media_type",
    /charset "latin1"/,
  );
  assertError(
    await invoke(base, { inputs: ["MKT", "MKTXBZ-QJ"] }),
    422,
    "invalid_sequence",
    /^inputs\[1\]: invalid character "J" at position 9; valid residues: LAGVSERTIDPKQNFYMHWCXBUZO.-/,
  );
  assertError(
    await invoke(base, { inputs: "" }),
    422,
    "invalid_sequence",
    /^inputs: empty sequence/,
  );
  assertError(await invoke(base, { inputs: [] }), 422, "invalid_sequence", /empty array/);
  assertError(
    await invoke(base, JSON.stringify({ inputs: "MKT" }), "text/plain;charset=UTF-8"),
    415,
    "unsupported_media_type",
    /looks like JSON but was sent as text/,
  );
  assertError(await invoke(base, "", "text/plain"), 422, "invalid_sequence", /empty sequence/);
  assertError(
    await invoke(base, ">a\nMKT\n>b\n", "text/x-fasta"),
    422,
    "invalid_fasta",
    /line 3: record "b" has no sequence/,
  );
  assertError(
    await invoke(base, ">a\nMKT\n>b\nMK\nTX1\n", "application/x-fasta"),
    422,
    "invalid_sequence",
    /line 5, column 3 \(record "b"\): invalid character "1" at position 5/,
  );
  // The server is still serving.
  assert.equal((await invoke(base, { inputs: "MKT" })).status, 200);
});

test("limits: too many sequences 413 with the limit; payload 413 from the option and from SAGEMAKER_MAX_PAYLOAD_IN_MB", async (t) => {
  const { base, server } = await start({ maxSequencesPerRequest: 4, maxPayloadBytes: 1000 });
  t.after(() => server.close(100));
  assertError(
    await invoke(base, { inputs: Array(5).fill("MKT") }),
    413,
    "too_many_sequences",
    /Too many sequences in one request: 5; the limit is 4 per request/,
  );
  const fasta = Array.from({ length: 5 }, (_, i) => `>s${i}\nMKT\n`).join("");
  assertError(await invoke(base, fasta, "text/plain"), 413, "too_many_sequences", /the limit is 4/);
  assertError(
    await invoke(
      base,
      Array(3).fill('{"inputs":["MKT","MKT"]}').join("\n"),
      "application/jsonlines",
    ),
    413,
    "too_many_sequences",
    /: 6; the limit is 4/,
  );
  const big = JSON.stringify({ inputs: "M".repeat(2000) });
  const r = await invoke(base, big);
  assertError(r, 413, "payload_too_large", /over the limit of 1000 bytes/);
  assert.ok(r.text.length < 600, "the payload is not echoed");
  // Chunked upload without Content-Length: cut off while streaming.
  const chunked = await new Promise<Reply>((resolve, reject) => {
    const req = httpRequest(`${base}/invocations`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
    });
    req.on("response", (res) => {
      let text = "";
      res.on("data", (c) => {
        text += c;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode!, headers: res.headers, text, json: JSON.parse(text) }),
      );
    });
    req.on("error", reject);
    req.write('{"inputs": "');
    req.write("M".repeat(1500));
    req.end('"}');
  });
  assertError(chunked, 413, "payload_too_large", /more than 1000 bytes/);
  assert.equal((await invoke(base, { inputs: "MKT" })).status, 200, "still serving");

  const env = await start({ env: { SAGEMAKER_MAX_PAYLOAD_IN_MB: "1" } });
  t.after(() => env.server.close(100));
  assert.equal(env.server.config.maxPayloadBytes, 1024 * 1024);
  assert.deepEqual((await request(env.base, "/execution-parameters")).json, {
    MaxConcurrentTransforms: 2,
    BatchStrategy: "MULTI_RECORD",
    MaxPayloadInMB: 1,
  });
  const justOver = JSON.stringify({ inputs: "M".repeat(1024 * 1024) });
  assertError(await invoke(env.base, justOver), 413, "payload_too_large", /1048576 bytes \(1 MB\)/);
  const under = JSON.stringify({ inputs: Array(2).fill("M".repeat(200_000)) });
  assert.equal((await invoke(env.base, under)).status, 200);
  assert.throws(
    () => resolveServerConfig({}, { SAGEMAKER_MAX_PAYLOAD_IN_MB: "lots" }),
    /SAGEMAKER_MAX_PAYLOAD_IN_MB="lots" is not valid; expected a number from 0 to 100/,
  );
  assert.throws(
    () => resolveServerConfig({ maxQueue: 10, maxSequencesPerRequest: 20 }, {}),
    /maxQueue \(10\) must be at least maxSequencesPerRequest \(20\)/,
  );
});

test("a full queue answers 503 with Retry-After; a slow prediction answers 504; both keep serving", async (t) => {
  const predictor = new FakePredictor();
  const { base, server } = await start(
    { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 2, maxSequencesPerRequest: 2, timeoutMs: 2000 },
    predictor,
  );
  t.after(() => server.close(100));
  predictor.hold();
  const first = invoke(base, { inputs: "MKT" }); // runs (held)
  const second = invoke(base, { inputs: ["MKT", "AAA"] }); // fills the queue
  const until = Date.now() + 5000;
  while (predictor.calls.length < 1 || server.queued < 2) {
    if (Date.now() > until) throw new Error("the first two requests never got queued");
    await new Promise((r) => setTimeout(r, 5));
  }
  const refused = await invoke(base, { inputs: "LLL" });
  assertError(refused, 503, "queue_full", /queue is full \(2 of 2 sequences waiting/);
  assert.match(String(refused.headers["retry-after"]), /^[1-9]\d*$/);
  predictor.release();
  assert.equal((await first).status, 200);
  assert.equal((await second).status, 200);

  const slow = await start({ timeoutMs: 100 });
  t.after(() => slow.server.close(1000));
  slow.predictor.hold();
  assertError(
    await invoke(slow.base, { inputs: "MKT" }),
    504,
    "timeout",
    /did not finish within 100 ms/,
  );
  assert.equal(slow.server.stats.timedOut, 1);
  slow.predictor.release();
  assert.equal((await invoke(slow.base, { inputs: "MKT" })).status, 200);
});

test("a failing predictor answers 500 JSON without internals; malformed HTTP gets a JSON 400", async (t) => {
  const predictor = new FakePredictor();
  const { base, server, logs } = await start({}, predictor);
  t.after(() => server.close(100));
  predictor.failWith = new Error("tensor shape mismatch");
  const r = await invoke(base, { inputs: "MKT" });
  assertError(r, 500, "prediction_failed", /The prediction failed/);
  assert.ok(logs.some((l) => l.includes(" error ") && l.includes("tensor shape mismatch")));
  predictor.failWith = undefined;

  const raw = await new Promise<string>((resolve, reject) => {
    const url = new URL(base);
    const socket: Socket = connect(Number(url.port), url.hostname, () =>
      socket.write("BREW /ping HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    let text = "";
    socket.on("data", (c) => {
      text += c;
    });
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
  assert.match(raw, /^HTTP\/1\.1 400 Bad Request\r\n/);
  const json = JSON.parse(raw.slice(raw.indexOf("\r\n\r\n") + 4));
  assert.equal(json.error.status, 400);
  assert.equal(json.error.type, "malformed_request");
  assert.equal((await request(base, "/ping")).status, 200);
});

/** Send raw bytes on a new connection; collect what comes back until the server closes it. */
function rawExchange(base: string, bytes: string, waitMs: number) {
  const url = new URL(base);
  return new Promise<{ text: string; closed: boolean }>((resolve, reject) => {
    const socket: Socket = connect(Number(url.port), url.hostname, () => socket.write(bytes));
    let text = "";
    socket.on("data", (c) => {
      text += c;
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closed: false });
    }, waitMs);
    socket.on("end", () => {
      clearTimeout(timer);
      socket.end();
      resolve({ text, closed: true });
    });
    socket.on("error", reject);
  });
}

test("a 413 for an oversized Content-Length closes the connection instead of waiting for the body", async (t) => {
  const { base, server, logs } = await start({ maxPayloadBytes: 1000 });
  t.after(() => server.close(100));
  // The body never comes; the next request is sent on the same connection.
  const r = await rawExchange(
    base,
    "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
      "Content-Length: 100000000\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    5000,
  );
  assert.match(r.text, /^HTTP\/1\.1 413 Payload Too Large\r\n/);
  assert.match(r.text, /\r\nConnection: close\r\n/i);
  assert.ok(r.closed, `the server closed the connection (got: ${JSON.stringify(r.text)})`);
  assert.equal((r.text.match(/HTTP\/1\.1 /g) ?? []).length, 1, "nothing else on that connection");
  assert.equal((await request(base, "/ping")).status, 200, "still serving");
  assert.ok(logs.some((l) => / POST \/invocations 413 /.test(l)));

  // A client that does send its too-large body still reads the 413, not a reset.
  for (const size of [5000, 4 * 1024 * 1024]) {
    const big = JSON.stringify({ inputs: "M".repeat(size) });
    const reply = await invoke(base, big);
    assertError(reply, 413, "payload_too_large", /over the limit of 1000 bytes/);
    assert.equal(reply.headers.connection, "close");
  }

  // Errors on requests read to the end keep the connection open.
  const kept = await rawExchange(
    base,
    "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    1000,
  );
  assert.match(kept.text, /^HTTP\/1\.1 404 /);
  assert.match(
    kept.text,
    /HTTP\/1\.1 200 OK[\s\S]*"status":"ok"/,
    "the second request is answered",
  );
  assert.doesNotMatch(kept.text, /Connection: close/i);
});

/** A raw connection that has sent all of a request but the blank line ending its headers. */
function halfSentRequest(base: string, head: string) {
  const url = new URL(base);
  const socket = connect(Number(url.port), url.hostname);
  socket.write(head);
  let text = "";
  socket.on("data", (c) => {
    text += c;
  });
  const ended = new Promise<string>((resolve, reject) => {
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
  });
  return { finish: () => socket.write("\r\n"), ended };
}

test("close(): /ping answers 503 while draining, in-flight requests finish, the port stops accepting", async () => {
  const predictor = new FakePredictor({ delayMs: 300 });
  const { base, server } = await start({}, predictor);
  const ping = halfSentRequest(base, "GET /ping HTTP/1.1\r\nHost: x\r\n");
  const inflight = invoke(base, { inputs: "MKT" });
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  const closed = server.close(5000);
  assert.equal(server.draining, true);
  ping.finish();
  const raw = await ping.ended;
  assert.match(raw, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(raw, /\r\nConnection: close\r\n/i);
  assert.match(raw, /"type":"shutting_down"/);
  await assert.rejects(request(base, "/ping"), /ECONNREFUSED/);
  const done = await inflight;
  assert.equal(done.status, 200, "the in-flight request finished");
  await closed;
  assert.ok(Date.now() - t0 < 2000, "closed as soon as the work was done");
});
