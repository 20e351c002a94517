/**
 * `npm run test:notebooks`: the notebooks in notebooks/ as a user runs them.
 *
 * 1. `esmkit kernel install --prefix <tmp>`, then every notebook executed in order by
 *    `jupyter nbconvert --execute` on that kernel, small: the `ESMKIT_NB_*` variables
 *    that the `parameters` cells read (one already set in the environment wins, e.g.
 *    for a longer run). A cell error fails (nbconvert's exit status, and `error`
 *    outputs); every plotly bundle must hold its figure as a JSON object.
 * 2. The executed notebooks converted to HTML and opened in headless Chromium: every
 *    figure must have been drawn (`main-svg` elements), and a screenshot of each page
 *    plus one of the loss chart alone go to out/screenshots/ (ignored by git).
 *
 * Needs `.venv/bin/jupyter` (nbconvert) and Chromium (`chromium`, or `$CHROMIUM`):
 * skipped without them on a developer machine, a failure under CI.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import {
  CHROMIUM_FLAGS as BASE_FLAGS,
  CHROMIUM_HINT,
  findChromium,
  needs,
} from "../helpers/browser";
import { REPO_ROOT } from "../helpers/python";
import { NOTEBOOKS, PLOTLY_MIME, SCREENSHOTS, smallSizes, VENV_BIN } from "./common";

const JUPYTER = path.join(VENV_BIN, "jupyter");

/** Chromium run once per page: the DOM after plotly has drawn, or a screenshot. */
const CHROMIUM_FLAGS = [
  ...BASE_FLAGS,
  // Run timers in virtual time, so that plotly has drawn before the DOM is read.
  "--virtual-time-budget=10000",
];

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  ename?: string;
  evalue?: string;
  data?: Record<string, unknown>;
}
interface Cell {
  cell_type: string;
  source: string | string[];
  outputs?: Output[];
}

const joined = (v: unknown) => (Array.isArray(v) ? v.join("") : String(v ?? ""));

function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs: number }) {
  const started = Date.now();
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    env: options.env ?? process.env,
    timeout: options.timeoutMs,
    maxBuffer: 256 * 1024 * 1024,
  });
  const seconds = (Date.now() - started) / 1000;
  const tail = (s: string | null) => (s ?? "").split("\n").slice(-40).join("\n");
  const what = `${path.basename(cmd)} ${args.join(" ")}`;
  assert.ifError(r.error);
  assert.equal(
    r.status,
    0,
    `${what} exited ${r.status} after ${seconds.toFixed(0)} s:\n${tail(r.stderr)}`,
  );
  return { stdout: r.stdout, seconds };
}

/** Figures in an executed notebook, after checking that no cell failed. */
function checkExecuted(file: string) {
  const nb = JSON.parse(readFileSync(file, "utf8")) as { cells: Cell[] };
  const name = path.basename(file);
  const outputs = nb.cells.flatMap((c, i) => (c.outputs ?? []).map((o) => ({ cell: i, o })));
  const errors = outputs.filter(({ o }) => o.output_type === "error");
  assert.deepEqual(
    errors.map(({ cell, o }) => `cell ${cell}: ${o.ename}: ${o.evalue}`),
    [],
    `${name} has cell errors`,
  );
  const figures = outputs.filter(({ o }) => o.data && PLOTLY_MIME in o.data);
  assert.ok(figures.length > 0, `${name} shows no plotly figure`);
  for (const { cell, o } of figures) {
    const fig = o.data![PLOTLY_MIME] as { data?: unknown; layout?: { title?: { text?: string } } };
    assert.ok(
      fig !== null && typeof fig === "object" && !Array.isArray(fig),
      `${name} cell ${cell}: ${PLOTLY_MIME} is a ${typeof fig}, not an object`,
    );
    assert.ok(Array.isArray(fig.data), `${name} cell ${cell}: the figure has no data array`);
    assert.match(joined(o.data!["text/html"]), /Plotly\.newPlot/, `${name} cell ${cell}`);
  }
  const stdout = outputs
    .filter(({ o }) => o.output_type === "stream" && o.name === "stdout")
    .map(({ o }) => joined(o.text))
    .join("");
  return { nb, outputs: outputs.map(({ o }) => o), figures: figures.map(({ o }) => o), stdout };
}

const titleOf = (o: Output) =>
  String((o.data![PLOTLY_MIME] as { layout?: { title?: { text?: string } } }).layout?.title?.text);

