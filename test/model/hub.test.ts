/**
 * Hub downloads against a real local HTTP server (port 0) that behaves like
 * huggingface.co: `resolve` URLs answer HEAD with X-Repo-Commit and ETag, LFS files
 * redirect to a CDN on another origin with X-Linked-Etag (sha256) and X-Linked-Size,
 * the CDN honours Range, missing files get 404 EntryNotFound, unknown or private repos
 * 401 RepoNotFound. For the race tests, `dripMs` makes every body arrive slowly and
 * `gate` holds each download until that many clients have asked for the file (HEAD), so
 * concurrent downloaders (threads, processes) surely overlap.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname, tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, beforeEach, test } from "node:test";
import { Worker } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import { selectBackend } from "../../src/backend";
import { StorageError, WeightsError } from "../../src/errors";
import { saveAdapter } from "../../src/lora/adapter-io";
import { applyLora } from "../../src/lora/lora";
import {
  type DownloadProgress,
  type Esm2Model,
  type FromPretrainedOptions,
  fromPretrained,
} from "../../src/model";
import { loadEsmPredictor } from "../../src/serve/model-predictor";
import { loadWorkerPredictor } from "../../src/serve/worker-predictor";
import { EsmTokenizer } from "../../src/tokenizer/esm-tokenizer";
import { pythonSkipReason, REPO_ROOT, referencePython, runPython } from "../helpers/python";

const FIXTURES = path.join(REPO_ROOT, "test", "fixtures", "model");
const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const TOKEN = "hf_esmkit_test_secret";

interface HubFile {
  body: Buffer;
  lfs: boolean;
  sha256: string;
}
interface Repo {
  files: Map<string, HubFile>;
  private?: boolean;
}
interface Seen {
  method: string;
  url: string;
  server: "hub" | "cdn";
  authorization: string | undefined;
  range: string | undefined;
}

function repoFrom(dir: string, extra: Record<string, Buffer> = {}): Repo {
  const files = new Map<string, HubFile>();
  const add = (name: string, body: Buffer) =>
    files.set(name, {
      body,
      lfs: name.endsWith(".safetensors") || name.endsWith(".bin"),
      sha256: createHash("sha256").update(body).digest("hex"),
    });
  for (const f of readdirSync(dir))
    if (!f.endsWith(".json") || f === "config.json" || f.includes("index"))
      add(f, readFileSync(path.join(dir, f)));
  for (const [name, body] of Object.entries(extra)) add(name, body);
  return { files };
}

const tinyConfig = readFileSync(path.join(FIXTURES, "tiny", "config.json"));
const repos: Record<string, Repo> = {
  "test-org/tiny": repoFrom(path.join(FIXTURES, "tiny")),
  "test-org/sharded": repoFrom(path.join(FIXTURES, "odd")),
  "test-org/private": { ...repoFrom(path.join(FIXTURES, "tiny")), private: true },
  "test-org/bin-only": {
    files: new Map([
      ["config.json", { body: tinyConfig, lfs: false, sha256: "" }],
      ["pytorch_model.bin.index.json", { body: Buffer.from("{}"), lfs: false, sha256: "" }],
    ]),
  },
  "test-org/no-config": { files: new Map() },
  // As the Hub's ESM-2 repos: weights, config and the tokenizer files (no tokenizer.json).
  "test-org/esm": repoFrom(path.join(FIXTURES, "tiny"), {
    "tokenizer_config.json": readFileSync(path.join(FIXTURES, "tiny", "tokenizer_config.json")),
    "special_tokens_map.json": Buffer.from(
      JSON.stringify({
        cls_token: "<cls>",
        eos_token: "<eos>",
        mask_token: "<mask>",
        pad_token: "<pad>",
        unk_token: "<unk>",
      }),
    ),
  }),
};

const seen: Seen[] = [];
/** Bytes after which the CDN drops the connection once (then resets to Infinity). */
let cutAfter = Number.POSITIVE_INFINITY;
/** Delay between the four parts of every response body (0: all at once). */
let dripMs = 0;
/** Hold a file's download until this many HEADs for it came (at most 5 s); 0: off. */
let gate = 0;
/** HEADs per file contents (sha256): repos share files, e.g. model.safetensors. */
const heads = new Map<string, number>();
let hub: Server;
let cdn: Server;
let hubUrl = "";
let cdnUrl = "";
const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-hub-"));

