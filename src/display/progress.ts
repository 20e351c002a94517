/**
 * A progress bar that redraws in place: in a notebook one output updated through its
 * display id, on a terminal the CLI's progress line on stderr.
 */
import { progressLine } from "../util/progress";
import { DisplayChannel, type DisplaySink, escapeHtml } from "./sink";
import { Throttle } from "./throttle";

export interface ProgressBar {
  /** The display id (empty on a terminal). */
  readonly id: string;
  /** Set the amount done; `detail` is shown after the numbers. */
  update(done: number, detail?: string): void;
  /** Show the final state with the elapsed time; later calls do nothing. */
  finish(detail?: string): void;
}

export interface ProgressOptions {
  /** Least time between two notebook redraws; default 200 ms. */
  throttleMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

function fraction(done: number, total: number): number {
  return total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
}

export function progressBar(
  sink: DisplaySink,
  label: string,
  total: number,
  options: ProgressOptions = {},
): ProgressBar {
  if (sink.kind === "terminal") {
    const line = progressLine(label, { stream: sink.err as NodeJS.WriteStream });
    return {
      id: "",
      update: (done, detail) => line.update(done, total, detail),
      finish: (detail) => line.finish(detail),
    };
  }
  const now = options.now ?? Date.now;
  const channel = new DisplayChannel(sink);
  const started = now();
  let state = { done: 0, detail: undefined as string | undefined, final: false };

  const render = () => {
    const { done, detail, final } = state;
    const f = fraction(done, total);
    const secs = (now() - started) / 1000;
    const timing = final
      ? `done in ${secs.toFixed(1)}s`
      : f > 0 && f < 1
        ? `eta ${Math.round((secs * (1 - f)) / f)}s`
        : "";
    const status = [`${(100 * f).toFixed(0)}%`, `${done}/${total}`, timing, detail ?? ""]
      .filter(Boolean)
      .join(" ");
    const html =
      `<div class="esmkit-progress" style="font-family:monospace">` +
      `<span>${escapeHtml(label)}</span> ` +
      `<progress value="${done}" max="${total}" style="width:24em;vertical-align:middle"></progress> ` +
      `<span>${escapeHtml(status)}</span></div>`;
    channel.show({ "text/html": html, "text/plain": `${label} ${status}` });
  };
  const throttle = new Throttle(options.throttleMs ?? 200, render, now);

  throttle.flush();
  return {
    id: channel.id,
    update(done, detail) {
      if (state.final) return;
      state = { done, detail, final: false };
      throttle.request();
    },
    finish(detail) {
      if (state.final) return;
      state = { done: total, detail, final: true };
      throttle.flush();
    },
  };
}