test("notebooks run on the esmkit kernel under nbconvert and their charts render in Chromium", async (t) => {
  if (
    !needs(t, existsSync(JUPYTER), `${JUPYTER} missing (.ci/run installs nbconvert into .venv)`)
  ) {
    return;
  }
  const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-notebooks-"));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const prefix = path.join(tmp, "prefix");
  const executed = path.join(tmp, "executed");
  const timings: string[] = [];

  const install = run(
    process.execPath,
    [path.join(REPO_ROOT, "bin", "esmkit.js"), "kernel", "install", "--prefix", prefix],
    { timeoutMs: 60_000 },
  );
  timings.push(`kernel install ${install.seconds.toFixed(1)} s`);
  const small = smallSizes();
  const jupyterPath = [path.join(prefix, "share", "jupyter"), process.env.JUPYTER_PATH];
  const env = {
    ...process.env,
    ...small,
    ESMKIT_NB_OUT: path.join(tmp, "out"),
    JUPYTER_PATH: jupyterPath.filter(Boolean).join(path.delimiter),
  };

  const notebooks = readdirSync(NOTEBOOKS)
    .filter((f) => f.endsWith(".ipynb"))
    .sort();
  assert.ok(notebooks.length >= 3, `notebooks: ${notebooks.join(", ")}`);
  const results = new Map<string, ReturnType<typeof checkExecuted>>();
  // In order: 02 reads 01's data, 03 serves 02's model (each also runs alone).
  for (const file of notebooks) {
    await t.test(`executes ${file}`, () => {
      const r = run(
        JUPYTER,
        [
          "nbconvert",
          "--to",
          "notebook",
          "--execute",
          "--ExecutePreprocessor.kernel_name=esmkit",
          "--ExecutePreprocessor.timeout=600",
          "--output-dir",
          executed,
          path.join(NOTEBOOKS, file),
        ],
        { env, timeoutMs: 15 * 60_000 },
      );
      timings.push(`${file} ${r.seconds.toFixed(1)} s`);
      results.set(file, checkExecuted(path.join(executed, file)));
    });
  }

  await t.test("the fine-tuning notebook trains, says which weights it used, and charts it", () => {
    const r = results.get("02-fine-tune-lora.ipynb");
    assert.ok(r, "02-fine-tune-lora.ipynb did not run");
    assert.match(r.stdout, /^(RANDOM WEIGHTS: .* could not be loaded|Pretrained weights: )/m);
    // The progress bar above the live chart, updated in place to its final state.
    const bars = r.outputs
      .map((o) => joined(o.data?.["text/plain"]))
      .filter((text) => text.startsWith("LoRA fine-tuning "));
    assert.equal(bars.length, 1, `progress bars: ${bars}`);
    assert.match(bars[0]!, /^LoRA fine-tuning 100% (\d+)\/\1 done in [\d.]+s epoch /);
    const titles = r.figures.map(titleOf);
    for (const want of [/^LoRA fine-tuning: step \d+/, /^Loss$/, /^Evaluation metrics$/]) {
      assert.ok(
        titles.some((x) => want.test(x)),
        `no figure titled ${want} in ${titles}`,
      );
    }
    assert.ok(titles.includes("Confusion matrix") && titles.includes("ROC curve"), `${titles}`);
    const loss = r.figures.find((o) => titleOf(o) === "Loss")!.data![PLOTLY_MIME] as {
      data: { name: string; y: number[] }[];
    };
    const trainLoss = loss.data.find((tr) => tr.name === "train loss")!;
    assert.ok(trainLoss.y.length >= 2 && trainLoss.y.every(Number.isFinite), `${trainLoss.y}`);
  });

  await t.test("the deploy notebook got six predictions from the endpoint", () => {
    const r = results.get("03-deploy-and-predict.ipynb");
    assert.ok(r, "03-deploy-and-predict.ipynb did not run");
    assert.match(r.stdout, /GET \/ping -> 200/);
    assert.match(r.stdout, /HTTP 200, 6 predictions/);
    assert.match(r.stdout, /server closed/);
    const chart = r.figures.find((o) => titleOf(o) === "Predicted membrane probability");
    assert.ok(chart, "no membrane probability chart");
    const bars = (chart.data![PLOTLY_MIME] as { data: { y: number[] }[] }).data;
    assert.equal(bars.flatMap((b) => b.y).length, 6);
  });

  await t.test("the multi-label notebook trains ten locations and charts them", () => {
    const r = results.get("04-multi-label-locations.ipynb");
    assert.ok(r, "04-multi-label-locations.ipynb did not run");
    assert.match(r.stdout, /^multi_label_classification: 10 labels; train \d+, test \d+ proteins/m);
    assert.match(r.stdout, /^(RANDOM WEIGHTS: .* could not be loaded|Pretrained weights: )/m);
    assert.match(r.stdout, /optimizer steps; task multi_label_classification \(10 labels\)/);
    const figure = (title: RegExp) => {
      const o = r.figures.find((f) => title.test(titleOf(f)));
      assert.ok(o, `no figure titled ${title} in ${r.figures.map(titleOf)}`);
      return o.data![PLOTLY_MIME] as {
        data: { name?: string; x?: unknown[]; y?: number[]; z?: number[][] }[];
      };
    };
    const live = figure(/^Multi-label fine-tuning: step \d+/);
    const trainLoss = live.data.find((tr) => tr.name === "train loss")!;
    assert.ok(trainLoss.y!.length >= 2 && trainLoss.y!.every(Number.isFinite), `${trainLoss.y}`);
    assert.ok(
      live.data.some((tr) => tr.name === "meanMcc"),
      "no mean MCC in the live chart",
    );
    const balance = figure(/^Positive proteins per label and split$/);
    assert.deepEqual(
      balance.data.map((tr) => tr.x!.length),
      [10, 10],
    );
    const mcc = figure(/^MCC per location$/).data[0]!;
    assert.equal(mcc.y!.length, 10);
    assert.ok(
      mcc.y!.every((v) => v >= -1 && v <= 1),
      `${mcc.y}`,
    );
    const heat = figure(/^Known proteins: probability per location/).data[0]!;
    assert.equal(heat.z!.length, 6);
    assert.ok(heat.z!.every((row) => row.length === 10 && row.every((p) => p >= 0 && p <= 1)));
    const scatter = figure(/^Test proteins' embeddings \(PCA/);
    const points = scatter.data.reduce((n, tr) => n + tr.x!.length, 0);
    const testRows = Number(/test (\d+) proteins/.exec(r.stdout)![1]);
    const asked = Number((env as NodeJS.ProcessEnv).ESMKIT_NB_EVAL_EXAMPLES ?? 128);
    assert.equal(points, Math.min(asked, testRows));
  });

  await t.test("HTML exports render every chart in headless Chromium", (st) => {
    const chromium = findChromium();
    if (!needs(st, chromium, CHROMIUM_HINT)) return;
    const ran = notebooks.filter((f) => results.has(f));
    assert.ok(ran.length > 0, "no notebook ran");
    const html = path.join(tmp, "html");
    const convert = run(
      JUPYTER,
      [
        "nbconvert",
        "--to",
        "html",
        "--output-dir",
        html,
        ...ran.map((f) => path.join(executed, f)),
      ],
      { env, timeoutMs: 120_000 },
    );
    timings.push(`HTML export ${convert.seconds.toFixed(1)} s`);
    mkdirSync(SCREENSHOTS, { recursive: true });

    let browser = 0;
    const open = (page: string, action: string[]) => {
      const profile = mkdtempSync(path.join(tmp, "chromium-profile-"));
      const r = run(
        chromium!,
        [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, ...action, pathToFileURL(page).href],
        { timeoutMs: 120_000 },
      );
      browser += r.seconds;
      return r.stdout;
    };
    const drawn = (dom: string) => ({
      plots: dom.match(/class="[^"]*\bjs-plotly-plot\b/g)?.length ?? 0,
      svgs: dom.match(/class="main-svg"/g)?.length ?? 0,
    });

    for (const file of ran) {
      const page = path.join(html, file.replace(/\.ipynb$/, ".html"));
      const expected = results.get(file)!.figures.length;
      const dom = open(page, ["--dump-dom"]);
      const { plots, svgs } = drawn(dom);
      // (not assert.match: the message would hold the whole page)
      const missing = /class="esmkit-plotly"[^>]*>(plotly\.js is not loaded|Chart not drawn)/.test(
        dom,
      );
      assert.ok(!missing, `${file}: a figure found no plotly.js in the page`);
      assert.equal(plots, expected, `${file}: ${plots} of ${expected} figures drawn`);
      assert.ok(svgs >= expected, `${file}: ${svgs} main-svg elements for ${expected} figures`);
      const shot = path.join(SCREENSHOTS, file.replace(/\.ipynb$/, ".png"));
      open(page, [`--screenshot=${shot}`, "--window-size=1200,2000"]);
      assert.ok(statSync(shot).size > 10_000, `${shot} is nearly empty`);
    }

    // The loss chart on a page of its own, for docs/loss-chart.png: its output alone
    // draws it (it carries plotly.js, being the first chart of its cell).
    const fine = results.get("02-fine-tune-lora.ipynb");
    if (fine) {
      const loss = fine.figures.find((o) => titleOf(o) === "Loss");
      assert.ok(loss, "02 lacks the loss chart");
      const page = path.join(html, "loss-chart.html");
      writeFileSync(
        page,
        `<!doctype html><html><head><meta charset="utf-8"><style>body{margin:0;background:#fff}</style></head><body>${joined(
          loss.data!["text/html"],
        )}</body></html>`,
      );
      assert.equal(drawn(open(page, ["--dump-dom"])).plots, 1, "loss chart not drawn");
      const shot = path.join(SCREENSHOTS, "loss-chart.png");
      open(page, [`--screenshot=${shot}`, "--window-size=900,450"]);
      assert.ok(statSync(shot).size > 5_000, `${shot} is nearly empty`);
    }
    timings.push(`Chromium ${browser.toFixed(1)} s`);
    st.diagnostic(`screenshots in ${path.relative(REPO_ROOT, SCREENSHOTS)}/`);
  });
  t.diagnostic(timings.join(", "));
});