function record(server: Seen["server"], req: IncomingMessage): void {
  seen.push({
    method: req.method ?? "",
    url: req.url ?? "",
    server,
    authorization: req.headers.authorization,
    range: req.headers.range,
  });
}

function serveHub(req: IncomingMessage, res: ServerResponse): void {
  record("hub", req);
  const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? "");
  const repo = m ? repos[m[1]!] : undefined;
  if (!m || !repo || (repo.private && req.headers.authorization !== `Bearer ${TOKEN}`)) {
    res.writeHead(401, { "x-error-code": "RepoNotFound" }).end();
    return;
  }
  const file = repo.files.get(decodeURIComponent(m[3]!));
  const common = { "x-repo-commit": COMMIT };
  if (!file) {
    res.writeHead(404, { ...common, "x-error-code": "EntryNotFound" }).end();
    return;
  }
  if (req.method === "HEAD") heads.set(file.sha256, (heads.get(file.sha256) ?? 0) + 1);
  if (file.lfs) {
    res
      .writeHead(302, {
        ...common,
        location: `${cdnUrl}/blobs/${file.sha256}`,
        etag: `"${createHash("sha1").update(file.body).digest("hex")}"`,
        "x-linked-etag": `"${file.sha256}"`,
        "x-linked-size": String(file.body.length),
      })
      .end();
    return;
  }
  const etag = `"${createHash("sha1").update(file.body).digest("hex")}"`;
  res.writeHead(200, { ...common, etag, "content-length": String(file.body.length) });
  if (req.method === "HEAD") res.end();
  else send(res, file, file.body);
}

function send(res: ServerResponse, file: HubFile, body: Buffer, until = Date.now() + 5000): void {
  if (gate > 0 && (heads.get(file.sha256) ?? 0) < gate && Date.now() < until) {
    setTimeout(() => send(res, file, body, until), 20);
    return;
  }
  if (dripMs <= 0) {
    res.end(body);
    return;
  }
  const step = Math.ceil(body.length / 4);
  let at = 0;
  const next = () => {
    if (at >= body.length || res.destroyed) {
      res.end();
      return;
    }
    res.write(body.subarray(at, at + step));
    at += step;
    setTimeout(next, dripMs);
  };
  next();
}

