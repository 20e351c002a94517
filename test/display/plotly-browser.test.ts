/**
 * The HTML fallback in a real browser (Chromium via playwright-core): the first figure
 * carries plotly.js and the others use it, whatever order they render in; an output
 * shown twice draws twice; the page's own `window.Plotly` and an AMD `define` are left
 * alone; where scripts do not run, the div says why.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  figureJson,
  NOT_LOADED_NOTE,
  NOT_RUN_NOTE,
  plotlyHtml,
  plotlyJsBundle,
} from "../../src/display/plotly";
import { CHROMIUM_HINT, findChromium, launchChromium, needs } from "../helpers/browser";

const figure = (title: string) =>
  figureJson({
    data: [{ type: "scatter", x: [1, 2, 3], y: [3, 1, 2] }],
    layout: { title: { text: title } },
  });

const page = (body: string, head = "") =>
  `<!doctype html><html><head><meta charset="utf-8"><script>${head}</script></head><body>${body}</body></html>`;

/** Per figure div, in page order: drawn (plotly's main-svg inside) and its text if not. */
const STATE = `[...document.querySelectorAll(".esmkit-plotly")].map((el) => ({
  drawn: el.querySelector(".main-svg") !== null,
  title: el.querySelector(".gtitle") ? el.querySelector(".gtitle").textContent : null,
  text: el.querySelector(".main-svg") ? "" : el.textContent,
}))`;

test("plotly HTML fallback in Chromium: one carried plotly.js serves every figure", async (t) => {
  const chromium = findChromium();
  if (!needs(t, chromium, CHROMIUM_HINT)) return;
  const browser = await launchChromium(chromium!);
  t.after(() => browser.close());

  await t.test("figures without the library wait for the one that has it", async () => {
    const p = await browser.newPage();
    // An AMD loader and another plotly on the page, as classic Notebook or other outputs
    // may leave them: plotly.js must neither register with the one nor replace the other.
    const amd =
      "window.define = function () { window.amdCalls = (window.amdCalls || 0) + 1; }; window.define.amd = {}; window.Plotly = { own: true };";
    const waiting = plotlyHtml(figure("waits"), { withLibrary: false });
    const carrier = plotlyHtml(figure("carries"), { withLibrary: true });
    await p.setContent(page(`${waiting}${carrier}${carrier}`, amd));
    await p.waitForFunction("document.querySelectorAll('.esmkit-plotly .main-svg').length >= 3");
    const state = (await p.evaluate(STATE)) as { drawn: boolean; title: string }[];
    assert.deepEqual(
      state.map((s) => [s.drawn, s.title]),
      [
        [true, "waits"],
        [true, "carries"],
        [true, "carries"], // the same output twice: same div id, both drawn
      ],
    );
    assert.deepEqual(await p.evaluate("[window.Plotly, window.amdCalls || 0]"), [{ own: true }, 0]);
    await p.close();
  });

  await t.test("a live chart's library output serves the frames after it", async () => {
    const p = await browser.newPage();
    const library = plotlyJsBundle()["text/html"] as string;
    await p.setContent(page(`${library}${plotlyHtml(figure("frame"), { withLibrary: false })}`));
    await p.waitForFunction("document.querySelectorAll('.esmkit-plotly .main-svg').length >= 1");
    await p.close();
  });

  await t.test("without plotly.js anywhere on the page the figure says so", async () => {
    const p = await browser.newPage();
    // The figure polls for 15 s; run the page's timers 50 times faster.
    const fast =
      "const later = window.setTimeout; window.setTimeout = (f, ms, ...a) => later(f, (ms || 0) / 50, ...a);";
    await p.setContent(page(plotlyHtml(figure("alone"), { withLibrary: false }), fast));
    await p.waitForFunction(
      "!document.querySelector('.esmkit-plotly').textContent.startsWith('Chart not drawn') && document.querySelector('.esmkit-plotly').textContent.length > 0",
      undefined,
      { timeout: 10_000 },
    );
    const [state] = (await p.evaluate(STATE)) as { drawn: boolean; text: string }[];
    assert.deepEqual(state, { drawn: false, title: null, text: NOT_LOADED_NOTE });
    await p.close();
  });

  await t.test(
    "where scripts do not run (an untrusted notebook) the div explains why",
    async () => {
      const context = await browser.newContext({ javaScriptEnabled: false });
      const p = await context.newPage();
      await p.setContent(page(plotlyHtml(figure("untrusted"), { withLibrary: true })));
      const text = await p.textContent(".esmkit-plotly");
      assert.equal(text, NOT_RUN_NOTE);
      await context.close();
    },
  );
});
