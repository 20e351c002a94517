import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { kernelCommand } from "../../src/cli/kernel-command";
import { ConfigError } from "../../src/errors";
import {
  installKernel,
  type KernelJson,
  kernelSearchDirs,
  kernelsDir,
  listKernels,
  uninstallKernel,
  userDataDir,
} from "../../src/kernel/kernel-spec";
import { esmkitPathForwarder } from "../../src/kernel/launch";
import { REPO_ROOT } from "../helpers/python";

const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-kspec-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const fresh = (name: string) => mkdtempSync(path.join(tmp, `${name}-`));
const readSpec = (dir: string): KernelJson =>
  JSON.parse(readFileSync(path.join(dir, "kernel.json"), "utf8"));
/** An environment without the developer's own Jupyter folders. */
const isolated = (home: string): NodeJS.ProcessEnv => ({ HOME: home });

test("install writes a kernel.json running our launcher with NODE_PATH, backend and threads", () => {
  const prefix = fresh("prefix");
  const k = installKernel({ prefix, backend: "WASM", threads: 3, displayName: "ESM (wasm)" });
  const dir = path.join(prefix, "share", "jupyter", "kernels", "esmkit");
  assert.equal(k.dir, dir);
  assert.deepEqual(k.problems, []);
  assert.equal(k.backend, "wasm");
  assert.equal(k.threads, 3);
  const spec = readSpec(dir);
  assert.deepEqual(spec.argv, [
    process.execPath,
    path.join(REPO_ROOT, "build", "src", "kernel", "launch.js"),
    "--config-path",
    "{connection_file}",
  ]);
  assert.equal(spec.display_name, "ESM (wasm)");
  assert.equal(spec.language, "typescript");
  assert.deepEqual(spec.env, {
    NODE_PATH: [path.join(dir, "node_modules"), path.join(REPO_ROOT, "node_modules")].join(
      path.delimiter,
    ),
    ESMKIT_BACKEND: "wasm",
    ESMKIT_THREADS: "3",
    OMP_NUM_THREADS: "3",
    POLARS_MAX_THREADS: "3",
    UV_THREADPOOL_SIZE: "3",
  });
  assert.equal(spec.metadata.esmkit.packageRoot, REPO_ROOT);
  assert.equal(realpathSync(path.join(dir, "node_modules", "esmkit")), realpathSync(REPO_ROOT));
});

test("with the kernel's environment, require('esmkit') resolves from a folder without node_modules", () => {
  const prefix = fresh("prefix");
  const { dir } = installKernel({ prefix });
  const notebooks = fresh("notebooks");
  const r = spawnSync(
    process.execPath,
    [
      "-e",
      'const e = require("esmkit"); console.log(require.resolve("esmkit"), typeof e.prepare, typeof require("esmkit/build/src/display").display.plotly, typeof require("nodejs-polars").DataFrame)',
    ],
    { cwd: notebooks, encoding: "utf8", env: { ...readSpec(dir).env } },
  );
  assert.equal(r.status, 0, r.stderr);
  const [resolved, ...types] = r.stdout.trim().split(" ");
  // Through the link to the package itself (Node resolves symlinks): one module instance.
  assert.equal(resolved, path.join(realpathSync(REPO_ROOT), "build", "src", "index.js"));
  assert.deepEqual(types, ["function", "function", "function"]);
});

test("--user goes to JUPYTER_DATA_DIR, else XDG_DATA_HOME or ~/.local/share/jupyter", () => {
  if (process.platform !== "linux") return;
  const home = fresh("home");
  assert.equal(
    kernelsDir({ user: true, env: { HOME: home } }),
    `${home}/.local/share/jupyter/kernels`,
  );
  assert.equal(userDataDir({ HOME: home, XDG_DATA_HOME: "/xdg" }), "/xdg/jupyter");
  assert.equal(
    userDataDir({ HOME: home, JUPYTER_DATA_DIR: "/data/jup", XDG_DATA_HOME: "/xdg" }),
    "/data/jup",
  );
  // The default location is the user's.
  const k = installKernel({ name: "esmkit-test", env: { JUPYTER_DATA_DIR: home } });
  assert.equal(k.dir, path.join(home, "kernels", "esmkit-test"));
  assert.throws(
    () => kernelsDir({ user: true, prefix: "/p" }),
    (e) => e instanceof ConfigError && /--user and --prefix/.test(e.message),
  );
});

