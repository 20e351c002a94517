import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { pl } from "../../src/data/frame";
import {
  type DisplayMessage,
  type DisplaySink,
  display,
  PLOTLY_MIME,
  setDisplaySink,
} from "../../src/display";
import { NOT_RUN_NOTE, plotlyJsPayload, plotlyJsSource } from "../../src/display/plotly";
import { currentSink } from "../../src/display/sink";

interface Sent {
  message: DisplayMessage;
  update: boolean;
}

/** A jupyter sink recording every message, as tslab's writer would send them. */
function jupyterSink(): { sink: DisplaySink; sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    sink: { kind: "jupyter", write: (message, update) => sent.push({ message, update }) },
    sent,
  };
}

function terminalSink(): { sink: DisplaySink; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    sink: {
      kind: "terminal",
      out: { write: (s: string) => out.push(s) },
      err: { write: (s: string) => err.push(s), isTTY: false },
    },
    out,
    err,
  };
}

afterEach(() => setDisplaySink());

const html = (s: Sent) => s.message.data["text/html"] as string;
const figureJson = (s: Sent) =>
  s.message.data[PLOTLY_MIME] as { data: Record<string, unknown>[]; layout: unknown };

test("plotly: one bundle with the figure as a JSON object, an offline HTML fallback and a summary", () => {
  const { sink, sent } = jupyterSink();
  setDisplaySink(sink);
  display.plotly({
    data: [
      { type: "scatter", x: [1, 2], y: new Float32Array([3, Number.NaN]) },
      { type: "bar", x: ["a"], y: [1] },
    ],
    layout: { title: { text: "Loss" } },
  });
  assert.equal(sent.length, 1);
  const [first] = sent;
  assert.equal(first!.update, false);
  const fig = figureJson(first!);
  assert.equal(typeof fig, "object");
  // Typed arrays become arrays, NaN becomes null: JupyterLab gets plain JSON. The layout
  // gets the height the HTML fallback draws (jupyterlab-plotly would use 360 px).
  assert.deepEqual(fig.data[0], { type: "scatter", x: [1, 2], y: [3, null] });
  assert.deepEqual(fig.layout, { title: { text: "Loss" }, height: 450 });
  assert.equal(first!.message.data["text/plain"], 'Plotly figure: 2 traces (scatter, bar), "Loss"');
  const page = html(first!);
  assert.ok(page.includes(plotlyJsPayload()), "plotly.js travels in the first figure");
  assert.match(
    page,
    /<div id="(esmkit-plotly-[^"]+)" class="esmkit-plotly" style="width:100%;height:450px;">/,
  );
  const id = page.match(/<div id="(esmkit-plotly-[^"]+)"/)![1]!;
  assert.ok(page.includes(`var id = "${id}";`));
  assert.match(page, /Plotly\.newPlot\(el, fig\.data, fig\.layout/);
  // Where the script does not run (an untrusted notebook), the div says why.
  assert.ok(page.includes(`>${NOT_RUN_NOTE.replace(/"/g, "&#34;")}</div>`));

  // The library goes once per cell run (one injected sink here); "always" and "never" override.
  display.plotly({ data: [{ type: "scatter", x: [1], y: [1] }], layout: { height: 300 } });
  display.plotly({ data: [] }, { includePlotlyJs: "always" });
  display.plotly({ data: [] }, { includePlotlyJs: "never", height: 200 });
  assert.equal(sent.length, 4);
  assert.deepEqual(
    sent.map((s) => html(s).includes("data-esmkit-plotlyjs")),
    [true, false, true, false],
  );
  assert.ok(html(sent[1]!).length < 5000);
  assert.match(html(sent[1]!), /height:300px/);
  assert.equal(
    figureJson(sent[3]!).layout && (figureJson(sent[3]!).layout as { height: number }).height,
    200,
  );
  assert.equal(sent[2]!.message.data["text/plain"], "Plotly figure: 0 traces");
});

