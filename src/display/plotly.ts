/**
 * Plotly figures as Jupyter MIME bundles:
 * - `application/vnd.plotly.v1+json` as a JSON object `{data, layout, config}`, which the
 *   jupyterlab-plotly renderer (the `plotly` Python package), VS Code and nteract draw
 *   without running any script, in trusted and untrusted notebooks alike;
 * - `text/html`: a div plus a script drawing it with plotly.js, for a front end without
 *   that renderer and for nbconvert's HTML export. JupyterLab runs such scripts only in
 *   trusted notebooks (outputs made in this session, or a saved notebook whose
 *   signature it knows); elsewhere the div shows a note saying so. For it to work
 *   offline and after a page reload, plotly.js travels inside the outputs
 *   (gzip + base64, about 2 MB): in the first figure of each cell run, which is the
 *   unit JupyterLab clears and re-runs, so no saved output depends on another cell.
 *   The page unpacks it once (DecompressionStream) and every figure shares it;
 * - `text/plain`: a one-line summary.
 */
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { escapeHtml, type MimeBundle } from "./sink";

export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/** Height in px given to figures whose layout sets none. */
export const DEFAULT_HEIGHT = 450;

/** A trace: `{type: "scatter", x, y, ...}`, as plotly.js takes it. */
export type PlotlyTrace = Record<string, unknown>;

export interface PlotlyFigure {
  data: PlotlyTrace[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

export interface PlotlyOptions {
  /**
   * Carry plotly.js in the HTML fallback: "auto" (default) in the first figure of each
   * cell run (later figures of that run use it), "always" in every figure, or "never"
   * (the page must already have `window.Plotly`).
   */
  includePlotlyJs?: "auto" | "always" | "never";
  /** Height in px when the layout sets none; default 450 (jupyterlab-plotly's own is 360). */
  height?: number;
}

const carried = new WeakSet<object>();

/**
 * Whether the next figure shown in `scope` (a cell run: the kernel's writer for it, or an
 * injected sink) must carry plotly.js; marks the scope as served when so.
 */
export function takePlotlyJs(scope: object, policy: PlotlyOptions["includePlotlyJs"]): boolean {
  if (policy === "never") return false;
  const needed = policy === "always" || !carried.has(scope);
  carried.add(scope);
  return needed;
}

let source: string | undefined;
let payload: string | undefined;

/** plotly.js as shipped (plotly.js-dist-min). */
export function plotlyJsSource(): string {
  source ??= readFileSync(require.resolve("plotly.js-dist-min/plotly.min.js"), "utf8");
  return source;
}

/** plotly.js gzip-compressed and base64-encoded: what the outputs carry. */
export function plotlyJsPayload(): string {
  payload ??= gzipSync(plotlyJsSource(), { level: 9 }).toString("base64");
  return payload;
}

export function plotlyJsVersion(): string {
  return require("plotly.js-dist-min/package.json").version;
}

/** JSON-safe copy: typed arrays become arrays, NaN and infinities become null. */
export function toJsonValue(value: unknown): unknown {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<number | bigint>, (v) =>
      typeof v === "bigint" ? Number(v) : toJsonValue(v),
    );
  }
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toJsonValue(v);
    return out;
  }
  return value;
}

/** `Plotly figure: 2 traces (scatter, bar), "Loss"`. */
export function figureSummary(figure: PlotlyFigure): string {
  const types = [...new Set(figure.data.map((t) => String(t.type ?? "scatter")))];
  const title = figure.layout?.title;
  const text = typeof title === "string" ? title : (title as { text?: unknown } | undefined)?.text;
  const n = figure.data.length;
  return `Plotly figure: ${n} trace${n === 1 ? "" : "s"}${n ? ` (${types.join(", ")})` : ""}${
    typeof text === "string" && text ? `, "${text}"` : ""
  }`;
}

/** A JSON literal that cannot end a <script> element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/** What an HTML output shows where its script does not run (an untrusted notebook). */
export const NOT_RUN_NOTE =
  "Chart not drawn: its script did not run. JupyterLab runs scripts only in trusted " +
  'notebooks: run the cell, or use the command "Trust Notebook"; or install the ' +
  "jupyterlab-plotly renderer (pip install plotly), which needs no script.";

/** Shown when no output of the page carried plotly.js. */
export const NOT_LOADED_NOTE =
  "plotly.js is not loaded in this page: run the cell again (the first chart of each " +
  "cell run carries it), or show the figure with { includePlotlyJs: 'always' }.";

/**
 * The browser side, shared by every output: `window.esmkitPlotly[version]` is a promise
 * of plotly.js, made by the first output carrying the payload. plotly.js is run as a
 * CommonJS module (`define` hidden), so it neither takes nor clobbers `window.Plotly`.
 */
