/**
 * DeepLoc-2.0 -> tokenized train/test Parquet, as the seed workflow does with pandas,
 * `datasets` and the ESM-2 tokenizer, plus what it lacked: every dropped row counted
 * by reason with its line number, a stratified or homology-partition hold-out split,
 * and a stats.json a notebook can chart.
 *
 * Every protein appears once: a row whose id or sequence was seen on an earlier kept
 * row is dropped as `duplicate` (the first one stays), so no sequence can sit in both
 * splits. A last row that no line break ends may have been cut off with the file; it
 * is dropped as `unterminated_last_row`, with a warning.
 */
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import pl from "nodejs-polars";
import { ConfigError, DataError } from "../errors";
import { openOutputDir, openRead, type TransferProgress } from "../io/storage";
import { EsmTokenizer } from "../tokenizer/esm-tokenizer";
import { balancedClassWeights } from "../util/class-weights";
import { SeededRandom } from "../util/random";
import { printable, readCsv } from "./csv";

export interface PrepareOptions {
  /** Local path or http(s) URL of the DeepLoc CSV (as published). */
  input: string;
  /** Output directory (created; must not exist unless `overwrite`). */
  out: string;
  /** 0/1 column used as the label (default "Membrane"). */
  labelColumn?: string;
  /** Keep sequences with at least this many residues (default 100). */
  minLength?: number;
  /** Keep sequences with at most this many residues (default 512). */
  maxLength?: number;
  /** Tokenizer max_length, `<cls>`/`<eos>` included (default 512, as the seed workflow). */
  tokenMaxLength?: number;
  /** Fraction of rows in the test split (default 0.2). */
  testSize?: number;
  /** Seed of the split (default 42). */
  seed?: number;
  /** Keep the class ratio equal in both splits (default false, as the seed workflow). */
  stratify?: boolean;
  /** Use DeepLoc homology partition K as the test split instead of a random one. */
  holdoutPartition?: number;
  /** Replace an existing output directory. */
  overwrite?: boolean;
  /** Tokenizer to use (default: the ESM-2 vocabulary). */
  tokenizer?: EsmTokenizer;
  onProgress?: (event: PrepareProgress) => void;
}

export interface PrepareProgress {
  phase: "read" | "split" | "write" | "done";
  bytes?: number;
  total?: number;
  rows?: number;
}

export const DEEPLOC_REQUIRED = ["ACC", "Kingdom", "Partition", "Sequence"] as const;

export type DropReason =
  | "malformed_row"
  | "empty_sequence"
  | "invalid_characters"
  | "invalid_label"
  | "invalid_partition"
  | "duplicate"
  | "unterminated_last_row";
export type FilterReason = "too_short" | "too_long";

export interface ReasonCount {
  count: number;
  /** The first line numbers (1-based, header = line 1), at most 20. */
  firstLines: number[];
  /** A few concrete examples, e.g. the bad character and its position. */
  examples: string[];
}

export interface SplitStats {
  rows: number;
  classCounts: Record<string, number>;
}

export interface LengthSummary {
  min: number;
  max: number;
  mean: number;
  median: number;
  p05: number;
  p95: number;
}

export interface PrepareStats {
  source: string;
  labelColumn: string;
  options: {
    minLength: number;
    maxLength: number;
    tokenMaxLength: number;
    testSize: number | null;
    seed: number;
    stratify: boolean;
    holdoutPartition: number | null;
  };
  rowsRead: number;
  rowsKept: number;
  dropped: Partial<Record<DropReason, ReasonCount>>;
  /**
   * Dropped duplicates whose label differs from the kept first row's (the first row's
   * label is the one kept).
   */
  duplicateLabelConflicts: ReasonCount;
  filtered: Partial<Record<FilterReason, ReasonCount>>;
  /** Kept rows whose tokens were cut to `tokenMaxLength`. */
  truncated: number;
  classCounts: Record<string, number>;
  splits: { train: SplitStats; test: SplitStats };
  length: LengthSummary;
  /** Balanced class weights from the TRAIN labels: n / (classes * count); null if a class is absent. */
  classWeights: number[] | null;
  columns: string[];
  /** What deserves a look before training (e.g. a file that may be cut off). */
  warnings: string[];
  seconds: number;
}

