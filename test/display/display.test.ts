import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { pl } from "../../src/data/frame";
import {
  type DisplayMessage,
  type DisplaySink,
  display,
  PLOTLY_MIME,
  setDisplaySink,
} from "../../src/display";
import { plotlyJsSource } from "../../src/display/plotly";
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
  // Typed arrays become arrays, NaN becomes null: JupyterLab gets plain JSON.
  assert.deepEqual(fig.data[0], { type: "scatter", x: [1, 2], y: [3, null] });
  assert.deepEqual(fig.layout, { title: { text: "Loss" } });
  assert.equal(first!.message.data["text/plain"], 'Plotly figure: 2 traces (scatter, bar), "Loss"');
  const page = html(first!);
  assert.ok(page.includes(plotlyJsSource()), "plotly.js is inlined in the first figure");
  assert.match(page, /<div id="(esmkit-plotly-[^"]+)" class="esmkit-plotly"/);
  const id = page.match(/<div id="(esmkit-plotly-[^"]+)"/)![1]!;
  assert.ok(page.includes(`document.getElementById("${id}")`));
  assert.match(page, /window\.Plotly\.newPlot\(el, fig\.data, fig\.layout/);

  // The library goes once per page; "always" and "never" override.
  display.plotly({ data: [{ type: "scatter", x: [1], y: [1] }] });
  display.plotly({ data: [] }, { includePlotlyJs: "always" });
  display.plotly({ data: [] }, { includePlotlyJs: "never" });
  assert.equal(sent.length, 4);
  assert.deepEqual(
    sent.map((s) => html(s).includes("data-esmkit-plotlyjs")),
    [true, false, true, false],
  );
  assert.ok(html(sent[1]!).length < 2000);
  assert.equal(sent[2]!.message.data["text/plain"], "Plotly figure: 0 traces");
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

test("plotly.js is embedded without a literal </script or <!--", () => {
  const js = plotlyJsSource();
  assert.ok(js.length > 4_000_000);
  assert.doesNotMatch(js, /<\/script/i);
  assert.doesNotMatch(js, /<!--/);
  assert.doesNotThrow(() => new Function(js));
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

test("live chart: trainer events redraw one output, throttled, with a final redraw", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let clock = 0;
  const { sink, sent } = jupyterSink();
  setDisplaySink(sink);
  const chart = display.liveChart({ throttleMs: 500, now: () => clock });
  // A fresh page: plotly.js goes first in an output of its own, never updated.
  assert.equal(sent.length, 2);
  assert.ok(html(sent[0]!).includes(plotlyJsSource()));
  assert.equal(sent[0]!.message.transient.display_id, undefined);
  assert.equal(sent[1]!.message.transient.display_id, chart.id);
  assert.doesNotMatch(html(sent[1]!), /data-esmkit-plotlyjs/);

  const push = chart.push; // detached, as a listener
  for (let step = 1; step <= 10; step++) {
    clock = step * 10;
    push({ type: "step", step, loss: 1 / step, lr: 1e-4, epoch: step / 10 });
  }
  assert.equal(sent.length, 2, "no redraw within 500 ms");
  clock = 500;
  t.mock.timers.tick(500);
  assert.equal(sent.length, 3, "one trailing redraw");
  push({ type: "eval", step: 10, epoch: 1, metrics: { loss: 0.4, accuracy: 0.8, f1: 0.75 } });
  chart.finish();
  chart.push({ type: "step", step: 11, loss: 0.1 });
  t.mock.timers.tick(1000);
  assert.equal(sent.length, 4);
  assert.ok(sent.slice(2).every((s) => s.update && s.message.transient.display_id === chart.id));
  const final = figureJson(sent[3]!).data;
  assert.deepEqual(
    final.map((tr) => tr.name),
    ["train loss", "eval loss", "accuracy", "f1"],
  );
  assert.deepEqual(final[0]!.x, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(final[1]!.y, [0.4]);
  assert.equal(chart.events.length, 11);

  // A second chart on the same page does not resend plotly.js.
  display.liveChart().finish();
  assert.equal(sent.length, 6);
  assert.ok(sent.slice(4).every((s) => !html(s).includes("data-esmkit-plotlyjs")));
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
