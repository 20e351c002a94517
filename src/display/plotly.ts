/**
 * Plotly figures as Jupyter MIME bundles:
 * - `application/vnd.plotly.v1+json` as a JSON object `{data, layout, config}`, which
 *   JupyterLab (with the plotly renderer), VS Code and Colab draw natively;
 * - `text/html`: a div plus a script calling `Plotly.newPlot`, the fallback that
 *   nbconvert's HTML export (and a front end without the renderer) shows. For it to work
 *   offline the minified plotly.js (~4.8 MB) is inlined once per kernel process: in the
 *   first static figure, or, before a live chart, in an output of its own (an update
 *   replaces an output, and the library must survive in the saved notebook). Later
 *   figures wait for `window.Plotly`;
 * - `text/plain`: a one-line summary.
 */
import { readFileSync } from "node:fs";
import { escapeHtml, type MimeBundle } from "./sink";

export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/** A trace: `{type: "scatter", x, y, ...}`, as plotly.js takes it. */
export type PlotlyTrace = Record<string, unknown>;

export interface PlotlyFigure {
  data: PlotlyTrace[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

export interface PlotlyOptions {
  /**
   * Inline plotly.js in the HTML fallback: "auto" (default) the first time per kernel
   * process, "always", or "never" (the page must already have `window.Plotly`).
   */
  includePlotlyJs?: "auto" | "always" | "never";
  /** Height of the HTML fallback in px when the layout sets none; default 450. */
  height?: number;
}

let plotlyJs: string | undefined;
const plotlyJsSent = new WeakSet<object>();

/**
 * Whether the next figure shown in `scope` (a page: the kernel process, or an injected
 * sink) must carry plotly.js; marks it sent when so.
 */
export function takePlotlyJs(scope: object, policy: PlotlyOptions["includePlotlyJs"]): boolean {
  if (policy === "never") return false;
  const needed = policy === "always" || !plotlyJsSent.has(scope);
  plotlyJsSent.add(scope);
  return needed;
}

/** plotly.js, safe to embed in a <script> element. */
export function plotlyJsSource(): string {
  if (plotlyJs === undefined) {
    const source = readFileSync(require.resolve("plotly.js-dist-min/plotly.min.js"), "utf8");
    // "</script" would end the element and "<!--" changes how it is parsed; both occur
    // only inside string or regex literals, where "\x3C" means "<".
    plotlyJs = source.replace(/<\/script/gi, "\\x3C/script").replace(/<!--/g, "\\x3C!--");
  }
  return plotlyJs;
}

function plotlyJsVersion(): string {
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

let divCounter = 0;

function libraryScript(): string {
  return `<script type="text/javascript" data-esmkit-plotlyjs="${escapeHtml(plotlyJsVersion())}">if (!window.Plotly) {\n${plotlyJsSource()}\n}</script>\n`;
}

/** plotly.js alone, as an output of its own (before a live chart). */
export function plotlyJsBundle(): MimeBundle {
  return {
    "text/html": libraryScript(),
    "text/plain": `plotly.js ${plotlyJsVersion()} (inlined for offline HTML)`,
  };
}

/** The div and script drawing `figure`; with `withLibrary`, plotly.js comes first. */
export function plotlyHtml(
  figure: { data: unknown; layout: unknown; config: unknown },
  options: { withLibrary: boolean; height?: number },
): string {
  const id = `esmkit-plotly-${process.pid}-${++divCounter}`;
  const layout = figure.layout as { height?: unknown } | undefined;
  const height = typeof layout?.height === "number" ? layout.height : (options.height ?? 450);
  const library = options.withLibrary ? libraryScript() : "";
  // Later figures may render before the one carrying plotly.js (lazy rendering): wait.
  const draw = `(function () {
  var fig = ${scriptJson(figure)};
  var el = document.getElementById(${JSON.stringify(id)});
  var tries = 0;
  function draw() {
    if (window.Plotly) return window.Plotly.newPlot(el, fig.data, fig.layout, Object.assign({ responsive: true }, fig.config));
    if (++tries > 100) {
      el.textContent = "plotly.js is not loaded in this page: show the figure again with display.plotly(figure, { includePlotlyJs: 'always' })";
      return;
    }
    setTimeout(draw, 100);
  }
  draw();
})();`;
  return `${library}<div id="${id}" class="esmkit-plotly" style="width:100%;height:${height}px;"></div>\n<script type="text/javascript">\n${draw}\n</script>`;
}

/** The MIME bundle for a figure. */
export function plotlyBundle(
  figure: PlotlyFigure,
  options: { withLibrary: boolean; height?: number },
): MimeBundle {
  const json = toJsonValue({
    data: figure.data,
    layout: figure.layout ?? {},
    config: figure.config ?? {},
  }) as { data: unknown; layout: unknown; config: unknown };
  return {
    [PLOTLY_MIME]: json,
    "text/html": plotlyHtml(json, options),
    "text/plain": figureSummary(figure),
  };
}
