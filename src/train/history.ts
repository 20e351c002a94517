/**
 * Training history as JSON Lines: one event object per line, appended as it happens, so
 * a notebook can tail it and a crash loses at most the line being written. Evaluation
 * events (by default) are fsynced: they are the ones worth not losing.
 *
 * Non-finite numbers become null (JSON has no NaN), e.g. an undefined ROC-AUC.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DataError } from "../errors";
import { removeDeadTemporariesOf, writeFileAtomic } from "../util/temporaries";

export interface HistoryEvent {
  /** "train", "eval", "checkpoint", ... */
  type: string;
  step?: number;
  epoch?: number;
  [key: string]: unknown;
}

export interface HistoryWriterOptions {
  /** Keep existing events (resume); default true. False starts a new file. */
  append?: boolean;
  /** Event types written through to disk with fsync; default ["eval"]. */
  syncTypes?: readonly string[];
}

export class HistoryWriter {
  readonly path: string;
  private fd: number | undefined;
  private readonly syncTypes: ReadonlySet<string>;

  constructor(file: string, options: HistoryWriterOptions = {}) {
    this.path = file;
    this.syncTypes = new Set(options.syncTypes ?? ["eval"]);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.fd = fs.openSync(file, (options.append ?? true) ? "a+" : "w");
    dropPartialLastLine(this.fd);
  }

  write(event: HistoryEvent): void {
    if (this.fd === undefined) {
      throw new DataError(`History ${this.path} is closed; cannot write a "${event.type}" event`, {
        path: this.path,
      });
    }
    fs.writeSync(this.fd, `${JSON.stringify(event)}\n`);
    if (this.syncTypes.has(event.type)) fs.fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === undefined) return;
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** A line cut short by a crash would glue onto the next event: cut it off before appending. */
function dropPartialLastLine(fd: number): void {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return;
  const tail = Buffer.alloc(Math.min(size, 64 * 1024));
  let end = size;
  while (end > 0) {
    const n = Math.min(tail.length, end);
    fs.readSync(fd, tail, 0, n, end - n);
    const nl = tail.subarray(0, n).lastIndexOf(10);
    if (nl >= 0) {
      const keep = end - n + nl + 1;
      if (keep !== size) fs.ftruncateSync(fd, keep);
      return;
    }
    end -= n;
  }
  fs.ftruncateSync(fd, 0);
}

/**
 * Parse JSON Lines text. A last line without its newline that does not parse is the
 * trace of a crash mid-write and is ignored; any other bad line is an error.
 */
export function parseHistory(text: string, source = "history"): HistoryEvent[] {
  const lines = text.split("\n");
  const events: HistoryEvent[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    try {
      const event = JSON.parse(line) as HistoryEvent;
      if (typeof event !== "object" || event === null || typeof event.type !== "string") {
        throw new Error('not an object with a string "type"');
      }
      events.push(event);
    } catch (e) {
      if (i === lines.length - 1) break; // unterminated last line: a cut-off write
      throw new DataError(
        `${source} line ${i + 1} is not a history event (${(e as Error).message}): ${line.slice(0, 80)}`,
        { source, line: i + 1 },
        { cause: e },
      );
    }
  }
  return events;
}

/** All events of a history file, in order. */
export function readHistory(file: string): HistoryEvent[] {
  return parseHistory(fs.readFileSync(file, "utf8"), file);
}

/**
 * Cut a history back to what a checkpoint at `step` had seen: events of later steps (a
 * crash after the checkpoint) are dropped, so the resumed run does not repeat them; a
 * torn last line goes too. The file is replaced atomically (a temporary renamed over
 * it). Returns the number of events dropped. A missing file stays missing.
 */
export function truncateHistory(file: string, step: number): number {
  removeDeadTemporariesOf(file);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw e;
  }
  const events = parseHistory(text, file);
  const kept = events.filter((e) => typeof e.step !== "number" || e.step <= step);
  const out = kept.map((e) => `${JSON.stringify(e)}\n`).join("");
  if (out === text) return 0;
  writeFileAtomic(file, out);
  return events.length - kept.length;
}
