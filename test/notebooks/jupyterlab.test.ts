/**
 * The notebooks in a live JupyterLab 4 page, as a user runs them (part of
 * `npm run test:notebooks`):
 *
 * 1. `jupyter lab` from the test virtualenv serves copies of the notebooks (in a folder
 *    with no node_modules) with the esmkit kernel installed into a temporary prefix;
 *    headless Chromium (Debian's, driven by playwright-core) opens it.
 * 2. "Run All Cells" on each notebook at CI sizes, notebook 01 twice in the same kernel
 *    (a re-run must not leave charts depending on outputs it replaced); no cell may fail
 *    or write to stderr. While notebook 02 trains, the live chart and the progress bar
 *    are sampled: both must show intermediate states, and the chart must end with one
 *    point per optimizer step. Then "Save".
 * 3. Reload the page: every chart output of every notebook must be drawn (plotly's
 *    `.main-svg`) at its set height, notebook 03's slanted protein names must fit in
 *    the figure clear of the axis title, and no output may say that plotly.js is
 *    missing.
 * 4. An untrusted copy of notebook 02 (changed on disk, so its signature no longer
 *    matches): JupyterLab runs no script there, so the HTML fallback must say why.
 *
 * All of it twice: with JupyterLab alone (charts drawn by esmkit's HTML fallback) and
 * with the jupyterlab-plotly renderer of the `plotly` package (.ci/run installs it into
 * `.venv/jupyterlab-plotly`; its labextension is put on JUPYTER_PATH), which draws
 * `application/vnd.plotly.v1+json` itself, untrusted notebooks included.
 *
 * Needs `.venv/bin/jupyter-lab`, that labextension and Chromium: skipped without them on
 * a developer machine, a failure under CI. Screenshots go to out/screenshots/.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { type TestContext, test } from "node:test";
import type { Page } from "playwright-core";
import { NOT_RUN_NOTE } from "../../src/display/plotly";
import { CHROMIUM_HINT, findChromium, launchChromium, needs } from "../helpers/browser";
import { REPO_ROOT } from "../helpers/python";
import { NOTEBOOKS, PLOTLY_MIME, SCREENSHOTS, smallSizes, VENV_BIN } from "./common";
import { installProbe, type LabServer, openLab, probe, startLab } from "./lab";

const JUPYTER = path.join(VENV_BIN, "jupyter");
/** Where .ci/run installs the `plotly` package (for its labextension only). */
const PLOTLY_TARGET =
  process.env.ESMKIT_PLOTLY_TARGET ?? path.join(REPO_ROOT, ".venv", "jupyterlab-plotly");
const PLOTLY_LABEXTENSION = path.join(
  PLOTLY_TARGET,
  "share",
  "jupyter",
  "labextensions",
  "jupyterlab-plotly",
);
const LIVE_TITLE = "LoRA fine-tuning";

type Renderer = "html" | "jupyterlab-plotly";

interface Chart {
  renderer: Renderer;
  drawn: boolean;
  snapshot: boolean;
  title: string | null;
  note: string;
  height: number;
}

interface Box {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SavedOutput {
  output_type: string;
  data?: Record<string, unknown>;
}
interface SavedNotebook {
  cells: { cell_type: string; outputs?: SavedOutput[] }[];
  metadata: Record<string, unknown>;
}

function readNotebook(file: string): SavedNotebook {
  return JSON.parse(readFileSync(file, "utf8")) as SavedNotebook;
}

/** The figures a saved notebook holds (outputs with the plotly MIME type). */
function savedFigures(nb: SavedNotebook): Record<string, unknown>[] {
  return nb.cells
    .flatMap((c) => c.outputs ?? [])
    .filter((o) => o.data && PLOTLY_MIME in o.data)
    .map((o) => o.data![PLOTLY_MIME] as Record<string, unknown>);
}

/** "Run All Cells", calling `sample` every 250 ms until it ends. */
async function runAll(page: Page, sample?: () => Promise<void>) {
  await probe(page, "startRunAll");
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    const state = await probe<{ done: boolean; ok: boolean; error: string | null }>(
      page,
      "runState",
    );
    if (state.done) return state;
    assert.ok(Date.now() < deadline, "Run All Cells did not finish in 15 minutes");
    if (sample) await sample();
    await sleep(250);
  }
}

/**
 * The charts of the current notebook once `expected` are there and settled: drawn, or
 * showing a note, or (jupyterlab-plotly) its PNG snapshot, which a hover turns back
 * into the live figure.
 */
