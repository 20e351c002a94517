/**
 * Rate limit for redraws: `request()` runs the redraw now when the interval has passed,
 * otherwise once when it has (a trailing run, so the last state always shows);
 * `flush()` runs it now, `cancel()` drops a pending run. The timer is unref'd: it never keeps a script alive.
 */
export class Throttle {
  private last = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly redraw: () => void,
    private readonly now: () => number = Date.now,
  ) {}

  request(): void {
    if (this.timer) return;
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0) {
      this.run();
      return;
    }
    this.timer = setTimeout(() => this.run(), wait);
    this.timer.unref();
  }

  flush(): void {
    this.run();
  }

  /** Drop a pending trailing run. */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private run(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.last = this.now();
    this.redraw();
  }
}
