/**
 * Micro-batching: sequences from concurrent requests share predictor calls.
 *
 * A request submits its items as one job. Items wait in a FIFO queue; a batch of up
 * to `maxBatchSize` items goes to the predictor as soon as that many are waiting, or
 * when the oldest has waited `maxWaitMs`, whichever comes first, and at most
 * `concurrency` batches run at once (one by default: the model uses the CPU fully).
 * A job's items may be spread over several batches; its answer keeps their order.
 *
 * Back-pressure and deadlines:
 * - at most `maxQueue` items wait (running batches not counted); a job that does not
 *   fit is refused whole with QueueFullError (HTTP 503 + Retry-After);
 * - each job has `timeoutMs` from submission: when it expires the job fails with
 *   PredictionTimeoutError (HTTP 504) and its items still waiting leave the queue; items
 *   already in a running batch are computed and their results dropped;
 * - an AbortSignal (the client went away) removes the job the same way.
 */
import {
  PredictionError,
  PredictionTimeoutError,
  QueueFullError,
  ServeError,
  ShuttingDownError,
} from "./errors";

export interface BatcherOptions {
  /** Items per predictor call. */
  maxBatchSize: number;
  /** How long the first waiting item waits for company, in ms (0: flush at once). */
  maxWaitMs: number;
  /** Items allowed to wait; a job that would exceed it is refused. */
  maxQueue: number;
  /** Per job, from submission to answer, in ms. */
  timeoutMs: number;
  /** Batches running at the same time (default 1). */
  concurrency?: number;
}

export interface BatcherStats {
  /** Predictor calls made. */
  batches: number;
  /** Items sent to the predictor. */
  items: number;
  /** Largest batch so far. */
  largestBatch: number;
  /** Jobs refused because the queue was full. */
  refused: number;
  /** Jobs failed by their timeout. */
  timedOut: number;
}

interface Job<I, O> {
  items: I[];
  results: O[];
  /** Items not yet answered. */
  left: number;
  /** Items still in the queue (not taken by a batch). */
  inQueue: number;
  done: boolean;
  resolve(results: O[]): void;
  reject(e: unknown): void;
  timer?: NodeJS.Timeout;
  cleanup?: () => void;
}

interface Entry<I, O> {
  job: Job<I, O>;
  index: number;
  at: number;
}