async function settledCharts(page: Page, expected: number): Promise<Chart[]> {
  const deadline = Date.now() + 60_000;
  let charts: Chart[] = [];
  for (;;) {
    charts = await probe<Chart[]>(page, "charts");
    const settled = charts.every((c) => c.drawn || c.snapshot || c.note.length > 0);
    if (charts.length >= expected && settled) break;
    if (Date.now() > deadline) return charts;
    await sleep(250);
  }
  // jupyterlab-plotly shows the PNG it saved in the output until the pointer enters it.
  const panel = await probe<string>(page, "panelId");
  for (const [i, c] of charts.entries()) {
    if (c.drawn || !c.snapshot) continue;
    const nth = charts.slice(0, i).filter((x) => x.renderer === "jupyterlab-plotly").length;
    const output = page.locator(`[id="${panel}"] .jp-RenderedPlotly`).nth(nth);
    const drawn = async () => (await probe<Chart[]>(page, "charts"))[i]?.drawn;
    for (let attempt = 0; attempt < 3 && !(await drawn()); attempt++) {
      // Scrolled out of view, the output has no box (content-visibility), so no hover.
      await output.evaluate((el) => el.scrollIntoView({ block: "center" }));
      // (The figure may replace the image while the pointer moves: drawn() decides.)
      await output
        .locator("img.plot-img")
        .hover({ force: true, timeout: 5_000 })
        .catch(() => undefined);
      for (let k = 0; k < 50 && !(await drawn()); k++) await sleep(100);
      await page.mouse.move(0, 0);
    }
  }
  return probe<Chart[]>(page, "charts");
}

const overlap = (a: Box, b: Box) =>
  a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;

/** Copy the notebooks and the data files they read into a served folder. */
function workspace(root: string): void {
  mkdirSync(path.join(root, "notebooks"), { recursive: true });
  mkdirSync(path.join(root, "data"));
  for (const f of readdirSync(NOTEBOOKS).filter((f) => f.endsWith(".ipynb"))) {
    copyFileSync(path.join(NOTEBOOKS, f), path.join(root, "notebooks", f));
  }
  for (const f of ["deeploc-sample.csv", "known-proteins.fasta"]) {
    copyFileSync(path.join(REPO_ROOT, "data", f), path.join(root, "data", f));
  }
}

const shotPath = (name: string) => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return path.join(SCREENSHOTS, `jupyterlab-${name}.png`);
};

/** Screenshots of the current notebook's chart outputs. */
async function shoot(page: Page, name: string): Promise<void> {
  const panel = `[id="${await probe<string>(page, "panelId")}"]`;
  const charts = page
    .locator(`${panel} .jp-OutputArea-output`)
    .filter({ has: page.locator(".main-svg, .esmkit-plotly") });
  const n = await charts.count();
  for (let i = 0; i < n; i++) {
    const el = charts.nth(i);
    await el.evaluate((node) => node.scrollIntoView({ block: "start" }));
    await el.screenshot({ path: shotPath(n === 1 ? name : `${name}-${i + 1}`) });
  }
}

/** The progress bar and the live chart under it, in one picture (docs/). */
async function shootLiveChart(page: Page, name: string): Promise<void> {
  const panel = `[id="${await probe<string>(page, "panelId")}"]`;
  const bar = page.locator(`${panel} .jp-OutputArea-child`).filter({
    has: page.locator(".esmkit-progress"),
  });
  await bar.evaluate((node) => node.scrollIntoView({ block: "start" }));
  const chart = page
    .locator(`${panel} .jp-OutputArea-child`)
    .filter({ has: page.locator(".main-svg") })
    .filter({ hasText: LIVE_TITLE });
  const [a, b] = [await bar.boundingBox(), await chart.first().boundingBox()];
  if (!a || !b) return;
  const clip = { x: a.x, y: a.y, width: Math.max(a.width, b.width), height: b.y + b.height - a.y };
  await page.screenshot({ path: shotPath(name), clip });
}