test("list finds only esmkit kernels, in Jupyter's search order, and reports broken ones", () => {
  const home = fresh("home");
  const prefix = fresh("prefix");
  const env = { ...isolated(home), JUPYTER_PATH: path.join(prefix, "share", "jupyter") };
  installKernel({ prefix, name: "esm-b" });
  installKernel({ prefix, name: "esm-a", backend: "cpu" });
  installKernel({ user: true, env, name: "esm-user" });
  const foreign = path.join(prefix, "share", "jupyter", "kernels", "python3");
  mkdirSync(foreign);
  writeFileSync(path.join(foreign, "kernel.json"), '{"argv": ["python"], "display_name": "Py"}');

  const found = listKernels({ env });
  assert.deepEqual(
    found.map((k) => k.name),
    ["esm-a", "esm-b", "esm-user"],
  );
  assert.equal(found[0]!.backend, "cpu");
  assert.ok(
    kernelSearchDirs({ env }).indexOf(path.join(prefix, "share", "jupyter", "kernels")) <
      kernelSearchDirs({ env }).indexOf(path.join(home, ".local", "share", "jupyter", "kernels")),
  );

  rmSync(path.join(found[1]!.dir, "node_modules", "esmkit"));
  const broken = listKernels({ env }).find((k) => k.name === "esm-b")!;
  assert.match(broken.problems.join(), /broken link/);
});

test("install refuses to overwrite a foreign kernel and checks its options", () => {
  const prefix = fresh("prefix");
  const foreign = path.join(prefix, "share", "jupyter", "kernels", "python3");
  mkdirSync(foreign, { recursive: true });
  writeFileSync(path.join(foreign, "kernel.json"), '{"argv": ["python"], "display_name": "Py"}');
  assert.throws(
    () => installKernel({ prefix, name: "python3" }),
    (e) => e instanceof ConfigError && /not esmkit's/.test(e.message),
  );
  assert.ok(existsSync(path.join(foreign, "kernel.json")));
  assert.throws(
    () => installKernel({ prefix, backend: "tpu" }),
    (e) =>
      e instanceof ConfigError &&
      e.message ===
        'Unknown backend "tpu"; expected one of: auto, tensorflow-gpu, tensorflow, wasm, cpu',
  );
  assert.throws(() => installKernel({ prefix, name: "my kernel" }), ConfigError);
  assert.throws(() => installKernel({ prefix, threads: 0 }), ConfigError);
  // Reinstalling our own kernel replaces it.
  installKernel({ prefix, backend: "cpu" });
  const again = installKernel({ prefix });
  assert.equal(again.backend, undefined);
});

test("uninstall removes our kernel from the named place, or wherever it is found", () => {
  const home = fresh("home");
  const prefix = fresh("prefix");
  const env = { ...isolated(home), JUPYTER_PATH: path.join(prefix, "share", "jupyter") };
  // A name no real installation uses: the search also covers the system folders.
  const name = `esmkit-test-${process.pid}`;
  const a = installKernel({ prefix, name });
  const b = installKernel({ user: true, env, name });
  assert.deepEqual(uninstallKernel({ prefix, name }), [a.dir]);
  assert.ok(existsSync(path.join(REPO_ROOT, "package.json")), "the link, not the package, went");
  installKernel({ prefix, name });
  assert.deepEqual(uninstallKernel({ env, name }), [a.dir, b.dir]);
  assert.throws(
    () => uninstallKernel({ env, name }),
    (e) => e instanceof ConfigError && e.message.startsWith(`No esmkit kernel named "${name}"`),
  );
});

