/**
 * A training chart fed by trainer events and redrawn in place (update_display_data on
 * one display id), at most every `throttleMs` plus once at the end. On a terminal the
 * same events become lines on stderr: eval results always, steps every few seconds.
 */
import { evalMetrics, type TrainerEvent, trainingChart } from "./charts";
import {
  type PlotlyOptions,
  plotlyBundle,
  plotlyJsBundle,
  takePlotlyJs,
  toJsonValue,
} from "./plotly";
import { DisplayChannel, type DisplaySink, sinkScope } from "./sink";
import { Throttle } from "./throttle";

export interface LiveChartOptions extends PlotlyOptions {
  /** Title prefix; default "Training". */
  title?: string;
  /** Eval metrics to plot; default every one seen except loss. */
  metrics?: string[];
  /** Least time between two notebook redraws; default 500 ms. */
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

/** The training figure, redrawn in place at most every `throttleMs`. */
function figureOutput(
  sink: DisplaySink & { kind: "jupyter" },
  title: string,
  options: LiveChartOptions,
  now: () => number,
  events: readonly TrainerEvent[],
): ChartOutput {
  if (takePlotlyJs(sinkScope(sink), options.includePlotlyJs)) {
    sink.write({ data: plotlyJsBundle(), metadata: {}, transient: {} }, false);
  }
  const channel = new DisplayChannel(sink);
  const draw = () => {
    const figure = trainingChart(events, { title, metrics: options.metrics });
    channel.show(plotlyBundle(figure, { withLibrary: false, height: options.height }));
  };
  const throttle = new Throttle(options.throttleMs ?? 500, draw, now);
  throttle.flush();
  return {
    id: channel.id,
    onEvent: () => throttle.request(),
    onFinish: () => throttle.flush(),
  };
}