/** One renderer: run, save, reload and check the three notebooks. */
async function labPass(
  t: TestContext,
  options: { renderer: Renderer; tmp: string; jupyterPath: string[]; chromium: string },
): Promise<string[]> {
  const { renderer, tmp } = options;
  const timings: string[] = [];
  const clock = (what: string, since: number) => {
    timings.push(`${what} ${((Date.now() - since) / 1000).toFixed(0)} s`);
    t.diagnostic(timings.at(-1)!);
  };
  const root = path.join(tmp, renderer, "work");
  workspace(root);
  const notebooks = readdirSync(path.join(root, "notebooks")).sort();
  assert.ok(notebooks.length >= 3, `notebooks: ${notebooks}`);

  let started = Date.now();
  const lab: LabServer = await startLab({
    jupyter: JUPYTER,
    root,
    home: path.join(tmp, renderer, "home"),
    env: {
      ...process.env,
      ...smallSizes(),
      ESMKIT_NB_OUT: path.join(root, "out"),
      JUPYTER_PATH: [...options.jupyterPath, process.env.JUPYTER_PATH]
        .filter(Boolean)
        .join(path.delimiter),
    },
  });
  t.after(() => lab.stop());
  const browser = await launchChromium(options.chromium);
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await installProbe(page);
  await openLab(page, lab, "lab?reset");
  clock("start", started);
  const failed = (what: string) =>
    `${what}\npage errors: ${pageErrors.join("\n")}\nserver log (end):\n${lab.log().slice(-3000)}`;

  const live = { points: [] as number[], bars: [] as string[] };
  for (const nb of notebooks) {
    started = Date.now();
    const file = `notebooks/${nb}`;
    const opened = await probe<{ kernel: string; status: string }>(page, "open", file);
    assert.equal(opened.kernel, "esmkit", failed(`${nb}: kernel ${opened.kernel}`));
    assert.equal(opened.status, "idle", failed(`${nb}: kernel ${opened.status}`));
    // 01 twice in one kernel: the second run must carry plotly.js again (issue 12, item 14).
    for (let run = 0; run < (nb.startsWith("01") ? 2 : 1); run++) {
      const sample = nb.startsWith("02")
        ? async () => {
            const points = await probe<number[]>(page, "trainLossPoints", LIVE_TITLE);
            if (points.length === 1) live.points.push(points[0]!);
            const bars = await probe<string[]>(page, "progressBars");
            if (bars.length === 1) live.bars.push(bars[0]!);
          }
        : undefined;
      const result = await runAll(page, sample);
      assert.equal(result.ok, true, failed(`${nb}: Run All Cells ended ${JSON.stringify(result)}`));
    }
    assert.deepEqual(await probe<string[]>(page, "problems"), [], `${nb}: cells failed`);
    assert.equal(await probe<boolean>(page, "save"), true, `${nb} was not saved`);
    clock(nb, started);
    if (nb.startsWith("03")) await shoot(page, `${renderer}-03-run`);
  }

  // What the user sees, each defect on its own line (all of them reported, not the first).
  const findings: string[] = [];
  const expect = (ok: unknown, what: string) => {
    if (!ok) findings.push(what);
  };

  // The live chart gained points while training, and ended with one per step.
  const saved02 = readNotebook(path.join(root, "notebooks", "02-fine-tune-lora.ipynb"));
  const liveFigure = savedFigures(saved02).find((f) =>
    String((f.layout as { title?: { text?: string } }).title?.text).startsWith(LIVE_TITLE),
  ) as { data: { name: string; x: number[] }[] } | undefined;
  assert.ok(liveFigure, "02 saved no live chart");
  const steps = liveFigure.data.find((tr) => tr.name === "train loss")!.x.length;
  assert.ok(steps >= 2, `${steps} steps`);
  const seen = [...new Set(live.points)];
  t.diagnostic(`live chart: train loss points seen while training ${JSON.stringify(seen)}`);
  expect(
    seen.some((n) => n > 0 && n < steps) && live.points.at(-1) === steps,
    `live chart: train loss points seen while training ${JSON.stringify(seen)}; wanted some between 0 and ${steps}, then ${steps}`,
  );
  const bars = [...new Set(live.bars)];
  expect(
    bars.some(
      (b) => new RegExp(`\\b[1-9]\\d*/${steps}\\b`).test(b) && !b.includes(`${steps}/${steps}`),
    ),
    `progress bar: never showed a step short of ${steps}: ${JSON.stringify(bars)}`,
  );

  // Load the page anew: every saved chart is drawn again from the saved outputs alone.
  // (With ?reset: a plain reload reopens the tabs and, from the URL, activates the last
  // notebook at some later moment, racing the test's own tab switches.)
  started = Date.now();
  await openLab(page, lab, "lab?reset");
  for (const nb of notebooks) {
    const file = `notebooks/${nb}`;
    const opened = await probe<{ trusted: boolean[] }>(page, "open", file);
    assert.ok(opened.trusted.every(Boolean), `${nb} is not trusted after save and reload`);
    const expected = savedFigures(readNotebook(path.join(root, file))).length;
    assert.ok(expected > 0, `${nb} saved no chart`);
    const charts = await settledCharts(page, expected);
    expect(
      charts.length === expected,
      `${nb}: ${charts.length} chart outputs for ${expected} saved figures`,
    );
    for (const c of charts) {
      const name = `${nb}, chart "${c.title}"`;
      expect(c.drawn, `${name}: not drawn after reload${c.note ? `; it says: ${c.note}` : ""}`);
      expect(c.renderer === renderer, `${name}: drawn by ${c.renderer}`);
      // Set heights: jupyterlab-plotly would otherwise draw 360 px (issue 12, item 16).
      expect(!c.drawn || c.height >= 400, `${name}: ${c.height} px high`);
    }
    if (nb.startsWith("03")) {
      const boxes = await probe<{ figure: Box; ticks: Box[]; title: Box } | null>(
        page,
        "xAxisBoxes",
        "Predicted membrane probability",
      );
      const sized = boxes?.ticks.every((b) => b.right > b.left) && boxes.title.right > 0;
      expect(boxes?.ticks.length === 6 && sized, `03: x axis boxes ${JSON.stringify(boxes)}`);
      if (boxes && sized) {
        const cut = boxes.ticks.filter((b) => b.bottom > boxes.figure.bottom + 0.5).length;
        const hit = boxes.ticks.filter((b) => overlap(b, boxes.title)).length;
        expect(cut === 0, `03: ${cut} of 6 protein names cut off at the bottom of the figure`);
        expect(hit === 0, `03: ${hit} of 6 protein names overlap the x axis title`);
      }
    }
    await shoot(page, `${renderer}-${nb.replace(/\.ipynb$/, "")}-reloaded`);
    if (nb.startsWith("02")) await shootLiveChart(page, `${renderer}-02-live-chart`);
  }
  clock("reload and checks", started);

  // An untrusted copy: no script runs, so only jupyterlab-plotly can draw.
  const copy = readNotebook(path.join(root, "notebooks", "02-fine-tune-lora.ipynb"));
  copy.metadata.esmkit_test = "changed on disk, so the signature no longer matches";
  writeFileSync(path.join(root, "notebooks", "02-untrusted.ipynb"), JSON.stringify(copy));
  const opened = await probe<{ trusted: boolean[] }>(page, "open", "notebooks/02-untrusted.ipynb");
  assert.ok(!opened.trusted.some(Boolean), "the changed copy is still trusted");
  const charts = await settledCharts(page, savedFigures(copy).length);
  expect(charts.length === savedFigures(copy).length, `untrusted: ${charts.length} charts`);
  for (const c of charts) {
    if (renderer === "html") {
      expect(
        c.note === NOT_RUN_NOTE,
        `untrusted 02: a chart says "${c.note}", not why it is blank`,
      );
    } else expect(c.drawn, `untrusted 02: "${c.title}" not drawn by jupyterlab-plotly`);
  }
  await shoot(page, `${renderer}-02-untrusted`);
  assert.deepEqual(findings, [], `${renderer}: what the page showed`);
  return timings;
}