function serveCdn(req: IncomingMessage, res: ServerResponse): void {
  record("cdn", req);
  const sha = /^\/blobs\/([0-9a-f]{64})$/.exec(req.url ?? "")?.[1];
  const file = Object.values(repos)
    .flatMap((r) => [...r.files.values()])
    .find((f) => f.sha256 === sha);
  if (!file) {
    res.writeHead(404).end();
    return;
  }
  let start = 0;
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  if (range) start = Number(range[1]);
  const body = file.body.subarray(start);
  const headers: Record<string, string> = { "content-length": String(body.length) };
  if (range)
    headers["content-range"] = `bytes ${start}-${file.body.length - 1}/${file.body.length}`;
  res.writeHead(range ? 206 : 200, headers);
  if (cutAfter < body.length) {
    const n = cutAfter;
    cutAfter = Number.POSITIVE_INFINITY;
    // Let the client consume the bytes before the connection drops.
    res.write(body.subarray(0, n), () => setTimeout(() => res.destroy(), 200));
    return;
  }
  send(res, file, body);
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

before(async () => {
  await selectBackend({ backend: "wasm" });
  hub = createServer(serveHub);
  cdn = createServer(serveCdn);
  hubUrl = await listen(hub);
  cdnUrl = await listen(cdn);
});
after(async () => {
  await new Promise((r) => hub.close(r));
  await new Promise((r) => cdn.close(r));
  rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  seen.length = 0;
  cutAfter = Number.POSITIVE_INFINITY;
  dripMs = 0;
  gate = 0;
  heads.clear();
});

let cacheCount = 0;
/** Options for a fresh cache, given through the environment as users would. */
function fresh(env: Record<string, string> = {}): FromPretrainedOptions & { cache: string } {
  const home = path.join(tmp, `home-${cacheCount++}`);
  return {
    cache: path.join(home, "hub"),
    env: { HF_HOME: home, HF_ENDPOINT: hubUrl, ...env },
    onProgress: false,
    onWarning: () => {},
  };
}

const tinyInputs = JSON.parse(readFileSync(path.join(FIXTURES, "tiny", "inputs.json"), "utf8"));
function logits(model: Esm2Model): number[] {
  const out = model.forward({
    inputIds: tinyInputs.input_ids,
    attentionMask: tinyInputs.attention_mask,
  });
  const values = Array.from(out.logits.dataSync());
  tf.dispose([out.lastHiddenState, out.logits]);
  model.dispose();
  return values;
}

test("downloads into the huggingface_hub cache layout (HF_HOME, HF_ENDPOINT) with progress", async () => {
  const o = fresh();
  const progress: DownloadProgress[] = [];
  const model = await fromPretrained("test-org/tiny", {
    ...o,
    onProgress: (p) => progress.push(p),
  });
  assert.deepEqual(logits(model), logits(await fromPretrained(path.join(FIXTURES, "tiny"))));

  const repoDir = path.join(o.cache, "models--test-org--tiny");
  assert.equal(readFileSync(path.join(repoDir, "refs", "main"), "utf8"), COMMIT);
  const weights = path.join(repoDir, "snapshots", COMMIT, "model.safetensors");
  assert.ok(lstatSync(weights).isSymbolicLink());
  const sha = repos["test-org/tiny"]!.files.get("model.safetensors")!.sha256;
  assert.equal(readlinkSync(weights), path.join("..", "..", "blobs", sha));
  assert.ok(existsSync(path.join(repoDir, "snapshots", COMMIT, "config.json")));
  // The weights came from the CDN, not the Hub origin.
  assert.ok(seen.some((s) => s.server === "cdn" && s.url === `/blobs/${sha}`));
  const last = progress.filter((p) => p.file === "model.safetensors").at(-1)!;
  assert.deepEqual(last, {
    repoId: "test-org/tiny",
    file: "model.safetensors",
    bytesDone: statSync(weights).size,
    bytesTotal: statSync(weights).size,
    done: true,
  });

  seen.length = 0;
  logits(await fromPretrained("test-org/tiny", o));
  assert.deepEqual(seen, [], "a cached model must load without any request");
});

test("HF_HUB_OFFLINE uses the cache only, and says clearly when a file is absent", async () => {
  const o = fresh();
  logits(await fromPretrained("test-org/tiny", o));
  seen.length = 0;
  const offline = { ...o, env: { ...o.env, HF_HUB_OFFLINE: "1" } };
  logits(await fromPretrained("test-org/tiny", offline));
  // A cache filled without the tokenizer files (older esmkit) still loads offline.
  const repoDir = path.join(o.cache, "models--test-org--tiny");
  rmSync(path.join(repoDir, "snapshots", COMMIT, "vocab.txt"));
  rmSync(path.join(repoDir, ".no_exist"), { recursive: true, force: true });
  logits(await fromPretrained("test-org/tiny", offline));
  await assert.rejects(fromPretrained("test-org/sharded", offline), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    assert.match(
      e.message,
      /test-org\/sharded\/config\.json \(revision "main"\) is not in the cache at .*models--test-org--sharded and offline mode is on \(HF_HUB_OFFLINE\)/,
    );
    return true;
  });
  assert.deepEqual(seen, []);
});

test("HF_TOKEN goes as a bearer header to the Hub only, never to the CDN", async () => {
  await assert.rejects(fromPretrained("test-org/private", fresh()), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    assert.match(
      e.message,
      /Repository test-org\/private not found on .*, or it is private or gated \(HTTP 401\).*set HF_TOKEN/,
    );
    return true;
  });
  seen.length = 0;
  logits(await fromPretrained("test-org/private", fresh({ HF_TOKEN: TOKEN })));
  const hubRequests = seen.filter((s) => s.server === "hub");
  assert.ok(hubRequests.length >= 2);
  assert.ok(hubRequests.every((s) => s.authorization === `Bearer ${TOKEN}`));
  assert.ok(seen.filter((s) => s.server === "cdn").every((s) => s.authorization === undefined));

  // The file `huggingface-cli login` writes under HF_HOME works too.
  const viaFile = fresh();
  mkdirSync(path.dirname(viaFile.cache), { recursive: true });
  writeFileSync(path.join(path.dirname(viaFile.cache), "token"), `${TOKEN}\n`);
  logits(await fromPretrained("test-org/private", viaFile));

  await assert.rejects(
    fromPretrained("test-org/private", fresh({ HF_TOKEN: "hf_wrong" })),
    (e: unknown) => {
      assert.ok(e instanceof StorageError);
      assert.match(e.message, /the token sent was refused/);
      assert.doesNotMatch(e.message + JSON.stringify(e.context), /hf_wrong/);
      return true;
    },
  );
});

