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