test("notebooks in a live JupyterLab: run, save, reload; charts drawn by both renderers", async (t) => {
  const chromium = findChromium();
  const lab = path.join(VENV_BIN, "jupyter-lab");
  if (!needs(t, existsSync(lab), `${lab} missing (.ci/run installs jupyterlab into .venv)`)) {
    return;
  }
  if (!needs(t, chromium, CHROMIUM_HINT)) return;
  const plotlyHint = `${PLOTLY_LABEXTENSION} missing (.ci/run installs plotly there)`;
  if (!needs(t, existsSync(PLOTLY_LABEXTENSION), plotlyHint)) return;

  const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-jupyterlab-"));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const prefix = path.join(tmp, "prefix");
  const install = spawnSync(
    process.execPath,
    [path.join(REPO_ROOT, "bin", "esmkit.js"), "kernel", "install", "--prefix", prefix],
    { encoding: "utf8", timeout: 60_000 },
  );
  assert.equal(install.status, 0, install.stderr);
  const kernels = path.join(prefix, "share", "jupyter");
  const timings: string[] = [];

  await t.test("JupyterLab alone: esmkit's HTML fallback draws", async (st) => {
    const took = await labPass(st, {
      renderer: "html",
      tmp,
      jupyterPath: [kernels],
      chromium: chromium!,
    });
    timings.push(`html: ${took.join(", ")}`);
  });

  await t.test("with the jupyterlab-plotly renderer (plotly package)", async (st) => {
    const took = await labPass(st, {
      renderer: "jupyterlab-plotly",
      tmp,
      jupyterPath: [kernels, path.join(PLOTLY_TARGET, "share", "jupyter")],
      chromium: chromium!,
    });
    timings.push(`jupyterlab-plotly: ${took.join(", ")}`);
  });
  t.diagnostic(timings.join("; "));
  t.diagnostic(`screenshots in ${path.relative(REPO_ROOT, SCREENSHOTS)}/`);
});