test("an interrupted download resumes with a Range request and is verified", async () => {
  const o = fresh();
  const file = repos["test-org/tiny"]!.files.get("model.safetensors")!;
  cutAfter = 50_000;
  await assert.rejects(fromPretrained("test-org/tiny", o), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    assert.match(
      e.message,
      /Download of test-org\/tiny\/model\.safetensors was interrupted after 50000 of \d+ bytes .*run again to resume/,
    );
    return true;
  });
  const partial = path.join(
    o.cache,
    "models--test-org--tiny",
    "blobs",
    `${file.sha256}.incomplete`,
  );
  assert.equal(statSync(partial).size, 50_000);
  seen.length = 0;
  logits(await fromPretrained("test-org/tiny", o));
  const get = seen.find((s) => s.server === "cdn");
  assert.equal(get?.range, "bytes=50000-");
  assert.ok(!existsSync(partial));
  const blob = path.join(o.cache, "models--test-org--tiny", "blobs", file.sha256);
  assert.ok(readFileSync(blob).equals(file.body));
});

test("a corrupt partial download fails the sha256 check and is removed", async () => {
  const o = fresh();
  const file = repos["test-org/tiny"]!.files.get("model.safetensors")!;
  const blobs = path.join(o.cache, "models--test-org--tiny", "blobs");
  mkdirSync(blobs, { recursive: true });
  const partial = path.join(blobs, `${file.sha256}.incomplete`);
  writeFileSync(partial, Buffer.alloc(1000, 7)); // wrong bytes
  await assert.rejects(fromPretrained("test-org/tiny", o), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    assert.match(
      e.message,
      /is corrupt: sha256 [0-9a-f]{64} but the Hub says [0-9a-f]{64}; the partial file was removed/,
    );
    return true;
  });
  assert.ok(!existsSync(partial));
  logits(await fromPretrained("test-org/tiny", o));
});

test("a missing file or repository is a clear 404/401 error", async () => {
  await assert.rejects(fromPretrained("test-org/no-config", fresh()), (e: unknown) => {
    assert.ok(e instanceof StorageError);
    assert.match(
      e.message,
      /File config\.json not found in test-org\/no-config at revision "main" \(HTTP 404 from http:\/\/127\.0\.0\.1:\d+\)/,
    );
    assert.equal(e.context.status, 404);
    return true;
  });
  await assert.rejects(
    fromPretrained("test-org/unknown", fresh()),
    /Repository test-org\/unknown not found/,
  );
});

test("a repo with only pickled .bin weights says safetensors are needed", async () => {
  const o = fresh();
  await assert.rejects(fromPretrained("test-org/bin-only", o), (e: unknown) => {
    assert.ok(e instanceof WeightsError);
    assert.match(
      e.message,
      /test-org\/bin-only \(revision "main"\) has no safetensors weights \(neither model\.safetensors nor model\.safetensors\.index\.json; it has pytorch_model\.bin\.index\.json\)/,
    );
    assert.match(
      e.message,
      /M\.from_pretrained\('test-org\/bin-only'\)\.save_pretrained\('bin-only-safetensors'\)/,
    );
    return true;
  });
  // The absences are cached the way huggingface_hub does.
  assert.ok(
    existsSync(
      path.join(o.cache, "models--test-org--bin-only", ".no_exist", COMMIT, "model.safetensors"),
    ),
  );
});

