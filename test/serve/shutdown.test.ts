import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer as createNetServer } from "node:net";
import * as path from "node:path";
import { test } from "node:test";
import type { Prediction } from "../../src/serve/prediction";
import { invoke, request } from "./http-client";

const CHILD = path.join(__dirname, "serve-child.js");

interface Started {
  child: ChildProcess;
  base: string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Start `esmkit serve` (fake model) in a child process and wait for its address. */
async function startChild(args: string[], env: Record<string, string> = {}): Promise<Started> {
  const child = spawn(process.execPath, [CHILD, "--model", "/nonexistent/model", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (c) => {
    err += c;
  });
  const exited = once(child, "exit").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    at: Date.now(),
  }));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
    if (m) return { child, base: m[1]!, stderr: () => err, exited };
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the server did not start:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("SIGTERM: in-flight requests finish, new connections are refused, exit code 0 within seconds", async () => {
  const s = await startChild(["--port", "0", "--max-batch-size", "1", "--grace-ms", "10000"], {
    FAKE_DELAY_MS: "500",
  });
  try {
    assert.equal((await request(s.base, "/ping")).status, 200);
    // Three slow requests, one batch each: about 1.5 s of work queued.
    const slow = ["MKTAY", "LLVVA", "DEKRH"].map((seq) => invoke(s.base, { inputs: seq }));
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    s.child.kill("SIGTERM");
    let refused = false;
    while (!refused && Date.now() - t0 < 3000) {
      try {
        await request(s.base, "/ping", { timeoutMs: 200 });
        await new Promise((r) => setTimeout(r, 10));
      } catch (e) {
        refused = /ECONNREFUSED/.test(String(e));
      }
    }
    assert.ok(refused, "new connections are refused while draining");
    const answers = await Promise.all(slow);
    for (const a of answers) {
      assert.equal(a.status, 200, a.text);
      assert.equal((a.json as Prediction[]).length, 1);
    }
    const { code, signal, at } = await s.exited;
    assert.equal(signal, null);
    assert.equal(code, 0, s.stderr());
    assert.ok(at - t0 < 8000, `exited ${at - t0} ms after SIGTERM`);
    assert.match(s.stderr(), /SIGTERM: draining/);
    assert.match(s.stderr(), /stopped after \d+ ms/);
    assert.equal((s.stderr().match(/POST \/invocations 200/g) ?? []).length, 3);
  } finally {
    s.child.kill("SIGKILL");
  }
});

test("SAGEMAKER_BIND_TO_PORT picks the port when --port is absent; SIGINT also drains and exits 0", async () => {
  const probe = createNetServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const s = await startChild(["--quiet"], { SAGEMAKER_BIND_TO_PORT: String(port) });
  try {
    assert.equal(s.base, `http://127.0.0.1:${port}`);
    assert.equal((await request(s.base, "/ping")).status, 200);
    s.child.kill("SIGINT");
    const { code } = await s.exited;
    assert.equal(code, 0, s.stderr());
    assert.doesNotMatch(s.stderr(), /GET \/ping/, "--quiet drops the request log");
  } finally {
    s.child.kill("SIGKILL");
  }
});

test("a bad SAGEMAKER_BIND_TO_PORT fails at start with the value", async () => {
  const child = spawn(process.execPath, [CHILD, "--model", "x"], {
    env: { ...process.env, SAGEMAKER_BIND_TO_PORT: "eighty" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (c) => {
    err += c;
  });
  const [code] = await once(child, "exit");
  assert.equal(code, 2);
  assert.match(err, /SAGEMAKER_BIND_TO_PORT="eighty" is not a port/);
});

/** Run serve-child (or another script) to its exit, killing it after `deadlineMs`. */
async function runToExit(
  script: string,
  args: string[],
  deadlineMs: number,
  env: Record<string, string> = {},
) {
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  let loadedAt: number | undefined;
  child.stderr!.on("data", (c) => {
    err += c;
    if (loadedAt === undefined && /model loaded/.test(err)) loadedAt = Date.now();
  });
  const killer = setTimeout(() => child.kill("SIGKILL"), deadlineMs);
  const [code, signal] = await once(child, "exit");
  clearTimeout(killer);
  return {
    code: code as number | null,
    signal: signal as string | null,
    err,
    loadedAt,
    exitAt: Date.now(),
  };
}

/** A port that something else is listening on, for the duration of `fn`. */
async function withBusyPort(fn: (port: number) => Promise<void>) {
  const holder = createNetServer();
  await new Promise<void>((r) => holder.listen(0, "127.0.0.1", r));
  try {
    await fn((holder.address() as { port: number }).port);
  } finally {
    await new Promise<void>((r) => holder.close(() => r()));
  }
}

test("a busy port (EADDRINUSE): exit 2 within 5 s with the reason, the model stopped", async () => {
  await withBusyPort(async (port) => {
    const r = await runToExit(CHILD, ["--model", "m", "--port", String(port)], 20_000);
    assert.equal(r.signal, null, `killed after 20 s: the process hung\n${r.err}`);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, new RegExp(`Cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
    assert.ok(r.loadedAt !== undefined, r.err);
    assert.ok(r.exitAt - r.loadedAt < 5000, `exited ${r.exitAt - r.loadedAt} ms after loading`);
  });
});

test("the real model in worker threads: a busy port ends the process, not a hang", async () => {
  const bin = path.join(__dirname, "..", "..", "..", "bin", "esmkit.js");
  const model = path.join(__dirname, "..", "..", "..", "test", "fixtures", "model", "tiny");
  await withBusyPort(async (port) => {
    const r = await runToExit(bin, ["serve", "--model", model, "--port", String(port)], 60_000, {
      ESMKIT_WORKERS: "1",
    });
    assert.equal(r.signal, null, `killed after 60 s: the process hung\n${r.err}`);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /esmkit serve: Cannot listen on .*EADDRINUSE/);
  });
});

test("invalid limits exit 2 before the model loads, naming the flag and the value", async () => {
  const cases: [string[], RegExp, Record<string, string>?][] = [
    [["--max-batch-size", "0"], /--max-batch-size expects an integer >= 1, got "0"/],
    [["--timeout-ms", "0"], /--timeout-ms expects an integer >= 1, got "0"/],
    [["--max-queue", "4", "--max-sequences", "8"], /maxQueue \(4\) must be at least/],
    [["--too-long", "clip"], /--too-long .*"clip"/],
    [
      [],
      /SAGEMAKER_MAX_PAYLOAD_IN_MB="lots" is not valid/,
      { SAGEMAKER_MAX_PAYLOAD_IN_MB: "lots" },
    ],
    [
      [],
      /SAGEMAKER_MAX_CONCURRENT_TRANSFORMS="0" is not valid/,
      { SAGEMAKER_MAX_CONCURRENT_TRANSFORMS: "0" },
    ],
  ];
  for (const [flags, message, env] of cases) {
    const r = await runToExit(CHILD, ["--model", "m", "--port", "0", ...flags], 20_000, env);
    assert.equal(r.signal, null, `${flags.join(" ")}: hung\n${r.err}`);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.err}`);
    assert.match(r.err, message);
    assert.doesNotMatch(r.err, /model loaded/, `${flags.join(" ")}: checked before loading`);
  }
});
