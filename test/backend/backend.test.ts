import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs-core";
import { describeBackend, selectBackend } from "../../src/backend";
import { BackendError } from "../../src/errors";

/** A loader that pretends the native packages are absent or broken, and loads the rest. */
function fakeLoader(broken: Record<string, string>) {
  const seen: string[] = [];
  const load = (pkg: string) => {
    seen.push(pkg);
    if (pkg in broken) throw new Error(broken[pkg]);
    return require(pkg);
  };
  return { load, seen };
}

test("auto falls through tfjs-node-gpu and tfjs-node to wasm, recording why", async () => {
  const { load, seen } = fakeLoader({
    "@tensorflow/tfjs-node-gpu": "Cannot find module '@tensorflow/tfjs-node-gpu'",
    "@tensorflow/tfjs-node": "libtensorflow.so.2: cannot open shared object file",
  });
  const info = await selectBackend({ backend: "auto", load, env: {} });
  assert.deepEqual(seen, [
    "@tensorflow/tfjs-node-gpu",
    "@tensorflow/tfjs-node",
    "@tensorflow/tfjs-backend-wasm",
  ]);
  assert.equal(info.name, "wasm");
  assert.equal(tf.getBackend(), "wasm");
  assert.equal(info.source, "auto");
  assert.match(info.attempts[1]?.reason ?? "", /libtensorflow/);
  assert.match(
    describeBackend(info),
    /^wasm \(@tensorflow\/tfjs-backend-wasm, auto; unavailable: tensorflow-gpu, tensorflow\)$/,
  );
});

test("auto falls back to cpu when wasm cannot load", async () => {
  const { load } = fakeLoader({
    "@tensorflow/tfjs-node-gpu": "missing",
    "@tensorflow/tfjs-node": "missing",
    "@tensorflow/tfjs-backend-wasm": "missing",
  });
  const info = await selectBackend({ load, env: {} });
  assert.equal(info.name, "cpu");
  assert.equal(tf.getBackend(), "cpu");
});

test("ESMKIT_BACKEND forces a backend, the option overrides the variable", async () => {
  const fromEnv = await selectBackend({ env: { ESMKIT_BACKEND: "cpu" } });
  assert.equal(fromEnv.name, "cpu");
  assert.equal(fromEnv.source, "env");
  const fromOption = await selectBackend({ backend: "wasm", env: { ESMKIT_BACKEND: "cpu" } });
  assert.equal(fromOption.name, "wasm");
  assert.equal(fromOption.source, "option");
});

test("a forced native backend that is not installed fails loudly instead of falling back", async () => {
  const { load } = fakeLoader({ "@tensorflow/tfjs-node": "Cannot find module" });
  await assert.rejects(selectBackend({ backend: "tensorflow", load, env: {} }), (e: unknown) => {
    assert.ok(e instanceof BackendError);
    assert.match(e.message, /tensorflow: cannot load @tensorflow\/tfjs-node/);
    return true;
  });
});

test("an unknown backend name is rejected with the accepted values", async () => {
  await assert.rejects(selectBackend({ env: { ESMKIT_BACKEND: "cuda" } }), (e: unknown) => {
    assert.ok(e instanceof BackendError);
    assert.match(
      e.message,
      /Unknown backend "cuda" \(from ESMKIT_BACKEND\); expected one of: auto, tensorflow-gpu, tensorflow, wasm, cpu/,
    );
    return true;
  });
});
