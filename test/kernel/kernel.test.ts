/**
 * The real route: install the kernel into a temporary prefix, execute a notebook with
 * `jupyter nbconvert --execute` on it, and read the outputs back. Needs `.venv/bin/jupyter`
 * (nbconvert, from test/reference/requirements.txt): skipped without it on a developer
 * machine, a failure under CI.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { kernelCommand } from "../../src/cli/kernel-command";
import { listKernels } from "../../src/kernel/kernel-spec";
import { REPO_ROOT } from "../helpers/python";

const JUPYTER = path.join(REPO_ROOT, ".venv", "bin", "jupyter");

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  transient?: unknown;
}

function jupyterOrSkip(t: { skip(reason: string): void }): boolean {
  if (existsSync(JUPYTER)) return true;
  const reason = `${JUPYTER} missing (run .ci/run: it installs nbconvert into .venv)`;
  if (process.env.CI) throw new Error(`required under CI: ${reason}`);
  t.skip(reason);
  return false;
}

function notebook(cells: string[]) {
  return {
    cells: cells.map((source, i) => ({
      cell_type: "code",
      execution_count: null,
      id: `cell-${i}`,
      metadata: {},
      outputs: [],
      source,
    })),
    metadata: {
      kernelspec: { name: "esmkit", display_name: "TypeScript (esmkit)", language: "typescript" },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

const text = (o: Output) => (Array.isArray(o.text) ? o.text.join("") : (o.text ?? ""));
const plain = (o: Output) => {
  const v = o.data?.["text/plain"];
  return Array.isArray(v) ? v.join("") : String(v ?? "");
};
const html = (o: Output) => {
  const v = o.data?.["text/html"];
  return Array.isArray(v) ? v.join("") : String(v ?? "");
};

test("esmkit kernel: nbconvert runs a notebook whose figures, progress and live chart are real MIME bundles", async (t) => {
  if (!jupyterOrSkip(t)) return;
  const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-kernel-"));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const prefix = path.join(tmp, "prefix");
  const code = await kernelCommand.run([
    "install",
    "--prefix",
    prefix,
    "--backend",
    "cpu",
    "--threads",
    "2",
  ]);
  assert.equal(code, 0);
  const inPrefix = () => listKernels({ prefix, env: {} }).filter((k) => k.dir.startsWith(prefix));
  const [installed] = inPrefix();
  assert.equal(installed?.name, "esmkit");
  assert.deepEqual(installed?.problems, []);

  // A folder with no node_modules: esmkit must come from the kernel spec alone.
  const nbDir = path.join(tmp, "notebooks");
  mkdirSync(nbDir);
  const input = path.join(nbDir, "check.ipynb");
  writeFileSync(
    input,
    JSON.stringify(
      notebook([
        'const { display } = require("esmkit/build/src/display");\ndisplay.plotly({ data: [{ x: [1, 2], y: [3, 4], type: "scatter" }] });',
        // Typed imports resolve too (tslab type-checks cells): a wrong type would fail the cell.
        'import { ESM2_VOCAB } from "esmkit";\nimport { lossChart } from "esmkit/build/src/display";\nconst vocab: number = ESM2_VOCAB.length;\ndisplay.plotly(lossChart([{ type: "step", step: 1, loss: 0.7 }]));\nconsole.log("vocab", vocab, process.env.ESMKIT_BACKEND, process.env.ESMKIT_THREADS);',
        'const bar = display.progress("tokenize", 10, { throttleMs: 0 });\nfor (let i = 1; i <= 10; i++) bar.update(i);\nbar.finish("ok");',
        // A variable typed by one of esmkit's dependencies (a polars DataFrame), which the
        // notebook folder does not install: tslab's declaration emit must be able to name it.
        'import { classBalance } from "esmkit";\nconst { pl: polars } = require("esmkit");\nconst balance = classBalance({ train: polars.DataFrame({ label: [0, 1, 1] }), test: polars.DataFrame({ label: [0] }) });\nconsole.log("balance rows", balance.height);',
        'const chart = display.liveChart({ throttleMs: 0 });\nchart.push({ type: "start", totalSteps: 5 });\nfor (let s = 1; s <= 5; s++) chart.push({ type: "step", step: s, loss: 1 / s, lr: 1e-4, epoch: s / 5 });\nchart.push({ type: "eval", step: 5, epoch: 1, metrics: { loss: 0.3, accuracy: 0.9, f1: 0.8 } });\nchart.finish();',
      ]),
    ),
  );
  const r = spawnSync(
    JUPYTER,
    [
      "nbconvert",
      "--to",
      "notebook",
      "--execute",
      "--ExecutePreprocessor.kernel_name=esmkit",
      "--ExecutePreprocessor.timeout=120",
      "--output",
      "executed.ipynb",
      input,
    ],
    {
      encoding: "utf8",
      cwd: nbDir,
      env: { ...process.env, JUPYTER_PATH: path.join(prefix, "share", "jupyter") },
      timeout: 180_000,
    },
  );
  assert.equal(r.status, 0, `nbconvert failed:\n${r.stderr}`);
  const executed = JSON.parse(readFileSync(path.join(nbDir, "executed.ipynb"), "utf8"));
  const outputs: Output[][] = executed.cells.map((c: { outputs: Output[] }) => c.outputs);
  for (const [i, outs] of outputs.entries()) {
    const errors = outs.filter((o) => o.output_type === "error" || o.name === "stderr");
    assert.deepEqual(errors, [], `cell ${i} wrote errors: ${errors.map(text).join("")}`);
  }

  // Cell 0: one display_data with the plotly JSON as an object and plotly.js carried.
  const [fig] = outputs[0]!;
  assert.equal(fig?.output_type, "display_data");
  const plotly = fig!.data!["application/vnd.plotly.v1+json"] as {
    data: { x: number[]; y: number[] }[];
  };
  assert.equal(typeof plotly, "object");
  assert.deepEqual(plotly.data[0], { x: [1, 2], y: [3, 4], type: "scatter" });
  assert.match(html(fig!), /data-esmkit-plotlyjs="4\.1\.2"/);
  assert.match(html(fig!), /<div id="esmkit-plotly-[^"]+" class="esmkit-plotly"/);
  assert.match(html(fig!), /Plotly\.newPlot/);
  assert.equal(plain(fig!), "Plotly figure: 1 trace (scatter)");

  // Cell 1: typed imports worked; a figure of another cell run carries plotly.js too
  // (the first of each run does: JupyterLab replaces a cell's outputs together).
  const fig2 = outputs[1]!.find((o) => o.output_type === "display_data")!;
  assert.match(html(fig2), /data-esmkit-plotlyjs/);
  const log = outputs[1]!
    .filter((o) => o.name === "stdout")
    .map(text)
    .join("");
  assert.equal(log.trim(), "vocab 33 cpu 2");

  // Cell 2: the progress bar's updates replaced one output in place.
  assert.equal(outputs[2]!.length, 1);
  assert.match(plain(outputs[2]![0]!), /^tokenize 100% 10\/10 done in [\d.]+s ok$/);
  assert.match(html(outputs[2]![0]!), /<progress value="10" max="10"/);

  // Cell 3: the polars frame's type could be named (TS2742 otherwise) and it ran.
  assert.equal(outputs[3]!.map(text).join("").trim(), "balance rows 3");

  // Cell 4: the live chart: plotly.js, the progress bar and the chart, the last two
  // updated in place to their final state.
  assert.equal(outputs[4]!.length, 3);
  assert.match(html(outputs[4]![0]!), /data-esmkit-plotlyjs/);
  assert.match(plain(outputs[4]![1]!), /^Training 100% 5\/5 done in [\d.]+s epoch 1\.00/);
  const live = outputs[4]![2]!.data!["application/vnd.plotly.v1+json"] as {
    data: { name: string; x: number[]; y: number[] }[];
  };
  const byName = Object.fromEntries(live.data.map((tr) => [tr.name, tr]));
  assert.deepEqual(byName["train loss"]!.x, [1, 2, 3, 4, 5]);
  assert.deepEqual(byName["eval loss"]!.y, [0.3]);
  assert.deepEqual(byName.accuracy!.y, [0.9]);

  assert.equal(await kernelCommand.run(["uninstall", "--prefix", prefix]), 0);
  assert.deepEqual(inPrefix(), []);
});