test("plotly: each cell run carries plotly.js in its first figure (a re-run in the same kernel too)", () => {
  // tslab makes a new writer for every execute request; the scope is that writer.
  const key = "/fake/node_modules/tslab/dist/jupyter.js";
  const sent: { cell: string; message: DisplayMessage }[] = [];
  const writer = (cell: string) => (message: DisplayMessage) => sent.push({ cell, message });
  const kernel: { lastWriteDisplayData: unknown } = { lastWriteDisplayData: writer("a") };
  require.cache[key] = { exports: kernel } as NodeJS.Module;
  try {
    display.plotly({ data: [] });
    display.plotly({ data: [] });
    kernel.lastWriteDisplayData = writer("b");
    display.plotly({ data: [] });
    kernel.lastWriteDisplayData = writer("a, run again");
    display.plotly({ data: [] });
  } finally {
    kernel.lastWriteDisplayData = null; // as between cells: no longer a notebook
    delete require.cache[key];
  }
  assert.deepEqual(
    sent.map((s) => [s.cell, (s.message.data["text/html"] as string).includes(plotlyJsPayload())]),
    [
      ["a", true],
      ["a", false],
      ["b", true],
      ["a, run again", true],
    ],
  );
});

test("plotly: the embedded JSON cannot close the script element", () => {
  const { sink, sent } = jupyterSink();
  setDisplaySink(sink);
  display.plotly(
    { data: [{ type: "bar", x: ["</script><b>x</b>"], y: [1] }] },
    { includePlotlyJs: "never" },
  );
  const page = html(sent[0]!);
  assert.equal(page.match(/<\/script>/g)?.length, 1);
  assert.ok(page.includes("\\u003c/script>\\u003cb>x\\u003c/b>"));
  // The plotly JSON itself is untouched.
  assert.deepEqual(figureJson(sent[0]!).data[0]!.x, ["</script><b>x</b>"]);
});

test("plotly.js travels gzip-compressed as base64 and unpacks to the shipped file", () => {
  const js = plotlyJsSource();
  assert.ok(js.length > 4_000_000);
  const payload = plotlyJsPayload();
  assert.match(payload, /^[A-Za-z0-9+/]+=*$/);
  assert.ok(payload.length < js.length / 2, `${payload.length} base64 characters`);
  assert.equal(gunzipSync(Buffer.from(payload, "base64")).toString("utf8"), js);
});

test("table: records and DataFrames as escaped HTML plus polars' text", () => {
  const { sink, sent } = jupyterSink();
  setDisplaySink(sink);
  display.table([
    { id: "P1", length: 120 },
    { id: "<b>", length: 300 },
  ]);
  const [t1] = sent;
  assert.equal(
    t1!.message.data["text/html"],
    "<table><thead><tr><th>id</th><th>length</th></tr></thead><tbody><tr><td>P1</td><td>120</td></tr><tr><td>&#60;b&#62;</td><td>300</td></tr></tbody></table>",
  );
  assert.match(t1!.message.data["text/plain"] as string, /shape: \(2, 2\)/);
  display.table(pl.DataFrame({ n: [1, 2, 3, 4, 5] }), { maxRows: 2 });
  assert.match(sent[1]!.message.data["text/html"] as string, /<p>3 more rows<\/p>$/);
  assert.match(
    sent[1]!.message.data["text/plain"] as string,
    /shape: \(2, 1\)[\s\S]*\n3 more rows$/,
  );
});

