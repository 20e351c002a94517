/**
 * Markdown tables from int8-kernels.js JSON files (one per thread count): per variant and
 * architecture, the time of one encoder layer's Linears (4 x H->H, H->4H, 4H->H) against
 * fp32 MatMul with pre-packed weights, and the error against fp32.
 *
 *   node build/bench/int8-report.js results-1thr.json results-2thr.json
 */
import { readFileSync } from "node:fs";

interface Row {
  arch: string;
  pass: "forward" | "backward";
  K: number;
  N: number;
  variant: string;
  threads: number;
  medianMs?: number;
  minMs?: number;
  maxMs?: number;
  maxRelErr?: number;
  meanRelErr?: number;
  error?: string;
}

interface Run {
  threads: number;
  tokens: number;
  rows: Row[];
}

const HIDDEN: Record<string, number> = { "35m": 480, "150m": 640, "650m": 1280 };

/** One layer's Linear time: 4 square, one up, one down (backward: the same, transposed). */
function layerMs(rows: Row[], arch: string, pass: string, variant: string): number | null {
  const H = HIDDEN[arch]!;
  const t = (K: number, N: number) =>
    rows.find(
      (r) => r.arch === arch && r.pass === pass && r.variant === variant && r.K === K && r.N === N,
    )?.medianMs;
  const sq = t(H, H);
  const up = t(H, 4 * H);
  const down = t(4 * H, H);
  return sq === undefined || up === undefined || down === undefined ? null : 4 * sq + up + down;
}

function main(): void {
  const runs = process.argv.slice(2).map((f) => JSON.parse(readFileSync(f, "utf8")) as Run);
  if (runs.length === 0) throw new Error("usage: int8-report.js RUN.json [RUN.json ...]");
  const archs = [...new Set(runs.flatMap((r) => r.rows.map((x) => x.arch)))];
  for (const pass of ["forward", "backward"] as const) {
    const variants = [
      ...new Set(runs.flatMap((r) => r.rows.filter((x) => x.pass === pass).map((x) => x.variant))),
    ];
    const cols = runs.flatMap((r) => archs.map((a) => ({ run: r, arch: a })));
    const head = [
      "variant",
      ...cols.map((c) => `${c.arch} ${c.run.threads} thr`),
      "max rel err",
      "mean rel err",
    ];
    const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
    for (const v of variants) {
      const cells = cols.map(({ run, arch }) => {
        const ms = layerMs(run.rows, arch, pass, v);
        const ref = layerMs(run.rows, arch, pass, "fp32 MatMul+Add");
        return ms === null || ref === null
          ? "—"
          : `${ms.toFixed(0)} ms (x${(ref / ms).toFixed(2)})`;
      });
      // Error: the worst over every shape and run (it does not depend on threads).
      const errs = runs.flatMap((r) =>
        r.rows.filter((x) => x.pass === pass && x.variant === v && x.maxRelErr !== undefined),
      );
      const failed = runs
        .flatMap((r) => r.rows)
        .find((x) => x.pass === pass && x.variant === v && x.error);
      const maxErr = errs.length ? Math.max(...errs.map((x) => x.maxRelErr!)) : null;
      const meanErr = errs.length ? Math.max(...errs.map((x) => x.meanRelErr!)) : null;
      lines.push(
        `| ${v} | ${cells.join(" | ")} | ${maxErr === null ? (failed ? `error: ${failed.error}` : "—") : maxErr.toExponential(1)} | ${meanErr === null ? "—" : meanErr.toExponential(1)} |`,
      );
    }
    process.stdout.write(
      `\n${pass === "forward" ? "Forward, y = x W + b" : "Backward, dX = dY W^T"}: one layer's Linears (4 x H->H, H->4H, 4H->H) at ${runs[0]!.tokens} tokens, median ms (x speed-up over fp32 MatMul with pre-packed W)\n\n${lines.join("\n")}\n`,
    );
  }
}

main();