function loaderJs(version: string, withPayload: boolean): string {
  return `var version = ${JSON.stringify(version)};
  var payload = ${withPayload ? JSON.stringify(plotlyJsPayload()) : "null"};
  var store = window.esmkitPlotly = window.esmkitPlotly || {};
  function unpack(b64) {
    if (typeof DecompressionStream !== "function") {
      return Promise.reject(new Error("this browser cannot unpack plotly.js (no DecompressionStream)"));
    }
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var gunzip = new DecompressionStream("gzip");
    return new Response(new Blob([bytes]).stream().pipeThrough(gunzip)).text().then(function (js) {
      // plotly.js 4 also sets window.Plotly: put back another copy the page had.
      var had = "Plotly" in window, before = window.Plotly;
      var module = { exports: {} };
      window.esmkitPlotlyModule = module;
      var s = document.createElement("script");
      s.text = "(function (module, exports, define) {\\n" + js +
        "\\n})(window.esmkitPlotlyModule, window.esmkitPlotlyModule.exports);";
      (document.head || document.documentElement).appendChild(s);
      s.parentNode.removeChild(s);
      delete window.esmkitPlotlyModule;
      if (had && before !== module.exports) window.Plotly = before;
      if (!module.exports || typeof module.exports.newPlot !== "function") {
        throw new Error("plotly.js did not start (a Content-Security-Policy may block inline scripts)");
      }
      return module.exports;
    });
  }
  function library() {
    if (store[version]) return store[version];
    if (payload) return (store[version] = unpack(payload));
    if (window.Plotly && typeof window.Plotly.newPlot === "function") return Promise.resolve(window.Plotly);
    return null;
  }`;
}

let divCounter = 0;

/** plotly.js alone, as an output of its own (before a live chart, whose frames it serves). */
export function plotlyJsBundle(): MimeBundle {
  const version = plotlyJsVersion();
  const script = `(function () {
  ${loaderJs(version, true)}
  library().catch(function (e) { console.error("esmkit: " + e); });
})();`;
  return {
    "text/html": `<script type="text/javascript" data-esmkit-plotlyjs="${escapeHtml(version)}">\n${script}\n</script>`,
    "text/plain": `plotly.js ${version} (carried for the charts of this cell)`,
  };
}

/** The div and script drawing `figure`; with `withLibrary`, the script carries plotly.js. */
export function plotlyHtml(
  figure: { data: unknown; layout: unknown; config: unknown },
  options: { withLibrary: boolean },
): string {
  const id = `esmkit-plotly-${process.pid}-${++divCounter}`;
  const layout = figure.layout as { height?: unknown } | undefined;
  const height = typeof layout?.height === "number" ? layout.height : DEFAULT_HEIGHT;
  const version = plotlyJsVersion();
  const marker = options.withLibrary ? ` data-esmkit-plotlyjs="${escapeHtml(version)}"` : "";
  // The div is the script's own sibling (an output shown twice repeats the id).
  // A figure without the library waits for the one that has it (outputs render lazily).
  const draw = `(function () {
  var id = ${JSON.stringify(id)};
  var here = document.currentScript;
  var before = here && here.previousElementSibling;
  var el = before && before.id === id ? before : document.getElementById(id);
  if (!el) return;
  el.textContent = "";
  var fig = ${scriptJson(figure)};
  ${loaderJs(version, options.withLibrary)}
  function say(text) {
    el.textContent = text;
    el.style.height = "auto";
  }
  var tries = 0;
  (function draw() {
    var loading = library();
    if (!loading) {
      if (++tries > 150) return say(${JSON.stringify(NOT_LOADED_NOTE)});
      return setTimeout(draw, 100);
    }
    loading.then(function (Plotly) {
      return Plotly.newPlot(el, fig.data, fig.layout, Object.assign({ responsive: true }, fig.config));
    }).catch(function (e) {
      say("Chart not drawn: " + (e && e.message ? e.message : e));
    });
  })();
})();`;
  return `<div id="${id}" class="esmkit-plotly" style="width:100%;height:${height}px;">${escapeHtml(
    NOT_RUN_NOTE,
  )}</div>\n<script type="text/javascript"${marker}>\n${draw}\n</script>`;
}

/** The figure as plain JSON, its layout given a height when it has none. */
export function figureJson(
  figure: PlotlyFigure,
  height?: number,
): { data: unknown; layout: Record<string, unknown>; config: unknown } {
  const json = toJsonValue({
    data: figure.data,
    layout: figure.layout ?? {},
    config: figure.config ?? {},
  }) as { data: unknown; layout: Record<string, unknown>; config: unknown };
  // Without one, jupyterlab-plotly draws 360 px and the HTML fallback another height.
  if (typeof json.layout.height !== "number") json.layout.height = height ?? DEFAULT_HEIGHT;
  return json;
}

/**
 * The MIME bundle for a figure. Without `json` it has no plotly MIME type: jupyterlab-plotly
 * then leaves it to the HTML renderer (live chart frames, which its renderer would not
 * redraw).
 */
export function plotlyBundle(
  figure: PlotlyFigure,
  options: { withLibrary: boolean; height?: number; json?: boolean },
): MimeBundle {
  const json = figureJson(figure, options.height);
  return {
    ...(options.json === false ? {} : { [PLOTLY_MIME]: json }),
    "text/html": plotlyHtml(json, options),
    "text/plain": figureSummary(figure),
  };
}