test("progress: one display id, display_data first and update_display_data after", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let clock = 0;
  const { sink, sent } = jupyterSink();
  setDisplaySink(sink);
  const bar = display.progress("tokenize", 4, { throttleMs: 200, now: () => clock });
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.update, false);
  assert.equal(sent[0]!.message.transient.display_id, bar.id);
  assert.match(bar.id, /^[0-9a-f]{16}$/);
  assert.equal(sent[0]!.message.data["text/plain"], "tokenize 0% 0/4");

  clock = 50;
  bar.update(1); // inside the throttle window: deferred, not dropped
  bar.update(2, "batch 2");
  assert.equal(sent.length, 1);
  clock = 200;
  t.mock.timers.tick(150);
  assert.equal(sent.length, 2);
  assert.equal(sent[1]!.message.data["text/plain"], "tokenize 50% 2/4 eta 0s batch 2");
  assert.match(sent[1]!.message.data["text/html"] as string, /<progress value="2" max="4"/);

  clock = 1500;
  bar.finish("ok");
  bar.update(3);
  bar.finish();
  assert.equal(sent.length, 3);
  assert.equal(sent[2]!.message.data["text/plain"], "tokenize 100% 4/4 done in 1.5s ok");
  assert.ok(sent.slice(1).every((s) => s.update && s.message.transient.display_id === bar.id));
});

test("live chart: trainer events redraw one output under a progress bar, throttled, with a final redraw", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let clock = 0;
  const { sink, sent } = jupyterSink();
  setDisplaySink(sink);
  const chart = display.liveChart({ title: "Fit", throttleMs: 500, now: () => clock });
  // plotly.js first, in an output of its own that is never updated; then the progress
  // bar (total unknown yet) and the chart's first frame.
  assert.equal(sent.length, 3);
  assert.ok(html(sent[0]!).includes(plotlyJsPayload()));
  assert.equal(sent[0]!.message.transient.display_id, undefined);
  const barId = sent[1]!.message.transient.display_id;
  assert.match(html(sent[1]!), /<progress style=/, "indeterminate until the total is known");
  assert.equal(sent[1]!.message.data["text/plain"], "Fit");
  assert.equal(sent[2]!.message.transient.display_id, chart.id);
  assert.notEqual(barId, chart.id);
  assert.doesNotMatch(html(sent[2]!), /data-esmkit-plotlyjs/);
  // Frames while training are HTML only: jupyterlab-plotly would not redraw its MIME type.
  assert.equal(sent[2]!.message.data[PLOTLY_MIME], undefined);

  const push = chart.push; // detached, as a listener
  push({ type: "start", totalSteps: 10, stepsPerEpoch: 10, resumedFrom: null });
  for (let step = 1; step <= 10; step++) {
    clock = step * 10;
    push({ type: "step", step, totalSteps: 10, loss: 1 / step, lr: 1e-4, epoch: step / 10 });
  }
  const frames = () => sent.filter((s) => s.message.transient.display_id === chart.id);
  const bars = () => sent.filter((s) => s.message.transient.display_id === barId);
  assert.equal(frames().length, 1, "no redraw within 500 ms");
  clock = 500;
  t.mock.timers.tick(500);
  assert.equal(frames().length, 2, "one trailing redraw");
  assert.match(
    bars().at(-1)!.message.data["text/plain"] as string,
    /^Fit 100% 10\/10 epoch 1\.00, loss 0\.1000$/,
  );
  push({ type: "eval", step: 10, epoch: 1, metrics: { loss: 0.4, accuracy: 0.8, f1: 0.75 } });
  push({ type: "end", step: 10, interrupted: false, elapsedSeconds: 1 });
  chart.push({ type: "step", step: 11, loss: 0.1 });
  t.mock.timers.tick(1000);
  assert.ok(frames().every((s, i) => s.update === i > 0));
  assert.ok(
    frames()
      .slice(0, -1)
      .every((s) => s.message.data[PLOTLY_MIME] === undefined),
  );
  const final = figureJson(frames().at(-1)!).data;
  assert.deepEqual(
    final.map((tr) => tr.name),
    ["train loss", "eval loss", "accuracy", "f1"],
  );
  assert.deepEqual(final[0]!.x, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(final[1]!.y, [0.4]);
  assert.equal(chart.events.length, 13); // start, 10 steps, eval, end
  assert.match(
    bars().at(-1)!.message.data["text/plain"] as string,
    /^Fit 100% 10\/10 done in 0\.5s/,
  );

  // A second chart in the same cell run does not resend plotly.js; without a progress bar.
  const before = sent.length;
  display.liveChart({ progress: false }).finish();
  assert.equal(sent.length, before + 2);
  assert.ok(sent.slice(before).every((s) => !html(s).includes("data-esmkit-plotlyjs")));
});

