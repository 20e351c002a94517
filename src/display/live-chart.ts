/**
 * A training chart fed by trainer events and redrawn in place (update_display_data on
 * one display id), at most every `throttleMs` plus once at the end, under a progress
 * bar (steps done of the trainer's total, eta). On a terminal the same events become
 * lines on stderr: eval results always, steps every few seconds.
 *
 * The frames sent while training carry the figure as HTML only: the jupyterlab-plotly
 * renderer, which would take `application/vnd.plotly.v1+json`, never redraws an output
 * it has drawn (plotly.py#3053), so the chart would freeze on its first frame. The
 * final frame adds the plotly MIME type; the type change makes JupyterLab create a new
 * renderer, so either renderer shows the end state, also after a reload.
 */
import { evalMetrics, type TrainerEvent, trainingChart } from "./charts";
import {
  type PlotlyOptions,
  plotlyBundle,
  plotlyJsBundle,
  takePlotlyJs,
  toJsonValue,
} from "./plotly";
import { type ProgressBar, progressBar } from "./progress";
import { DisplayChannel, type DisplaySink, sinkScope } from "./sink";
import { Throttle } from "./throttle";

export interface LiveChartOptions extends PlotlyOptions {
  /** Title prefix; default "Training". */
  title?: string;
  /** Show a progress bar above the chart (notebooks only); default true. */
  progress?: boolean;
  /** Eval metrics to plot; default every one seen except loss. */
  metrics?: string[];
  /** Least time between two notebook redraws; default 500 ms (the progress bar: 200 ms). */
  throttleMs?: number;
  /** Least time between two step lines on a terminal; default 2000 ms. */
  terminalIntervalMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface LiveChart {
  /** The display id (empty on a terminal). */
  readonly id: string;
  /** Every event received, in order. */
  readonly events: readonly TrainerEvent[];
  /**
   * Feed one trainer event (bound: pass `chart.push` as the trainer's `onEvent`). An
   * `{type: "end"}` event finishes the chart.
   */
  readonly push: (event: TrainerEvent) => void;
  /** Draw the final state now; later events are ignored. */
  readonly finish: () => void;
}

const fmt = (v: number) => (Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(4) : v.toExponential(2));

/** `step 120, epoch 0.48: loss 0.5123, lr 1.90e-4`, from a step or eval event. */
export function describeEvent(event: TrainerEvent): string {
  const e = event as { step?: unknown; epoch?: unknown; loss?: unknown; lr?: unknown };
  const where = [
    typeof e.step === "number" ? `step ${e.step}` : "",
    typeof e.epoch === "number" ? `epoch ${Number(e.epoch.toFixed(2))}` : "",
  ]
    .filter(Boolean)
    .join(", ");
  const values =
    event.type === "eval"
      ? Object.entries(evalMetrics(event)).map(([k, v]) => `${k} ${fmt(v)}`)
      : [
          typeof e.loss === "number" ? `loss ${fmt(e.loss)}` : "",
          typeof e.lr === "number" ? `lr ${e.lr.toExponential(2)}` : "",
        ].filter(Boolean);
  return `${where}: ${values.join(", ")}`;
}

export function liveChart(sink: DisplaySink, options: LiveChartOptions = {}): LiveChart {
  const events: TrainerEvent[] = [];
  const title = options.title ?? "Training";
  const now = options.now ?? Date.now;
  const { onEvent, onFinish, id } =
    sink.kind === "terminal"
      ? terminalOutput(sink, title, options, now)
      : figureOutput(sink, title, options, now, events);
  let finished = false;

  const finish = () => {
    if (finished) return;
    finished = true;
    onFinish(events);
  };
  const push = (raw: TrainerEvent) => {
    if (finished) return;
    const event = toJsonValue(raw) as TrainerEvent;
    events.push(event);
    if (event.type === "end") finish();
    else onEvent(event);
  };
  return { id, events, push, finish };
}

interface ChartOutput {
  id: string;
  onEvent(event: TrainerEvent): void;
  onFinish(events: readonly TrainerEvent[]): void;
}

const isStep = (e: TrainerEvent) => e.type === "step" || e.type === "train";

/** Eval results at once, the latest step every `terminalIntervalMs`, a summary at the end. */
function terminalOutput(
  sink: DisplaySink & { kind: "terminal" },
  title: string,
  options: LiveChartOptions,
  now: () => number,
): ChartOutput {
  let lastStep: TrainerEvent | undefined;
  const throttle = new Throttle(
    options.terminalIntervalMs ?? 2000,
    () => {
      if (lastStep) sink.err.write(`${title} ${describeEvent(lastStep)}\n`);
      lastStep = undefined;
    },
    now,
  );
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  return {
    id: "",
    onEvent(event) {
      if (event.type === "eval") {
        sink.err.write(`${title} eval ${describeEvent(event)}\n`);
      } else if (isStep(event)) {
        lastStep = event;
        throttle.request();
      }
    },
    onFinish(events) {
      if (lastStep) throttle.flush();
      const steps = events.filter(isStep).length;
      const evals = events.filter((e) => e.type === "eval").length;
      sink.err.write(`${title} done: ${count(steps, "step")}, ${count(evals, "evaluation")}\n`);
    },
  };
}

/** The progress bar's text for a step event: `epoch 1.50, loss 0.6931`. */
function stepDetail(event: TrainerEvent): string | undefined {
  const { epoch, loss } = event as { epoch?: unknown; loss?: unknown };
  const parts = [
    typeof epoch === "number" ? `epoch ${epoch.toFixed(2)}` : "",
    typeof loss === "number" ? `loss ${fmt(loss)}` : "",
  ].filter(Boolean);
  return parts.length ? parts.join(", ") : undefined;
}

/** Steps done of the trainer's total, from its start, step and end events. */
function stepProgress(bar: ProgressBar) {
  let step = 0;
  let detail: string | undefined;
  return {
    onEvent(event: TrainerEvent) {
      const e = event as { totalSteps?: unknown; resumedFrom?: unknown; step?: unknown };
      if (event.type === "start" && typeof e.totalSteps === "number") {
        step = typeof e.resumedFrom === "number" ? e.resumedFrom : 0;
        bar.setTotal(e.totalSteps, step);
      } else if (isStep(event) && typeof e.step === "number") {
        step = e.step;
        detail = stepDetail(event);
        if (typeof e.totalSteps === "number") bar.setTotal(e.totalSteps);
        bar.update(step, detail);
      }
    },
    onFinish(events: readonly TrainerEvent[]) {
      const end = events.at(-1) as { type: string; interrupted?: unknown; step?: unknown };
      const interrupted = end?.type === "end" && end.interrupted === true;
      if (end?.type === "end" && typeof end.step === "number") step = end.step;
      bar.finish([detail, interrupted ? "interrupted" : ""].filter(Boolean).join(", "), step);
    },
  };
}

/** The training figure, redrawn in place at most every `throttleMs`. */
function figureOutput(
  sink: DisplaySink & { kind: "jupyter" },
  title: string,
  options: LiveChartOptions,
  now: () => number,
  events: readonly TrainerEvent[],
): ChartOutput {
  // plotly.js in an output of its own that is never replaced: the frames replace each
  // other, and a run that fails part-way leaves a frame that still needs it.
  if (takePlotlyJs(sinkScope(sink), options.includePlotlyJs)) {
    sink.write({ data: plotlyJsBundle(), metadata: {}, transient: {} }, false);
  }
  const steps =
    options.progress === false
      ? undefined
      : stepProgress(progressBar(sink, title, 0, { now, throttleMs: options.throttleMs }));
  const channel = new DisplayChannel(sink);
  const draw = (final: boolean) => {
    const figure = trainingChart(events, { title, metrics: options.metrics });
    const bundle = plotlyBundle(figure, {
      withLibrary: false,
      height: options.height,
      json: final,
    });
    channel.show(bundle);
  };
  const throttle = new Throttle(options.throttleMs ?? 500, () => draw(false), now);
  throttle.flush();
  return {
    id: channel.id,
    onEvent: (event) => {
      steps?.onEvent(event);
      throttle.request();
    },
    onFinish: (all) => {
      throttle.cancel();
      draw(true);
      steps?.onFinish(all);
    },
  };
}
