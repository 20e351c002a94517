/**
 * Progress for long work on the terminal: a redrawn bar on a TTY, a line every few
 * seconds otherwise (logs, CI, notebooks capturing stderr).
 */
export interface ProgressLine {
  update(done: number, total: number | undefined, detail?: string): void;
  finish(detail?: string): void;
}

function human(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

export function formatBytes(n: number): string {
  return human(n);
}

export function progressLine(
  label: string,
  options: { stream?: NodeJS.WriteStream; bytes?: boolean; quiet?: boolean } = {},
): ProgressLine {
  const stream = options.stream ?? process.stderr;
  const tty = Boolean(stream.isTTY);
  const fmt = options.bytes ? human : (n: number) => String(n);
  const started = Date.now();
  let lastPrint = 0;
  let finished = false;
  const render = (done: number, total: number | undefined, detail?: string) => {
    const pct = total ? Math.min(100, (100 * done) / total) : undefined;
    const width = 24;
    const bar =
      pct === undefined
        ? ""
        : `[${"#".repeat(Math.round((pct / 100) * width)).padEnd(width, ".")}] `;
    const amount = total ? `${fmt(done)}/${fmt(total)}` : fmt(done);
    const secs = (Date.now() - started) / 1000;
    const eta =
      pct !== undefined && pct > 0 && pct < 100
        ? ` eta ${Math.round((secs * (100 - pct)) / pct)}s`
        : "";
    return `${label} ${bar}${pct === undefined ? "" : `${pct.toFixed(0)}% `}${amount}${eta}${detail ? ` ${detail}` : ""}`;
  };
  return {
    update(done, total, detail) {
      if (options.quiet || finished) return;
      const now = Date.now();
      if (tty) {
        if (now - lastPrint < 100) return;
        stream.write(`\r${render(done, total, detail)}\x1b[K`);
      } else {
        if (now - lastPrint < 2000) return;
        stream.write(`${render(done, total, detail)}\n`);
      }
      lastPrint = now;
    },
    finish(detail) {
      if (options.quiet || finished) return;
      finished = true;
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      stream.write(
        `${tty ? "\r" : ""}${label} done in ${secs}s${detail ? ` ${detail}` : ""}${tty ? "\x1b[K" : ""}\n`,
      );
    },
  };
}

/** One progress line per transfer (e.g. S3 downloads and uploads), finished when complete. */
export function transferPrinter(
  quiet: boolean | undefined,
): (e: { direction: string; uri: string; bytes: number; total?: number }) => void {
  const bars = new Map<string, ProgressLine>();
  return (e) => {
    const key = `${e.direction} ${e.uri}`;
    let bar = bars.get(key);
    if (!bar) {
      bar = progressLine(`${e.direction === "upload" ? "uploading" : "downloading"} ${e.uri}`, {
        bytes: true,
        quiet,
      });
      bars.set(key, bar);
    }
    if (e.total !== undefined && e.bytes >= e.total) bar.finish(formatBytes(e.total));
    else bar.update(e.bytes, e.total);
  };
}