test("sharded safetensors with an index load from the Hub", async () => {
  const o = fresh();
  const model = await fromPretrained("test-org/sharded", o);
  assert.equal(model.config.numLabels, 3);
  const local = await fromPretrained(path.join(FIXTURES, "odd"));
  assert.deepEqual(logits(model), logits(local));
  const names = seen.filter((s) => s.server === "cdn").map((s) => s.url);
  assert.equal(names.length, 2, "both shards downloaded");
  seen.length = 0;
  logits(await fromPretrained("test-org/sharded", o));
  assert.deepEqual(seen, []);
});

// ---- Cache integrity: one download per file, verified blobs, tokenizer files ----

const ESM_FILES = [
  "config.json",
  "model.safetensors",
  "tokenizer_config.json",
  "vocab.txt",
  "special_tokens_map.json",
];
const tinySha = () => repos["test-org/tiny"]!.files.get("model.safetensors")!.sha256;

/** GET requests (downloads) per file of test-org/esm, HEADs not counted. */
function downloadsPerFile(): Record<string, number> {
  const esm = repos["test-org/esm"]!;
  const count: Record<string, number> = {};
  for (const r of seen.filter((x) => x.method === "GET")) {
    const name =
      r.server === "cdn"
        ? [...esm.files].find(([, f]) => r.url === `/blobs/${f.sha256}`)?.[0]
        : decodeURIComponent(r.url.split("/resolve/main/")[1] ?? "");
    if (name) count[name] = (count[name] ?? 0) + 1;
  }
  return count;
}
const oncePerFile = Object.fromEntries(ESM_FILES.map((f) => [f, 1]));

type ChildResult = { ok: boolean; error?: string };
const CHILD = path.join(__dirname, "hub-child.js");

function inWorker(id: string, env: NodeJS.ProcessEnv): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(CHILD, { workerData: { id }, env: { ...process.env, ...env } });
    w.once("message", (m: string) => resolve(JSON.parse(m)));
    w.once("error", reject);
  });
}

function inProcess(id: string, env: NodeJS.ProcessEnv): Promise<ChildResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CHILD, id],
      { env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        try {
          resolve(JSON.parse(stdout));
        } catch {
          resolve({ ok: false, error: `${err?.message ?? ""} ${stderr}` });
        }
      },
    );
  });
}

/** Blob-folder names other than finished blobs: locks and temporaries left behind. */
function leftovers(cache: string, repo: string): string[] {
  const dir = path.join(cache, `models--${repo.replace("/", "--")}`, "blobs");
  return readdirSync(dir).filter((n) => !/^[0-9a-f]+$/.test(n));
}

test("two worker threads on a cold cache download each file once and both succeed", async () => {
  const o = fresh();
  dripMs = 40;
  gate = 2;
  const results = await Promise.all([
    inWorker("test-org/esm", o.env!),
    inWorker("test-org/esm", o.env!),
  ]);
  assert.deepEqual(
    results.map((r) => r.error ?? "ok"),
    ["ok", "ok"],
  );
  assert.deepEqual(downloadsPerFile(), oncePerFile);
  assert.deepEqual(leftovers(o.cache, "test-org/esm"), []);
});

test("two processes on a cold cache download each file once and both succeed", async () => {
  const o = fresh();
  dripMs = 40;
  gate = 2;
  const results = await Promise.all([
    inProcess("test-org/esm", o.env!),
    inProcess("test-org/esm", o.env!),
  ]);
  assert.deepEqual(
    results.map((r) => r.error ?? "ok"),
    ["ok", "ok"],
  );
  assert.deepEqual(downloadsPerFile(), oncePerFile);
  assert.deepEqual(leftovers(o.cache, "test-org/esm"), []);
});

