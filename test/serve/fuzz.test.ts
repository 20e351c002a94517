/**
 * 2,500 malformed or random requests against a real server: every one must get a 4xx
 * JSON error (with the status repeated in the body), the server must keep serving, and
 * memory must stay bounded. Every generated request is invalid by construction.
 */
import assert from "node:assert/strict";
import { Agent } from "node:http";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createServer } from "../../src/serve/server";
import { SeededRandom } from "../../src/util/random";
import { FakePredictor } from "./fake-predictor";
import { invoke, type RequestOptions, request } from "./http-client";

const REQUESTS = 2500;
const PAYLOAD_LIMIT = 64 * 1024;
const MAX_SEQUENCES = 16;
const VALID = "LAGVSERTIDPKQNFYMHWCXBUZO.-";
const INVALID = [
  ..."J0123456789!#$%&()+,/:;<=>?@[]^_`{|}~\"'\\",
  "\u00e9",
  "\u03b1",
  "\u{1F600}",
  "\u0000",
];

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

type Case = { name: string; path: string } & RequestOptions;

function generator(seed: number) {
  const rng = new SeededRandom(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rng.next() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]!;
  const residues = (n: number) => Array.from({ length: n }, () => pick([...VALID])).join("");
  /** A sequence with at least one character that is not a residue. */
  const badSequence = () => {
    const s = residues(int(0, 40)).split("");
    s.splice(int(0, s.length), 0, pick(INVALID));
    return s.join("");
  };
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(0, 255)));
  const post = (name: string, body: string | Buffer, type = "application/json"): Case => ({
    name,
    path: "/invocations",
    method: "POST",
    headers: { "Content-Type": type },
    body,
  });
  const kinds: (() => Case)[] = [
    () => post("random bytes as JSON", bytes(int(0, 2000))),
    () =>
      post(
        "random bytes as FASTA",
        Buffer.concat([Buffer.from(">x\n"), bytes(int(1, 500)), Buffer.from("!")]),
        "text/plain",
      ),
    () => {
      const whole = JSON.stringify({ inputs: [residues(30), residues(20)] });
      return post("truncated JSON", whole.slice(0, int(0, whole.length - 1)));
    },
    () =>
      post(
        "wrong types",
        JSON.stringify(
          pick([
            { inputs: int(-5, 5) },
            { inputs: null },
            { inputs: {} },
            { inputs: true },
            { inputs: [1, 2] },
            { inputs: [residues(5), [residues(5)]] },
            { inputs: [residues(5), null] },
            { inputs: residues(5), parameters: "top_k" },
            { input: residues(5) },
            [residues(5)],
            residues(5),
            int(0, 1e9),
            null,
          ]),
        ),
      ),
    () => {
      const depth = int(1, 5000);
      const inner = `${"[".repeat(depth)}"${residues(3)}"${"]".repeat(depth)}`;
      return post("nested arrays", rng.next() < 0.5 ? inner : `{"inputs":${inner}}`);
    },
    () =>
      post(
        "too many sequences",
        JSON.stringify({
          inputs: Array.from({ length: int(MAX_SEQUENCES + 1, 3000) }, () => "MKT"),
        }),
      ),
    () =>
      post(
        "over the payload limit",
        JSON.stringify({ inputs: residues(int(PAYLOAD_LIMIT, 3 * PAYLOAD_LIMIT)) }),
      ),
    () =>
      post("invalid sequence", JSON.stringify({ inputs: [residues(int(1, 30)), badSequence()] })),
    () => post("empty sequence", JSON.stringify({ inputs: pick(["", " ", "\n\t", "*", []]) })),
    () =>
      post(
        "bad FASTA",
        pick([">\nMKT\n", ">a\n>b\nMKT\n", `>a\n${badSequence()}\n`, ">a\n*\n"]),
        "text/x-fasta",
      ),
    () => post("bad bare sequence", badSequence(), "text/plain"),
    () =>
      post(
        "bad JSON Lines",
        `${JSON.stringify({ inputs: residues(10) })}\n${pick(["{", "5", '{"inputs": 5}', JSON.stringify({ inputs: badSequence() })])}\n`,
        pick(["application/jsonlines", "application/x-jsonlines"]),
      ),
    () =>
      post(
        "invalid UTF-8",
        Buffer.concat([Buffer.from('{"inputs":"MK'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
      ),
    () =>
      post(
        "random content type",
        JSON.stringify({ inputs: residues(10) }),
        pick([
          "application/xml",
          "text/csv",
          "image/png",
          "multipart/form-data; boundary=x",
          `application/${residues(8).toLowerCase().replace(/[.-]/g, "x")}`,
          "application/json; charset=latin1",
          "text/plain; charset=utf-16",
        ]),
      ),
    () => ({
      name: "random method or path",
      ...pick<Omit<Case, "name">>([
        { path: "/invocations", method: pick(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]) },
        { path: "/ping", method: pick(["POST", "PUT", "DELETE"]), body: bytes(int(0, 100)) },
        { path: "/execution-parameters", method: "POST" },
        {
          path: `/${encodeURIComponent(bytes(int(1, 60)).toString("latin1"))}`,
          method: pick(["GET", "POST", "PUT"]),
        },
        { path: `/invocations/${residues(4)}`, method: "POST" },
        { path: "/", method: "GET" },
      ]),
    }),
    () => ({
      name: "unknown HTTP method",
      path: "/ping",
      method: pick(["BREW", "FOO", "XYZZY", "GETT"]),
    }),
    () => ({
      name: "headers too large",
      path: "/ping",
      method: "GET",
      headers: { "X-Junk": "x".repeat(int(17_000, 30_000)) },
    }),
  ];
  return () => pick(kinds)();
}

test("fuzz: 2,500 malformed requests all get 4xx JSON; the server keeps serving; memory stays bounded", async (t) => {
  const logs: string[] = [];
  const predictor = new FakePredictor();
  const server = createServer({
    predictor,
    env: {},
    log: (l) => logs.push(l),
    maxPayloadBytes: PAYLOAD_LIMIT,
    maxSequencesPerRequest: MAX_SEQUENCES,
  });
  const { port } = await server.listen(0, "127.0.0.1");
  const base = `http://127.0.0.1:${port}`;
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  t.after(async () => {
    agent.destroy();
    await server.close(100);
  });
  const next = generator(20240611);
  const statuses = new Map<number, number>();
  const byName = new Map<string, number>();

  const runOne = async () => {
    const c = next();
    const r = await request(base, c.path, { ...c, agent, timeoutMs: 10_000 }).catch((e: Error) => {
      throw new Error(`${c.name} ${c.method} ${c.path.slice(0, 60)}: no answer (${e.message})`);
    });
    const what = `${c.name} ${c.method} ${c.path.slice(0, 60)} -> ${r.status} ${r.text.slice(0, 200)}`;
    assert.ok(r.status >= 400 && r.status < 500, what);
    assert.match(String(r.headers["content-type"]), /^application\/json/, what);
    const body = r.json as { error?: { status?: number; type?: string; message?: string } };
    assert.equal(body?.error?.status, r.status, what);
    assert.ok(body.error!.type && body.error!.message, what);
    assert.ok(r.text.length <= 1000, `${what}: the answer is short`);
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    byName.set(c.name, (byName.get(c.name) ?? 0) + 1);
  };
  const wave = async (n: number) => {
    for (let done = 0; done < n; done += 16) {
      await Promise.all(Array.from({ length: Math.min(16, n - done) }, runOne));
    }
  };

  await wave(200); // warm up: JIT, buffers, sockets
  gc();
  const before = process.memoryUsage();
  const t0 = Date.now();
  await wave(REQUESTS);
  const seconds = (Date.now() - t0) / 1000;
  gc();
  const after = process.memoryUsage();

  const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
  const line =
    `fuzz: ${REQUESTS} requests in ${seconds.toFixed(1)} s; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; ` +
    `rss ${mb(before.rss)} -> ${mb(after.rss)} MB, heapUsed ${mb(before.heapUsed)} -> ${mb(after.heapUsed)} MB, ` +
    `external ${mb(before.external)} -> ${mb(after.external)} MB`;
  t.diagnostic(line);
  process.stderr.write(`${line}\n`);
  assert.equal(byName.size, 17, "every kind of bad request was sent");
  assert.ok(after.heapUsed - before.heapUsed < 32 * 1024 * 1024, "heap growth < 32 MB");
  assert.ok(after.rss - before.rss < 200 * 1024 * 1024, "rss growth < 200 MB");
  assert.equal(predictor.calls.length, 0, "nothing malformed reached the model");
  assert.equal(logs.filter((l) => / error /.test(l)).length, 0, "no internal errors");

  const ping = await request(base, "/ping", { agent });
  assert.equal(ping.status, 200);
  const ok = await invoke(base, { inputs: "MKTAYIAKQR" });
  assert.equal(ok.status, 200, ok.text);
});
