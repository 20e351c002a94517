/**
 * Where display output goes: a Jupyter front end through the tslab kernel's own
 * display-data writer, or the terminal.
 *
 * tslab's public `display.raw` sends strings only, but JupyterLab's plotly renderer
 * reads `application/vnd.plotly.v1+json` as a JSON object and a bundle should carry
 * several MIME types at once. The kernel keeps the writer of the running cell in
 * `tslab/dist/jupyter`'s `lastWriteDisplayData`: `(message, update)` sends
 * display_data, or update_display_data when `update` is true, with `message` as the
 * content verbatim. We find that module in require's cache rather than requiring it,
 * so that (a) outside a kernel nothing heavy is loaded, and (b) the module found is the
 * one the running kernel set, whichever copy of tslab that is.
 */
import { randomBytes } from "node:crypto";

/** MIME type -> value (a string, or a JSON object for JSON types). */
export type MimeBundle = Record<string, unknown>;

/** Content of a display_data / update_display_data message. */
export interface DisplayMessage {
  data: MimeBundle;
  metadata: Record<string, unknown>;
  transient: { display_id?: string };
}

/** Sends one message; `update` selects update_display_data. */
export type DisplayWriter = (message: DisplayMessage, update: boolean) => void;

export interface TextStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

export type DisplaySink =
  | { kind: "jupyter"; write: DisplayWriter }
  | { kind: "terminal"; out: TextStream; err: TextStream };

let override: DisplaySink | undefined;
let kernelModule: { lastWriteDisplayData?: unknown } | undefined;
let terminal: DisplaySink | undefined;

const JUPYTER_MODULE = /[\\/]tslab[\\/]dist[\\/]jupyter\.js$/;

/** The running tslab kernel's writer for the current cell, if there is one. */
export function kernelWriter(): DisplayWriter | undefined {
  const live = (m: typeof kernelModule) =>
    typeof m?.lastWriteDisplayData === "function"
      ? (m.lastWriteDisplayData as DisplayWriter)
      : undefined;
  const known = live(kernelModule);
  if (known) return known;
  for (const [file, mod] of Object.entries(require.cache)) {
    if (!JUPYTER_MODULE.test(file) || !mod) continue;
    const writer = live(mod.exports);
    if (writer) {
      kernelModule = mod.exports;
      return writer;
    }
  }
  return undefined;
}

/**
 * Replace the automatic choice (tests, or forcing terminal output in a notebook).
 * Pass nothing to return to automatic detection. Returns the previous override.
 */
export function setDisplaySink(sink?: DisplaySink): DisplaySink | undefined {
  const previous = override;
  override = sink;
  return previous;
}

/**
 * The sink to use now. A jupyter sink wraps the writer of the cell running now, so a
 * handle created in a cell keeps writing to that cell's output after it finishes.
 */
export function currentSink(): DisplaySink {
  if (override) return override;
  const write = kernelWriter();
  if (write) return { kind: "jupyter", write };
  terminal ??= { kind: "terminal", out: process.stdout, err: process.stderr };
  return terminal;
}

/** True inside a tslab kernel (or with a jupyter sink set). */
export function inNotebook(): boolean {
  return currentSink().kind === "jupyter";
}

/**
 * Identity of a cell run, for what its outputs share (plotly.js): tslab makes a new
 * writer for each execute request, and JupyterLab clears and replaces a cell's outputs
 * together. An injected sink counts as one run.
 */
export function sinkScope(sink: DisplaySink): object {
  if (sink === override || sink.kind === "terminal") return sink;
  return sink.write;
}

export function newDisplayId(): string {
  return randomBytes(8).toString("hex");
}

/**
 * One output area: the first `show` sends display_data with a display id, later ones
 * update_display_data with the same id, replacing the output in place.
 */
export class DisplayChannel {
  readonly id = newDisplayId();
  private shown = false;

  constructor(readonly sink: DisplaySink & { kind: "jupyter" }) {}

  show(data: MimeBundle, metadata: Record<string, unknown> = {}): void {
    const update = this.shown;
    this.shown = true;
    this.sink.write({ data, metadata, transient: { display_id: this.id } }, update);
  }
}

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