test("the worker predictor (2 workers) serves an adapter whose base is a Hub id from a cold cache", async () => {
  const o = fresh();
  const base = await fromPretrained(path.join(FIXTURES, "tiny"), { onWarning: () => {} });
  const lora = applyLora(base, { rank: 2, targetModules: ["query", "value"] });
  for (const a of lora.adapters.values())
    a.bT.assign(tf.fill(a.bT.shape as [number, number], 0.05) as tf.Tensor2D);
  const adapterDir = path.join(tmp, "adapter-on-hub-base");
  saveAdapter(lora, base, adapterDir, { baseModel: "test-org/esm" });
  lora.dispose();
  base.dispose();
  const saved = { ...process.env };
  Object.assign(process.env, o.env, { HF_HUB_DISABLE_PROGRESS: "1" });
  dripMs = 40;
  try {
    const workers = await loadWorkerPredictor(adapterDir, { workers: 2 });
    try {
      const seqs = ["MKTAYIAKQR", "GSHMLEDPVK"];
      const got = await workers.predict(seqs);
      const local = await loadEsmPredictor(adapterDir, {
        base: path.join(FIXTURES, "tiny"),
        onWarning: () => {},
      });
      const want = await local.predict(seqs);
      local.dispose();
      for (const [i, w] of want.entries())
        for (const [k, p] of w.probabilities.entries())
          assert.ok(Math.abs(p - got[i]!.probabilities[k]!) < 1e-5);
    } finally {
      await workers.dispose();
    }
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
  assert.deepEqual(downloadsPerFile(), oncePerFile);
});

test("a corrupt cached blob is detected, reported and downloaded again (offline: a clear error)", async () => {
  const o = fresh();
  const file = repos["test-org/tiny"]!.files.get("model.safetensors")!;
  const want = logits(await fromPretrained(path.join(FIXTURES, "tiny")));
  logits(await fromPretrained("test-org/tiny", o));
  const blob = path.join(o.cache, "models--test-org--tiny", "blobs", file.sha256);
  // Too long, like the 40.8 MB blob found for a 30.06 MB file.
  appendFileSync(blob, file.body.subarray(0, 5000));
  await assert.rejects(
    fromPretrained("test-org/tiny", { ...o, env: { ...o.env, HF_HUB_OFFLINE: "1" } }),
    (e: unknown) => {
      assert.ok(e instanceof StorageError);
      assert.match(
        e.message,
        /The cached test-org\/tiny\/model\.safetensors \(.*blobs\/[0-9a-f]{64}\) is corrupt: its sha256 is [0-9a-f]{64}, and offline mode is on \(HF_HUB_OFFLINE\)\. Unset HF_HUB_OFFLINE to download it again\./,
      );
      return true;
    },
  );
  const warnings: string[] = [];
  seen.length = 0;
  assert.deepEqual(
    logits(await fromPretrained("test-org/tiny", { ...o, onWarning: (m) => warnings.push(m) })),
    want,
  );
  assert.match(
    warnings.join("\n"),
    new RegExp(
      `The cached test-org/tiny/model\\.safetensors \\(.*${file.sha256}\\) is corrupt: ${file.body.length + 5000} bytes where the Hub says ${file.body.length}\\. Downloading it again\\.`,
    ),
  );
  assert.ok(readFileSync(blob).equals(file.body));
  assert.equal(seen.filter((x) => x.server === "cdn").length, 1);

  // Right size, wrong bytes: the sha256 catches it.
  const bytes = readFileSync(blob);
  bytes[1000] = (bytes[1000]! + 1) % 256;
  writeFileSync(blob, bytes);
  warnings.length = 0;
  assert.deepEqual(
    logits(await fromPretrained("test-org/tiny", { ...o, onWarning: (m) => warnings.push(m) })),
    want,
  );
  assert.match(
    warnings.join("\n"),
    /is corrupt: its sha256 is [0-9a-f]{64}\. Downloading it again/,
  );
  assert.ok(readFileSync(blob).equals(file.body));
  assert.deepEqual(leftovers(o.cache, "test-org/tiny"), []);
});

test("a lock left by a dead process is taken over and its partial download resumed", async () => {
  const o = fresh();
  const file = repos["test-org/tiny"]!.files.get("model.safetensors")!;
  const blobs = path.join(o.cache, "models--test-org--tiny", "blobs");
  mkdirSync(blobs, { recursive: true });
  const dead = spawnSync(process.execPath, ["-e", ""]).pid!; // exited: its pid is free
  const token = `${dead}-0-0badf00d`;
  writeFileSync(
    path.join(blobs, `${file.sha256}.lock`),
    JSON.stringify({ host: hostname(), pid: dead, thread: 0, token, since: Date.now() }),
  );
  writeFileSync(
    path.join(blobs, `${file.sha256}.${token}.incomplete`),
    file.body.subarray(0, 50_000),
  );
  logits(await fromPretrained("test-org/tiny", o));
  assert.equal(seen.find((x) => x.server === "cdn")?.range, "bytes=50000-");
  assert.ok(readFileSync(path.join(blobs, file.sha256)).equals(file.body));
  assert.deepEqual(leftovers(o.cache, "test-org/tiny"), []);
});

test("waiting for another downloader shows progress, is bounded, and a silent lock is taken over", async () => {
  const o = fresh();
  const blobs = path.join(o.cache, "models--test-org--tiny", "blobs");
  mkdirSync(blobs, { recursive: true });
  const lock = path.join(blobs, `${tinySha()}.lock`);
  // A live owner (this very process, another thread) that never makes progress.
  const token = `${process.pid}-99-feedbeef`;
  writeFileSync(lock, JSON.stringify({ host: hostname(), pid: process.pid, thread: 99, token }));
  const progress: DownloadProgress[] = [];
  await assert.rejects(
    fromPretrained("test-org/tiny", {
      ...o,
      lockTimeoutMs: 400,
      onProgress: (p) => progress.push(p),
    }),
    (e: unknown) => {
      assert.ok(e instanceof StorageError);
      assert.match(
        e.message,
        /Waited \d+ s for thread 99 of this process to download test-org\/tiny\/model\.safetensors, with no progress\. If nothing is downloading it, delete .*\.lock and run again\./,
      );
      return true;
    },
  );
  assert.ok(progress.some((p) => p.waitingFor === "thread 99 of this process" && !p.done));
  assert.equal(seen.filter((x) => x.server === "cdn").length, 0, "no second download");
  // Untouched for longer than staleLockMs: its owner is stuck or gone.
  const past = new Date(Date.now() - 10_000);
  utimesSync(lock, past, past);
  logits(await fromPretrained("test-org/tiny", { ...o, staleLockMs: 5_000 }));
  assert.deepEqual(leftovers(o.cache, "test-org/tiny"), []);
});

test("the tokenizer files are cached too, and Python loads model and tokenizer offline from esmkit's cache", async (t) => {
  const o = fresh();
  const model = await fromPretrained("test-org/esm", o);
  const snap = path.join(o.cache, "models--test-org--esm", "snapshots", COMMIT);
  assert.deepEqual(readdirSync(snap).sort(), [...ESM_FILES].sort());
  for (const f of ESM_FILES) assert.ok(lstatSync(path.join(snap, f)).isSymbolicLink(), f);
  const seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPVK"];
  const enc = new EsmTokenizer().encodeBatch(seqs, { padding: "longest" });
  const out = model.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask });
  const ours = Array.from(out.logits.dataSync());
  tf.dispose([out.lastHiddenState, out.logits]);
  model.dispose();

  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  const seqFile = path.join(tmp, "seqs.json");
  writeFileSync(seqFile, JSON.stringify(seqs));
  const home = path.dirname(o.cache);
  const saved = { ...process.env };
  Object.assign(process.env, {
    HF_HOME: home,
    HF_HUB_OFFLINE: "1",
    HF_ENDPOINT: "http://127.0.0.1:9",
  });
  delete process.env.HF_HUB_CACHE;
  let theirs: {
    tokenizer: string;
    input_ids: number[][];
    logits: number[][];
    cache: { repo_id: string; files: string[]; refs: string[] }[];
    warnings: string[];
  };
  try {
    theirs = JSON.parse(runPython(python, "check_hub_cache.py", ["test-org/esm", seqFile]));
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
  assert.equal(theirs.tokenizer, "EsmTokenizer");
  assert.deepEqual(theirs.input_ids, enc.inputIds);
  let d = 0;
  theirs.logits.flat().forEach((v, i) => {
    d = Math.max(d, Math.abs(v - ours[i]!));
  });
  assert.ok(d < 1e-5, `logits differ by ${d}`);
  assert.deepEqual(theirs.warnings, []);
  assert.deepEqual(theirs.cache, [
    { repo_id: "test-org/esm", files: [...ESM_FILES].sort(), refs: ["main"] },
  ]);
});