export interface PrepareResult {
  out: string;
  files: string[];
  stats: PrepareStats;
}

interface Row {
  id: string;
  sequence: string;
  kingdom: string;
  partition: number;
  label: number;
}

const MAX_LINES = 20;
const MAX_EXAMPLES = 5;
const MAX_COLUMNS_SHOWN = 40;

function checkOptions(o: PrepareOptions) {
  const minLength = o.minLength ?? 100;
  const maxLength = o.maxLength ?? 512;
  const tokenMaxLength = o.tokenMaxLength ?? 512;
  const seed = o.seed ?? 42;
  const testSize = o.testSize ?? 0.2;
  const bad = (field: string, value: unknown, accepted: string) =>
    new ConfigError(`Invalid ${field}: ${JSON.stringify(value)}; expected ${accepted}`, {
      field,
      value,
    });
  if (!Number.isInteger(minLength) || minLength < 0)
    throw bad("minLength", minLength, "an integer >= 0");
  if (!Number.isInteger(maxLength) || maxLength < minLength) {
    throw bad("maxLength", maxLength, `an integer >= minLength (${minLength})`);
  }
  if (!Number.isInteger(tokenMaxLength) || tokenMaxLength < 3) {
    throw bad("tokenMaxLength", tokenMaxLength, "an integer >= 3");
  }
  if (!Number.isInteger(seed)) throw bad("seed", seed, "an integer");
  if (!(testSize > 0 && testSize < 1))
    throw bad("testSize", testSize, "a fraction between 0 and 1");
  if (o.holdoutPartition !== undefined && !Number.isInteger(o.holdoutPartition)) {
    throw bad("holdoutPartition", o.holdoutPartition, "a DeepLoc partition number (0-4)");
  }
  if (o.holdoutPartition !== undefined && o.stratify) {
    throw new ConfigError(
      "stratify and holdoutPartition exclude each other: a partition split is fixed",
      {},
    );
  }
  return {
    minLength,
    maxLength,
    tokenMaxLength,
    seed,
    testSize,
    labelColumn: o.labelColumn ?? "Membrane",
  };
}

function tally(r: ReasonCount, line: number, example?: string) {
  r.count++;
  if (r.firstLines.length < MAX_LINES) r.firstLines.push(line);
  if (example && r.examples.length < MAX_EXAMPLES) r.examples.push(example);
}

function note(
  table: Partial<Record<string, ReasonCount>>,
  reason: string,
  line: number,
  example?: string,
) {
  let r = table[reason];
  if (!r) {
    r = { count: 0, firstLines: [], examples: [] };
    table[reason] = r;
  }
  tally(r, line, example);
}

/** Locate the columns we need, or fail naming what is missing and what was found. */
export function resolveColumns(header: string[], labelColumn: string): Record<string, number> {
  const index = new Map<string, number>();
  header.forEach((h, i) => {
    const name = h.trim();
    if (!index.has(name)) index.set(name, i);
  });
  const wanted = [...DEEPLOC_REQUIRED, labelColumn];
  const missing = wanted.filter((c) => !index.has(c));
  if (missing.length > 0) {
    // Header names are printed escaped and capped: the "header" may be any bytes.
    const found = header
      .slice(0, MAX_COLUMNS_SHOWN)
      .map((h) => (h === "" ? "(unnamed)" : printable(h, 60)));
    if (header.length > MAX_COLUMNS_SHOWN) found.push(`... (${header.length} columns)`);
    throw new DataError(
      `Missing column${missing.length > 1 ? "s" : ""} ${missing.map((m) => `"${printable(m, 60)}"`).join(", ")}; found: ${found.join(", ")}`,
      { missing, found: header },
    );
  }
  return Object.fromEntries(wanted.map((c) => [c, index.get(c)!]));
}

