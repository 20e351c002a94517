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
  /**
   * Set the total once it is known (a trainer's step count), and the amount already done
   * then (a resumed run): the eta counts from that point.
   */
  setTotal(total: number, done?: number): void;
  /**
   * Show the final state with the elapsed time; later calls do nothing. `done` defaults to
   * the total (pass less for work that stopped early).
   */
  finish(detail?: string, done?: number): void;
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
    let last = 0;
    return {
      id: "",
      update: (done, detail) => {
        last = done;
        line.update(done, total, detail);
      },
      setTotal: (n, done) => {
        total = n;
        if (done !== undefined) last = done;
      },
      finish: (detail, done) => {
        if (done !== undefined && done !== last) line.update(done, total, detail);
        line.finish(detail);
      },
    };
  }
  const now = options.now ?? Date.now;
  const channel = new DisplayChannel(sink);
  const started = now();
  // The eta comes from the pace since counting started (work may resume part-way).
  let base = { done: 0, at: started };
  let state = { done: 0, detail: undefined as string | undefined, final: false };

  const render = () => {
    const { done, detail, final } = state;
    const f = fraction(done, total);
    const t = now();
    const secs = (t - started) / 1000;
    let timing = "";
    if (final) timing = `done in ${secs.toFixed(1)}s`;
    else if (done > base.done && f < 1 && t > base.at) {
      const rate = (done - base.done) / ((t - base.at) / 1000);
      timing = `eta ${Math.round((total - done) / rate)}s`;
    }
    // Until the total is known: no numbers, and an indeterminate bar.
    const amount = total > 0 ? [`${(100 * f).toFixed(0)}%`, `${done}/${total}`] : [];
    const status = [...amount, timing, detail ?? ""].filter(Boolean).join(" ");
    const value = total > 0 ? `value="${done}" max="${total}" ` : "";
    const html =
      `<div class="esmkit-progress" style="font-family:monospace">` +
      `<span>${escapeHtml(label)}</span> ` +
      `<progress ${value}style="width:24em;vertical-align:middle"></progress> ` +
      `<span>${escapeHtml(status)}</span></div>`;
    channel.show({ "text/html": html, "text/plain": status ? `${label} ${status}` : label });
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
    setTotal(n, done) {
      if (state.final) return;
      total = n;
      if (done !== undefined) {
        base = { done, at: now() };
        state = { ...state, done };
      }
      throttle.request();
    },
    finish(detail, done) {
      if (state.final) return;
      state = { done: done ?? total, detail, final: true };
      throttle.flush();
    },
  };
}
