import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../helpers/python";

test("the package loads with require() (as tslab's CommonJS cells do) and ships declarations", () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8"));
  assert.equal(pkg.name, "esmkit");
  assert.ok(existsSync(path.join(REPO_ROOT, pkg.types)), `${pkg.types} missing`);
  // A fresh process, resolving the package by name from a CommonJS script.
  const script =
    'const e = require("esmkit"); console.log(JSON.stringify([typeof e.prepare, typeof e.EsmTokenizer, typeof e.selectBackend, e.ESM2_VOCAB.length]))';
  const home = mkdtempSync(path.join(tmpdir(), "esmkit-require-"));
  mkdirSync(path.join(home, "node_modules"));
  symlinkSync(REPO_ROOT, path.join(home, "node_modules", "esmkit"), "dir");
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", cwd: home });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), ["function", "function", "function", 33]);
});

test("the esmkit command prints help and rejects unknown commands", () => {
  const cli = path.join(REPO_ROOT, "bin", "esmkit.js");
  const help = spawnSync(process.execPath, [cli, "--help"], { encoding: "utf8" });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /prepare/);
  const bad = spawnSync(process.execPath, [cli, "fly"], { encoding: "utf8" });
  assert.equal(bad.status, 2);
  assert.match(
    bad.stderr,
    /unknown command "fly"; expected one of: prepare, train, evaluate, demo, kernel, predict, embed, serve, export, sagemaker/,
  );
});

test("the entry point registers the s3:// store and the ESM-2 predictor loader, which src/io and src/serve do not import", () => {
  const build = path.join(REPO_ROOT, "build", "src");
  const script = `
    const storage = require(${JSON.stringify(path.join(build, "io", "storage.js"))});
    const predictor = require(${JSON.stringify(path.join(build, "serve", "predictor.js"))});
    const message = async (f) => {
      try {
        await f();
        return "resolved";
      } catch (e) {
        return e.constructor.name + ": " + e.message;
      }
    };
    (async () => {
      const both = async () => [
        await message(() => storage.openRead("gs://b/k")),
        await message(() => predictor.loadPredictor("/no/such/model")),
      ];
      const before = await both();
      require(${JSON.stringify(build)});
      const after = await both();
      console.log(JSON.stringify({ before, after }));
    })();`;
  const r = spawnSync(process.execPath, ["-e", script], {
    encoding: "utf8",
    env: { ...process.env, ESMKIT_WORKERS: "0", ESMKIT_BACKEND: "cpu" },
  });
  assert.equal(r.status, 0, r.stderr);
  const { before, after } = JSON.parse(r.stdout);
  assert.match(
    before[0],
    /^StorageError: .*scheme "gs" is not supported \(supported: local paths, http:\/\/, https:\/\/\)$/,
  );
  assert.match(before[1], /^ConfigError: No predictor loader is registered/);
  assert.match(after[0], /supported: local paths, http:\/\/, https:\/\/, s3:\/\/\)$/);
  // The ESM-2 loader ran: it looked for the model.
  assert.match(
    after[1],
    /^StorageError: \/no\/such\/model is neither an existing directory nor a Hub model id/,
  );
});
