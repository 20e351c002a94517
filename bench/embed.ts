/**
 * Embedding throughput and peak memory: `embedToParquet` over a CSV or FASTA with the
 * facebook/esm2_t6_8M_UR50D architecture and RANDOM weights (seed 1; offline, so no Hub
 * weights: the speed and memory are those of the real model, the vectors are not).
 * Peak RSS is the process's high-water mark (VmHWM in /proc/self/status) after the run;
 * the load average is recorded too, as other work on the machine slows the run.
 *
 *   npm run build && node build/bench/embed.js --csv FILE [--id-column ACC] [--limit N]
 *     [--threads N] [--batch-size N] [--window N] [--out FILE] [--json RESULT.json]
 *
 * `--limit N` embeds the first N records only (file order), for a machine too slow or
 * too busy for the whole file: the result then says so (`records`).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { ensureBackend } from "../src/backend";
import {
  createEmbedder,
  embedToParquet,
  readSequenceRecords,
  type SequenceRecord,
} from "../src/embed";
import { esm2Config } from "../src/model/config";
import { Esm2Model } from "../src/model/esm2";

function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function* firstOf(
  records: AsyncIterable<SequenceRecord>,
  n: number,
): AsyncGenerator<SequenceRecord> {
  if (n <= 0) return;
  let i = 0;
  for await (const r of records) {
    yield r;
    if (++i >= n) return;
  }
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      csv: { type: "string" },
      fasta: { type: "string" },
      "id-column": { type: "string" },
      "sequence-column": { type: "string" },
      threads: { type: "string" },
      "batch-size": { type: "string", default: "8" },
      window: { type: "string", default: "256" },
      out: { type: "string", default: path.join(tmpdir(), "esmkit-bench-embed.parquet") },
      json: { type: "string" },
      limit: { type: "string" },
    },
  });
  const limit = a.limit === undefined ? undefined : Number(a.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new Error(`--limit must be a positive integer, got ${a.limit}`);
  }
  const input = {
    csv: a.csv,
    fasta: a.fasta,
    idColumn: a["id-column"],
    sequenceColumn: a["sequence-column"],
  };
  await ensureBackend();
  const load0 = loadavg();
  const model = Esm2Model.random(esm2Config("esm2_t6_8M_UR50D"), { seed: 1 });
  const threads = a.threads ? Number(a.threads) : availableParallelism();
  const embedder = createEmbedder(model, { threads, source: "esm2_t6_8M_UR50D (random weights)" });
  const rssBefore = peakRssMiB();
  let lastReport = 0;
  const t0 = Date.now();
  const summary = await embedToParquet({
    model: embedder,
    ...(limit === undefined ? input : { records: firstOf(readSequenceRecords(input), limit) }),
    out: a.out!,
    overwrite: true,
    batchSize: Number(a["batch-size"]),
    window: Number(a.window),
    onProgress: (p) => {
      if (p.proteins - lastReport >= 500) {
        lastReport = p.proteins;
        const secs = (Date.now() - t0) / 1000;
        process.stderr.write(
          `${p.proteins} proteins in ${secs.toFixed(0)} s (${(p.proteins / secs).toFixed(2)}/s), peak RSS ${peakRssMiB().toFixed(0)} MiB, load ${loadavg()
            .map((x) => x.toFixed(1))
            .join(" ")}\n`,
        );
      }
    },
  });
  const result = {
    model: "esm2_t6_8M_UR50D architecture, random weights",
    input: path.basename(a.csv ?? a.fasta ?? ""),
    records: limit === undefined ? "all" : `the first ${limit}`,
    proteins: summary.rows,
    truncated: summary.truncated,
    seconds: summary.seconds,
    proteinsPerSecond: summary.rows / summary.seconds,
    peakRssMiB: peakRssMiB(),
    peakRssMiBAfterModelLoad: rssBefore,
    parquetMiB: summary.bytes / 2 ** 20,
    threads,
    batchSize: Number(a["batch-size"]),
    window: Number(a.window),
    cores: availableParallelism(),
    loadAverageBefore: load0,
    loadAverageAfter: loadavg(),
    node: process.version,
    date: new Date().toISOString(),
  };
  embedder.dispose();
  model.dispose();
  const text = `${JSON.stringify(result, null, 2)}\n`;
  if (a.json) writeFileSync(a.json, text);
  process.stdout.write(text);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