test("live chart: a resumed or interrupted run shows where it stopped", () => {
  const { sink, sent } = jupyterSink();
  setDisplaySink(sink);
  let clock = 0;
  const chart = display.liveChart({ title: "Fit", throttleMs: 0, now: () => clock });
  const bar = () =>
    sent.filter((s) => html(s).includes("esmkit-progress")).at(-1)!.message.data["text/plain"];
  chart.push({ type: "start", totalSteps: 40, stepsPerEpoch: 10, resumedFrom: 30 });
  assert.equal(bar(), "Fit 75% 30/40");
  clock = 2000;
  chart.push({ type: "step", step: 32, totalSteps: 40, loss: 0.5, epoch: 3.2 });
  // 2 steps in 2 s since the resume: 8 left, 8 s.
  assert.equal(bar(), "Fit 80% 32/40 eta 8s epoch 3.20, loss 0.5000");
  chart.push({ type: "end", step: 33, interrupted: true, elapsedSeconds: 3 });
  assert.equal(bar(), "Fit 83% 33/40 done in 2.0s epoch 3.20, loss 0.5000, interrupted");
});

test("outside a notebook: text summaries on stdout, progress and training lines on stderr", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sink, out, err } = terminalSink();
  setDisplaySink(sink);
  assert.equal(display.inNotebook(), false);
  display.plotly({ data: [{ type: "scatter", x: [1], y: [2] }] });
  display.table([{ a: 1 }]);
  assert.equal(out[0], "Plotly figure: 1 trace (scatter)\n");
  assert.match(out[1]!, /shape: \(1, 1\)/);

  const bar = display.progress("download", 10);
  bar.update(5);
  bar.finish("ok");
  assert.match(err.at(-1)!, /^download done in [\d.]+s ok\n$/);

  err.length = 0;
  let clock = 0;
  const chart = display.liveChart({ now: () => clock, terminalIntervalMs: 2000 });
  chart.push({ type: "step", step: 1, loss: 0.5, lr: 2e-4, epoch: 0.5 });
  clock = 100;
  chart.push({ type: "step", step: 2, loss: 0.25, lr: 1e-4, epoch: 1 });
  chart.push({ type: "eval", step: 2, epoch: 1, metrics: { loss: 0.3, accuracy: 0.875 } });
  chart.push({ type: "end", step: 2, interrupted: false, elapsedSeconds: 1 }); // finishes
  chart.push({ type: "step", step: 3, loss: 0.1 });
  chart.finish();
  assert.deepEqual(err, [
    "Training step 1, epoch 0.5: loss 0.5000, lr 2.00e-4\n",
    "Training eval step 2, epoch 1: loss 0.3000, accuracy 0.8750\n",
    "Training step 2, epoch 1: loss 0.2500, lr 1.00e-4\n",
    "Training done: 2 steps, 1 evaluation\n",
  ]);
});

test("the kernel's writer is found in require's cache: no tslab module, no notebook", () => {
  assert.equal(currentSink().kind, "terminal");
  const sent: unknown[][] = [];
  const key = "/fake/node_modules/tslab/dist/jupyter.js";
  const kernel = { lastWriteDisplayData: (m: unknown, u: boolean) => sent.push([m, u]) as unknown };
  require.cache[key] = { exports: kernel } as NodeJS.Module;
  try {
    assert.equal(display.inNotebook(), true);
    display.plotly({ data: [] }, { includePlotlyJs: "never" });
    assert.equal(sent.length, 1);
    assert.equal(sent[0]![1], false);
    // Between cells tslab's writer is still set; a kernel that never ran a cell has none.
    (kernel as { lastWriteDisplayData: unknown }).lastWriteDisplayData = null;
    assert.equal(display.inNotebook(), false);
  } finally {
    delete require.cache[key];
  }
});