test("--python locates Jupyter through that interpreter", (t) => {
  assert.throws(
    () => kernelsDir({ python: path.join(tmp, "no-python") }),
    (e) => e instanceof ConfigError && /cannot locate Jupyter/.test(e.message),
  );
  const python = path.join(REPO_ROOT, ".venv", "bin", "python");
  if (!existsSync(python)) return t.skip(`${python} missing`);
  const r = spawnSync(python, ["-c", "import sys; print(sys.prefix)"], { encoding: "utf8" });
  assert.equal(kernelsDir({ python }), path.join(r.stdout.trim(), "share", "jupyter", "kernels"));
  assert.ok(
    kernelSearchDirs({ python }).includes(
      path.join(r.stdout.trim(), "share", "jupyter", "kernels"),
    ),
  );
});

test("the launcher maps <cwd>/node_modules/esmkit onto the package for tslab's type checker", () => {
  const forward = esmkitPathForwarder("/nb", "/pkg");
  assert.equal(forward("/nb/node_modules/esmkit/package.json"), "/pkg/package.json");
  assert.equal(forward("/nb/node_modules/esmkit"), "/pkg");
  assert.equal(
    forward("/nb/node_modules/esmkit-other/x.d.ts"),
    "/nb/node_modules/esmkit-other/x.d.ts",
  );
  assert.equal(
    forward("/elsewhere/node_modules/esmkit/a.d.ts"),
    "/elsewhere/node_modules/esmkit/a.d.ts",
  );
});

test("the launcher maps esmkit's dependencies to <cwd>/node_modules unless the folder has its own", () => {
  const present = new Set([
    "/pkg/node_modules/nodejs-polars",
    "/pkg/node_modules/@tensorflow/tfjs-core",
    "/nb/node_modules/own",
    "/pkg/node_modules/own",
  ]);
  const forward = esmkitPathForwarder("/nb", "/pkg", ["/pkg/node_modules"], (p) => present.has(p));
  assert.equal(
    forward("/nb/node_modules/nodejs-polars/bin/index.d.ts"),
    "/pkg/node_modules/nodejs-polars/bin/index.d.ts",
  );
  assert.equal(
    forward("/nb/node_modules/@tensorflow/tfjs-core/package.json"),
    "/pkg/node_modules/@tensorflow/tfjs-core/package.json",
  );
  // The notebook folder's own install wins; unknown packages and bare scopes stay.
  assert.equal(forward("/nb/node_modules/own/index.d.ts"), "/nb/node_modules/own/index.d.ts");
  assert.equal(forward("/nb/node_modules/missing/x.d.ts"), "/nb/node_modules/missing/x.d.ts");
  assert.equal(forward("/nb/node_modules/@tensorflow"), "/nb/node_modules/@tensorflow");
  // Not through esmkit's own node_modules: TypeScript must find them one level up,
  // under a name a cell can import (else: TS2742, "cannot be named without a reference").
  assert.equal(
    forward("/nb/node_modules/esmkit/node_modules/nodejs-polars/package.json"),
    "/nb/node_modules/esmkit/node_modules/nodejs-polars/package.json",
  );
});

test("esmkit kernel: list prints the kernels, bad actions are usage errors", async () => {
  const prefix = fresh("prefix");
  installKernel({ prefix, backend: "cpu", threads: 2 });
  const chunks: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => chunks.push(s) > 0) as typeof process.stdout.write;
  let code: number;
  try {
    code = await kernelCommand.run(["list", "--prefix", prefix]);
  } finally {
    process.stdout.write = write;
  }
  assert.equal(code, 0);
  const out = chunks.join("");
  assert.ok(out.includes(path.join(prefix, "share", "jupyter", "kernels", "esmkit")), out);
  const { version } = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8"));
  assert.ok(
    out.includes(
      `"TypeScript (esmkit)", esmkit ${version} at ${REPO_ROOT}, backend cpu, 2 threads`,
    ),
    out,
  );
  await assert.rejects(
    kernelCommand.run(["fly"]),
    /unknown subcommand "fly"; expected one of: install, list, uninstall/,
  );
  await assert.rejects(kernelCommand.run(["install", "--bogus"]), {
    code: "ERR_PARSE_ARGS_UNKNOWN_OPTION",
  });
});