export class MicroBatcher<I, O> {
  readonly options: Required<BatcherOptions>;
  readonly stats: BatcherStats = { batches: 0, items: 0, largestBatch: 0, refused: 0, timedOut: 0 };
  private queue: Entry<I, O>[] = [];
  private head = 0;
  private waiting = 0;
  private running = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  /** Moving average of a batch's duration, for Retry-After. */
  private batchMs = 0;

  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    options: BatcherOptions,
  ) {
    this.options = { concurrency: 1, ...options };
    for (const key of ["maxBatchSize", "maxQueue", "concurrency"] as const) {
      const v = this.options[key];
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`${key} must be an integer >= 1, got ${v}`);
      }
    }
    for (const key of ["maxWaitMs", "timeoutMs"] as const) {
      const v = this.options[key];
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`${key} must be >= 0, got ${v}`);
    }
  }

  /** Items waiting for a batch. */
  get queued(): number {
    return this.waiting;
  }

  /** Batches running now. */
  get active(): number {
    return this.running;
  }

  /** Predict `items`; resolves with one result per item, in order. */
  submit(items: I[], signal?: AbortSignal): Promise<O[]> {
    if (this.closed) {
      return Promise.reject(new ShuttingDownError("The server is shutting down; no new work"));
    }
    if (items.length === 0) return Promise.resolve([]);
    const { maxQueue, timeoutMs } = this.options;
    if (this.waiting + items.length > maxQueue) {
      this.stats.refused++;
      return Promise.reject(
        new QueueFullError(
          `The prediction queue is full (${this.waiting} of ${maxQueue} sequences waiting; this request has ${items.length}); retry later`,
          {
            queued: this.waiting,
            maxQueue,
            requested: items.length,
            retryAfterSeconds: this.retryAfterSeconds(),
          },
        ),
      );
    }
    return new Promise<O[]>((resolve, reject) => {
      const job: Job<I, O> = {
        items,
        results: new Array(items.length),
        left: items.length,
        inQueue: items.length,
        done: false,
        resolve,
        reject,
      };
      const now = Date.now();
      for (let i = 0; i < items.length; i++) this.queue.push({ job, index: i, at: now });
      this.waiting += items.length;
      job.timer = setTimeout(() => {
        this.stats.timedOut++;
        this.fail(
          job,
          new PredictionTimeoutError(
            `The prediction did not finish within ${timeoutMs} ms; the server is busy, retry later`,
            { timeoutMs },
          ),
        );
      }, timeoutMs);
      if (signal) {
        const onAbort = () => this.fail(job, new Error("The request was cancelled"));
        if (signal.aborted) return onAbort();
        signal.addEventListener("abort", onAbort, { once: true });
        job.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      this.schedule();
    });
  }

  /** Resolves when nothing waits and nothing runs. */
  idle(): Promise<void> {
    if (this.waiting === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Refuse new jobs; jobs still waiting fail with `error` (running batches finish). */
  close(error: Error = new ShuttingDownError("The server is shutting down")): void {
    this.closed = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    for (let i = this.head; i < this.queue.length; i++) {
      const job = this.queue[i]!.job;
      if (!job.done) this.fail(job, error);
    }
    this.queue = [];
    this.head = 0;
    this.notifyIdle();
  }

  private retryAfterSeconds(): number {
    const batches = Math.ceil(this.waiting / this.options.maxBatchSize) + 1;
    return Math.max(1, Math.ceil((batches * this.batchMs) / this.options.concurrency / 1000));
  }

  private fail(job: Job<I, O>, error: unknown): void {
    if (job.done) return;
    job.done = true;
    this.waiting -= job.inQueue;
    job.inQueue = 0;
    clearTimeout(job.timer);
    job.cleanup?.();
    job.reject(error);
    this.notifyIdle();
  }

  /** Drop finished jobs' entries from the front; the oldest live entry or undefined. */
  private peek(): Entry<I, O> | undefined {
    while (this.head < this.queue.length && this.queue[this.head]!.job.done) this.head++;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return this.queue[this.head];
  }

  private schedule(): void {
    if (this.closed || this.running >= this.options.concurrency) return;
    const oldest = this.peek();
    if (!oldest) return;
    const waited = Date.now() - oldest.at;
    if (this.waiting >= this.options.maxBatchSize || waited >= this.options.maxWaitMs) {
      this.flush();
      return;
    }
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        this.schedule();
      }, this.options.maxWaitMs - waited);
    }
  }

  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch: Entry<I, O>[] = [];
    while (batch.length < this.options.maxBatchSize) {
      const e = this.peek();
      if (!e) break;
      this.head++;
      e.job.inQueue--;
      this.waiting--;
      batch.push(e);
    }
    if (batch.length === 0) return;
    this.running++;
    this.stats.batches++;
    this.stats.items += batch.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
    const started = Date.now();
    void this.runBatch(batch).finally(() => {
      const ms = Date.now() - started;
      this.batchMs = this.batchMs === 0 ? ms : 0.8 * this.batchMs + 0.2 * ms;
      this.running--;
      this.schedule();
      this.notifyIdle();
    });
    // More items may be ready for another concurrent batch.
    this.schedule();
  }

  private async runBatch(batch: Entry<I, O>[]): Promise<void> {
    let results: O[];
    try {
      results = await this.run(batch.map((e) => e.job.items[e.index]!));
      if (!Array.isArray(results) || results.length !== batch.length) {
        throw new PredictionError(
          `The predictor answered ${Array.isArray(results) ? results.length : typeof results} results for ${batch.length} sequences`,
          { expected: batch.length },
        );
      }
    } catch (e) {
      const error =
        e instanceof ServeError
          ? e
          : new PredictionError(
              `The prediction failed: ${(e as Error)?.message ?? e}`,
              {},
              {
                cause: e,
              },
            );
      for (const entry of batch) this.fail(entry.job, error);
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const { job, index } = batch[i]!;
      if (job.done) continue;
      job.results[index] = results[i]!;
      if (--job.left === 0) {
        job.done = true;
        clearTimeout(job.timer);
        job.cleanup?.();
        job.resolve(job.results);
      }
    }
  }

  private notifyIdle(): void {
    if (this.waiting !== 0 || this.running !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