/** Residue letters a sequence may contain: the single-character vocabulary entries. */
function residueTable(tok: EsmTokenizer): Uint8Array {
  const ok = new Uint8Array(65536);
  for (const t of tok.vocab) if (t.length === 1) ok[t.charCodeAt(0)] = 1;
  return ok;
}

async function readRows(
  input: string,
  labelColumn: string,
  ok: Uint8Array,
  onProgress?: (p: PrepareProgress) => void,
) {
  const dropped: Partial<Record<DropReason, ReasonCount>> = {};
  const conflicts: ReasonCount = { count: 0, firstLines: [], examples: [] };
  const warnings: string[] = [];
  const rows: Row[] = [];
  const lines: number[] = [];
  // The kept row (index into rows) of each id and each sequence seen so far.
  const byId = new Map<string, number>();
  const bySequence = new Map<string, number>();
  let lastReport = 0;
  const opened = await openRead(input, {
    onProgress: (p: TransferProgress) => {
      const now = Date.now();
      if (now - lastReport > 200 || p.bytes === p.total) {
        lastReport = now;
        onProgress?.({ phase: "read", bytes: p.bytes, total: p.total, rows: rows.length });
      }
    },
  });
  let cols: Record<string, number> | undefined;
  let width = 0;
  let rowsRead = 0;
  for await (const rec of readCsv(opened.stream, { name: opened.displayName })) {
    if (!cols) {
      cols = resolveColumns(rec.fields, labelColumn);
      width = rec.fields.length;
      continue;
    }
    rowsRead++;
    if (rec.unterminated) {
      // Its last field may be a protein cut short; nothing in the row can tell.
      note(dropped, "unterminated_last_row", rec.line, `line ${rec.line}`);
      warnings.push(
        `${printable(opened.displayName)} does not end with a line break: its last row (line ${rec.line}) may be cut off and was dropped; add a final line break if the file is complete`,
      );
      continue;
    }
    const f = rec.fields;
    if (f.length !== width) {
      note(
        dropped,
        "malformed_row",
        rec.line,
        `line ${rec.line}: ${f.length} fields, header has ${width}`,
      );
      continue;
    }
    const sequence = f[cols.Sequence!]!.trim();
    if (sequence.length === 0) {
      note(dropped, "empty_sequence", rec.line);
      continue;
    }
    let bad = -1;
    for (let i = 0; i < sequence.length; i++) {
      if (ok[sequence.charCodeAt(i)] !== 1) {
        bad = i;
        break;
      }
    }
    if (bad >= 0) {
      const ch = String.fromCodePoint(sequence.codePointAt(bad)!);
      note(
        dropped,
        "invalid_characters",
        rec.line,
        `line ${rec.line}: "${printable(ch)}" at residue ${bad + 1}`,
      );
      continue;
    }
    const rawLabel = f[cols[labelColumn]!]!.trim();
    const label = rawLabel === "" ? Number.NaN : Number(rawLabel);
    if (label !== 0 && label !== 1) {
      note(
        dropped,
        "invalid_label",
        rec.line,
        `line ${rec.line}: ${printable(labelColumn)}="${printable(rawLabel, 40)}"`,
      );
      continue;
    }
    const rawPartition = f[cols.Partition!]!.trim();
    const partition = Number(rawPartition);
    if (rawPartition === "" || !Number.isInteger(partition)) {
      note(
        dropped,
        "invalid_partition",
        rec.line,
        `line ${rec.line}: Partition="${printable(rawPartition, 40)}"`,
      );
      continue;
    }
    const id = f[cols.ACC!]!.trim();
    const sameId = id === "" ? undefined : byId.get(id);
    const first = sameId ?? bySequence.get(sequence);
    if (first !== undefined) {
      const kept = rows[first]!;
      const where = `line ${lines[first]}`;
      const what =
        sameId === undefined
          ? `same sequence as ${where} (${printable(kept.id, 40)})`
          : kept.sequence === sequence
            ? `same row as ${where}`
            : `id ${printable(id, 40)} already on ${where}, with another sequence`;
      const example = `line ${rec.line}: ${what}`;
      if (kept.label !== label) {
        tally(
          conflicts,
          rec.line,
          `${example}: ${printable(labelColumn)} ${label} here, ${kept.label} kept`,
        );
      }
      note(dropped, "duplicate", rec.line, example);
      continue;
    }
    if (id !== "") byId.set(id, rows.length);
    bySequence.set(sequence, rows.length);
    rows.push({ id, sequence, kingdom: f[cols.Kingdom!]!.trim(), partition, label });
    lines.push(rec.line);
  }
  if (!cols) throw new DataError(`${opened.displayName} is empty: no header row`, { input });
  return { rows, lines, dropped, conflicts, warnings, rowsRead, source: opened.displayName };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function summariseLengths(lengths: number[]): LengthSummary {
  const s = [...lengths].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return {
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
    mean: Math.round(mean * 100) / 100,
    median: quantile(s, 0.5),
    p05: quantile(s, 0.05),
    p95: quantile(s, 0.95),
  };
}

function countClasses(labels: Iterable<number>): Record<string, number> {
  const counts: Record<string, number> = { "0": 0, "1": 0 };
  for (const l of labels) counts[String(l)] = (counts[String(l)] ?? 0) + 1;
  return counts;
}

/** Indices of the test rows: random (optionally per class) or one homology partition. */
export function splitIndices(
  labels: number[],
  partitions: number[],
  opts: { testSize: number; seed: number; stratify: boolean; holdoutPartition?: number },
): { train: number[]; test: number[] } {
  const n = labels.length;
  const isTest = new Uint8Array(n);
  if (opts.holdoutPartition !== undefined) {
    partitions.forEach((p, i) => {
      if (p === opts.holdoutPartition) isTest[i] = 1;
    });
  } else {
    const rng = new SeededRandom(opts.seed);
    const groups = opts.stratify
      ? [...new Set(labels)].sort().map((c) => labels.flatMap((l, i) => (l === c ? [i] : [])))
      : [labels.map((_, i) => i)];
    for (const g of groups) {
      rng.shuffle(g);
      const nTest = Math.ceil(opts.testSize * g.length);
      for (let k = 0; k < nTest; k++) isTest[g[k]!] = 1;
    }
  }
  const train: number[] = [];
  const test: number[] = [];
  for (let i = 0; i < n; i++) (isTest[i] ? test : train).push(i);
  return { train, test };
}

/** Balanced weights of the training labels, or null when a class is absent. */
function balancedOrNull(labels: number[]): number[] | null {
  try {
    return balancedClassWeights(labels, 2);
  } catch {
    return null;
  }
}

function toFrame(rows: Row[], idx: number[], tok: EsmTokenizer, tokenMaxLength: number) {
  const ids: Int32Array[] = [];
  const masks: Int8Array[] = [];
  let truncated = 0;
  for (const i of idx) {
    const seq = rows[i]!.sequence;
    const encoded = tok.encode(seq, { maxLength: tokenMaxLength, truncation: true });
    if (encoded.length - 2 < seq.length) truncated++;
    ids.push(Int32Array.from(encoded));
    masks.push(new Int8Array(encoded.length).fill(1));
  }
  const pick = <T>(f: (r: Row) => T) => idx.map((i) => f(rows[i]!));
  const frame = pl.DataFrame([
    pl.Series(
      "id",
      pick((r) => r.id),
      pl.Utf8,
    ),
    pl.Series(
      "sequence",
      pick((r) => r.sequence),
      pl.Utf8,
    ),
    pl.Series(
      "kingdom",
      pick((r) => r.kingdom),
      pl.Utf8,
    ),
    pl.Series(
      "partition",
      pick((r) => r.partition),
      pl.Int32,
    ),
    pl.Series(
      "label",
      pick((r) => r.label),
      pl.Int64,
    ),
    pl.Series(
      "length",
      pick((r) => r.sequence.length),
      pl.Int32,
    ),
    pl.Series("input_ids", ids, pl.List(pl.Int32)),
    pl.Series("attention_mask", masks, pl.List(pl.Int8)),
  ]);
  return { frame, truncated };
}

/** Read, validate, filter, split, tokenize and write a DeepLoc table. */
export async function prepare(options: PrepareOptions): Promise<PrepareResult> {
  const t0 = performance.now();
  const o = checkOptions(options);
  const tok = options.tokenizer ?? new EsmTokenizer();
  const progress = options.onProgress;
  const read = await readRows(options.input, o.labelColumn, residueTable(tok), progress);

  const filtered: Partial<Record<FilterReason, ReasonCount>> = {};
  const kept: Row[] = [];
  read.rows.forEach((r, i) => {
    const line = read.lines[i]!;
    if (r.sequence.length < o.minLength) note(filtered, "too_short", line);
    else if (r.sequence.length > o.maxLength) note(filtered, "too_long", line);
    else kept.push(r);
  });
  if (kept.length === 0) {
    throw new DataError(
      `No rows left after validation and the length filter ${o.minLength}..${o.maxLength} (read ${read.rowsRead})`,
      { rowsRead: read.rowsRead },
    );
  }

  progress?.({ phase: "split", rows: kept.length });
  const labels = kept.map((r) => r.label);
  const split = splitIndices(
    labels,
    kept.map((r) => r.partition),
    {
      testSize: o.testSize,
      seed: o.seed,
      stratify: options.stratify ?? false,
      holdoutPartition: options.holdoutPartition,
    },
  );
  if (split.test.length === 0 || split.train.length === 0) {
    const which = split.test.length === 0 ? "test" : "train";
    throw new DataError(
      `The ${which} split is empty${options.holdoutPartition !== undefined ? ` (no kept row has Partition ${options.holdoutPartition})` : ""}`,
      { holdoutPartition: options.holdoutPartition },
    );
  }

  progress?.({ phase: "write", rows: kept.length });
  const trainFrame = toFrame(kept, split.train, tok, o.tokenMaxLength);
  const testFrame = toFrame(kept, split.test, tok, o.tokenMaxLength);
  const trainLabels = split.train.map((i) => labels[i]!);

  const stats: PrepareStats = {
    source: read.source,
    labelColumn: o.labelColumn,
    options: {
      minLength: o.minLength,
      maxLength: o.maxLength,
      tokenMaxLength: o.tokenMaxLength,
      testSize: options.holdoutPartition === undefined ? o.testSize : null,
      seed: o.seed,
      stratify: options.stratify ?? false,
      holdoutPartition: options.holdoutPartition ?? null,
    },
    rowsRead: read.rowsRead,
    rowsKept: kept.length,
    dropped: read.dropped,
    duplicateLabelConflicts: read.conflicts,
    filtered,
    truncated: trainFrame.truncated + testFrame.truncated,
    classCounts: countClasses(labels),
    splits: {
      train: { rows: split.train.length, classCounts: countClasses(trainLabels) },
      test: {
        rows: split.test.length,
        classCounts: countClasses(split.test.map((i) => labels[i]!)),
      },
    },
    length: summariseLengths(kept.map((r) => r.sequence.length)),
    classWeights: balancedOrNull(trainLabels),
    columns: trainFrame.frame.columns,
    warnings: read.warnings,
    seconds: 0,
  };

  const out = await openOutputDir(options.out, { overwrite: options.overwrite });
  try {
    trainFrame.frame.writeParquet(path.join(out.localDir, "train.parquet"), {
      compression: "snappy",
    });
    testFrame.frame.writeParquet(path.join(out.localDir, "test.parquet"), {
      compression: "snappy",
    });
    stats.seconds = Math.round((performance.now() - t0) / 10) / 100;
    await writeFile(path.join(out.localDir, "stats.json"), `${JSON.stringify(stats, null, 2)}\n`);
    await out.commit();
  } catch (e) {
    await out.abort().catch(() => undefined);
    throw e;
  }
  progress?.({ phase: "done", rows: kept.length });
  return { out: out.displayName, files: ["train.parquet", "test.parquet", "stats.json"], stats };
}
