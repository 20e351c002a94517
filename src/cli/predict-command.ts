import { once } from "node:events";
import { constants, createWriteStream, type WriteStream } from "node:fs";
import { access, rename, rm, stat } from "node:fs/promises";
import * as path from "node:path";
import { DEFAULT_SORT_WINDOW, inInputOrder, lengthSortedBatches } from "../data/length-batches";
import {
  type RecordSourceOptions,
  readSequenceRecords,
  type SequenceRecord,
} from "../embed/records";
import { ConfigError, DataError } from "../errors";
import { QUANTIZE_CHOICES } from "../onnx/select";
import { DEFAULT_THRESHOLD, type TaskPrediction, toPrediction } from "../serve/prediction";
import { loadPredictor, type Predictor } from "../serve/predictor";
import { normaliseSequence, TOO_LONG_POLICIES, type TooLongPolicy } from "../serve/sequences";
import { flag } from "../util/flags";
import { ownedTemporary, removeDeadTemporariesOf, trackTemporary } from "../util/temporaries";
import { defineCommand } from "./command";

/** CSV cell: quoted when it holds a separator, a quote or a line break. */
function csvCell(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** The records of a FASTA or CSV file (embed's reader: streamed, a cut-off last row refused). */
async function* fileRecords(options: RecordSourceOptions): AsyncGenerator<SequenceRecord> {
  let n = 0;
  for await (const r of readSequenceRecords(options)) {
    n++;
    yield r;
  }
  if (n === 0 && options.fasta !== undefined) {
    throw new DataError(`${options.fasta}: no FASTA records`, {});
  }
}

async function* sequenceRecords(sequences: string[]): AsyncGenerator<SequenceRecord> {
  for (let i = 0; i < sequences.length; i++) {
    yield { id: `seq${i + 1}`, sequence: sequences[i]!, where: `--sequence #${i + 1}` };
  }
}

interface Output {
  write(text: string): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** stdout, or a file written under a temporary name and renamed when complete. */
function openOutput(out: string | undefined): Output {
  if (!out) {
    return {
      async write(text) {
        if (!process.stdout.write(text)) await once(process.stdout, "drain");
      },
      async commit() {},
      async abort() {},
    };
  }
  removeDeadTemporariesOf(out);
  const partial = ownedTemporary(out, "partial");
  const untrack = trackTemporary(partial);
  const stream: WriteStream = createWriteStream(partial);
  const failed = once(stream, "error").then(([e]) => {
    throw e;
  });
  failed.catch(() => {});
  const close = () => new Promise<void>((resolve) => stream.end(resolve));
  return {
    async write(text) {
      if (!stream.write(text)) await Promise.race([once(stream, "drain"), failed]);
    },
    async commit() {
      await Promise.race([close(), failed]);
      await rename(partial, out);
      untrack();
    },
    async abort() {
      stream.destroy();
      await rm(partial, { force: true });
      untrack();
    },
  };
}

/**
 * Fail before the model loads when --out cannot be written: its folder must exist
 * (it is not created, so a typo does not make folders) and be writable, and --out
 * must not be a folder.
 */
async function checkOutputFile(out: string): Promise<void> {
  const dir = path.dirname(path.resolve(out));
  const bad = (why: string) =>
    new ConfigError(`--out ${JSON.stringify(out)}: ${why}`, { out, dir });
  const info = await stat(dir).catch(() => undefined);
  if (!info) throw bad(`the folder ${dir} does not exist; create it first`);
  if (!info.isDirectory()) throw bad(`${dir} is not a folder`);
  await access(dir, constants.W_OK).catch(() => {
    throw bad(`the folder ${dir} is not writable`);
  });
  if ((await stat(out).catch(() => undefined))?.isDirectory()) {
    throw bad("is a folder; give a file name");
  }
}

interface PredictRunOptions {
  batchSize: number;
  tooLong: TooLongPolicy;
  format: "jsonl" | "csv";
  /** Multi-label: the probability at or above which a label is predicted. */
  threshold: number;
}

/** CSV columns by task: the top class and p_<label> per class; the predicted label set
 * (joined with ";") and p_<label>; or value_<target>. */
function csvColumns(predictor: Predictor): string[] {
  const labels = predictor.labels;
  if (predictor.problemType === "regression")
    return ["id", ...labels.map((l) => `value_${l}`), "truncated", "length"];
  const head =
    predictor.problemType === "multi_label_classification"
      ? ["id", "labels", "label", "score"]
      : ["id", "label", "score"];
  return [...head, ...labels.map((l) => `p_${l}`), "truncated", "length"];
}

function csvCells(predictor: Predictor, id: string, p: TaskPrediction, length: number): string[] {
  const labels = predictor.labels;
  const tail = [String(p.truncated), String(length)];
  if ("values" in p) return [id, ...labels.map((l) => String(p.values[l])), ...tail];
  const probs = labels.map((l) => String(p.probabilities[l]));
  const head =
    "threshold" in p
      ? [id, p.labels.join(";"), p.label, String(p.score)]
      : [id, p.label, String(p.score)];
  return [...head, ...probs, ...tail];
}

/** Runs at most `n` of the functions given to it at a time. */
function limiter(n: number): <T>(f: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (f) => {
    while (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await f();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

/**
 * Predict every record and write rows in input order; returns counts. Records are read
 * in windows of DEFAULT_SORT_WINDOW (or --batch-size, if larger), each window sorted by
 * length into batches (src/data/length-batches.ts: little padding), and its rows written
 * once all its batches are back. Up to `concurrency` batches run at once (worker
 * threads), and the next window's batches start while the last of the previous finish.
 */
async function predictAll(
  predictor: Predictor,
  records: AsyncIterable<SequenceRecord>,
  output: Output,
  options: PredictRunOptions,
): Promise<{ rows: number; truncated: number }> {
  const answer = { problemType: predictor.problemType, threshold: options.threshold };
  if (options.format === "csv") {
    await output.write(`${csvColumns(predictor).map(csvCell).join(",")}\n`);
  }
  let rows = 0;
  let truncated = 0;
  const window = Math.max(DEFAULT_SORT_WINDOW, options.batchSize);
  const limit = limiter(Math.max(1, predictor.concurrency ?? 1));
  const runWindow = async (records: SequenceRecord[]): Promise<string> => {
    const seqs = records.map((r) =>
      normaliseSequence(r.sequence, {
        maxLength: predictor.maxLength,
        tooLong: options.tooLong,
        where: r.where,
      }),
    );
    const batches = lengthSortedBatches(
      seqs.map((s) => s.sequence.length),
      { batchSize: options.batchSize, window: records.length },
    );
    const results = await Promise.all(
      batches.map((b) => limit(() => predictor.predict(b.map((i) => seqs[i]!.sequence)))),
    );
    const probs = inInputOrder(batches, results, records.length);
    const lines: string[] = [];
    for (let i = 0; i < records.length; i++) {
      const p = toPrediction(probs[i]!, seqs[i]!.truncated, undefined, answer);
      const length = seqs[i]!.length;
      if (p.truncated) truncated++;
      if (options.format === "jsonl") {
        lines.push(JSON.stringify({ id: records[i]!.id, ...p, length }));
      } else {
        lines.push(csvCells(predictor, records[i]!.id, p, length).map(csvCell).join(","));
      }
    }
    rows += records.length;
    return `${lines.join("\n")}\n`;
  };
  let pending: SequenceRecord[] = [];
  // At most two windows in flight: the one being finished and the next.
  const inFlight: Promise<string>[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const p = runWindow(pending);
    p.catch(() => {}); // observed when its turn to be written comes
    inFlight.push(p);
    pending = [];
    if (inFlight.length >= 2) await output.write(await inFlight.shift()!);
  };
  try {
    for await (const r of records) {
      pending.push(r);
      if (pending.length >= window) await flush();
    }
    await flush();
    while (inFlight.length > 0) await output.write(await inFlight.shift()!);
  } finally {
    // A failure leaves no unobserved rejections behind.
    await Promise.allSettled(inFlight);
  }
  return { rows, truncated };
}

export const predictCommand = defineCommand({
  name: "predict",
  summary: "classify sequences (--sequence, FASTA or CSV) -> JSON Lines or CSV",
  description: "Classify protein sequences; one output row per sequence, in input order.",
  flags: {
    model: flag.string("model directory", { value: "DIR", required: true }),
    sequence: flag.repeated("a sequence (ids seq1, seq2, ...)", { value: "S" }),
    fasta: flag.string('FASTA: multi-line records, lowercase, a final "*", CRLF', {
      value: "FILE|URL",
    }),
    csv: flag.string("CSV with an id and a sequence column", { value: "FILE|URL" }),
    "id-column": flag.string('CSV id column (without it: "id", else the row number)', {
      value: "NAME",
      requires: ["csv"],
    }),
    "sequence-column": flag.string("CSV sequence column", {
      value: "NAME",
      default: "sequence",
      requires: ["csv"],
    }),
    format: flag.choice(["jsonl", "csv"], "output format", { default: "jsonl" }),
    out: flag.string("output file (written whole or not at all)", {
      value: "FILE",
      defaultText: "stdout",
    }),
    "batch-size": flag.int("sequences per model call (sorted by length in windows of 256)", {
      min: 1,
      default: 8,
    }),
    "too-long": flag.choice(
      TOO_LONG_POLICIES,
      'sequences over the model\'s max length: truncate (rows say "truncated": true) or reject',
      { default: "truncate" },
    ),
    quantize: flag.choice(QUANTIZE_CHOICES, "encoder weights as int8 (onnx engine) or none", {
      defaultText: "ESMKIT_QUANTIZE, else none",
    }),
    threshold: flag.float("multi-label models: a label is predicted at or above this probability", {
      min: 0,
      max: 1,
      default: DEFAULT_THRESHOLD,
    }),
    quiet: flag.bool("no summary on stderr"),
  },
  oneOf: [["sequence", "fasta", "csv"]],
  notes: `
JSON Lines rows: {"id", "label", "score", "probabilities": {label: p, ...},
"truncated", "length"}; CSV columns: id, label, score, p_<label> per class,
truncated, length (residues before truncation). Multi-label models: "probabilities"
holds each label's own probability (sigmoid) and rows add "labels" (those >=
--threshold) and "threshold" (CSV: a "labels" column, joined with ";"). Regression
models: rows hold "values": {target: value, ...} (CSV: value_<target> columns).`,
  async run(v) {
    const { format, "batch-size": batchSize, "too-long": tooLong } = v;
    if (v.out !== undefined) await checkOutputFile(v.out);

    const started = Date.now();
    const predictor = await loadPredictor(
      v.model,
      v.quantize === undefined ? undefined : { quantize: v.quantize },
    );
    const records = v.sequence
      ? sequenceRecords(v.sequence)
      : fileRecords(
          v.fasta
            ? { fasta: v.fasta }
            : { csv: v.csv!, idColumn: v["id-column"], sequenceColumn: v["sequence-column"] },
        );
    const output = openOutput(v.out);
    let result: { rows: number; truncated: number };
    try {
      result = await predictAll(predictor, records, output, {
        batchSize,
        tooLong,
        format,
        threshold: v.threshold,
      });
      await output.commit();
    } catch (e) {
      await output.abort();
      throw e;
    } finally {
      await predictor.dispose?.();
    }
    if (!v.quiet) {
      process.stderr.write(
        `esmkit predict: ${result.rows} sequences (${result.truncated} truncated to ${predictor.maxLength - 2} residues) in ${((Date.now() - started) / 1000).toFixed(1)} s -> ${v.out ?? "stdout"}\n`,
      );
    }
    return 0;
  },
});
