/**
 * DeepLoc-2.0 -> tokenized train/test Parquet, as the seed workflow does with pandas,
 * `datasets` and the ESM-2 tokenizer, plus what it lacked: every dropped row counted
 * by reason with its line number, a stratified or homology-partition hold-out split,
 * and a stats.json a notebook can chart.
 *
 * The labels follow the task (src/data/labels.ts): one 0/1 column (the seed workflow's
 * Membrane), one column of k classes, several 0/1 columns (DeepLoc's ten locations) or
 * numeric regression targets. The Parquet `label` column holds the class id (int64),
 * the 0/1 vector (list<float32>), or the target (float64; a list<float64> for several),
 * the forms `datasets` and transformers' data collators pass on as `labels`; stats.json
 * records the task (problem type and label names) for training to pick up.
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
import { balancedClassWeights, balancedPositiveWeights } from "../util/class-weights";
import { SeededRandom } from "../util/random";
import type { ProblemType, TaskSpec } from "../util/task";
import { printable, readCsv } from "./csv";
import {
  classesOf,
  classKey,
  type LabelOptions,
  type LabelPlan,
  planLabels,
  readBinaryCell,
  readNumberCell,
  taskOf,
} from "./labels";
import { iterativeStratification } from "./split";

export interface PrepareOptions extends LabelOptions {
  /** Local path or http(s) URL of the DeepLoc CSV (as published). */
  input: string;
  /** Output directory (created; must not exist unless `overwrite`). */
  out: string;
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
  /**
   * Keep the class ratio equal in both splits (default false, as the seed workflow);
   * multi-label: iterative stratification, every label's ratio (src/data/split.ts);
   * regression: refused.
   */
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
  /**
   * Single-label: rows per class id ("0", "1", ...); multi-label: positive rows per label
   * name; regression: empty.
   */
  classCounts: Record<string, number>;
  /** Regression: a summary of each target in this split. */
  targets?: Record<string, TargetSummary>;
}

export interface TargetSummary {
  min: number;
  max: number;
  mean: number;
  std: number;
}

/** The task recorded for training: what the `label` column holds and what it is called. */
export interface PreparedTask extends TaskSpec {
  /** The source columns of the labels, in output order. */
  columns: string[];
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
  /** The label column; several (multi-label, regression) are joined with ",". */
  labelColumn: string;
  /** Problem type and label names; stats.json files from before tasks lack it (binary). */
  task: PreparedTask;
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
  /** As in SplitStats, over all kept rows. */
  classCounts: Record<string, number>;
  /** Regression: a summary of each target over all kept rows. */
  targets?: Record<string, TargetSummary>;
  splits: { train: SplitStats; test: SplitStats };
  length: LengthSummary;
  /**
   * Single-label: balanced class weights from the TRAIN labels, n / (classes * count);
   * null if a class is absent (and for the other tasks).
   */
  classWeights: number[] | null;
  /**
   * Multi-label: positive weights from the TRAIN labels, negatives / positives per label
   * (BCEWithLogitsLoss's pos_weight); null if a label has no positive. Absent otherwise.
   */
  posWeight?: number[] | null;
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

/** A row's label: a 0/1 class (binary), a class key (k classes), or a vector. */
type Target = number | string | number[];

interface Row {
  id: string;
  sequence: string;
  kingdom: string;
  partition: number;
  target: Target;
}

const targetText = (t: Target) => (Array.isArray(t) ? `[${t.join(", ")}]` : String(t));

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
  const plan = planLabels(o);
  if (o.stratify && plan.problemType === "regression") {
    throw new ConfigError(
      "stratify needs class labels; a regression split is random (or use holdoutPartition)",
      { task: plan.problemType },
    );
  }
  return { minLength, maxLength, tokenMaxLength, seed, testSize, plan };
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
export function resolveColumns(
  header: string[],
  labelColumns: string | readonly string[],
): Record<string, number> {
  const index = new Map<string, number>();
  header.forEach((h, i) => {
    const name = h.trim();
    if (!index.has(name)) index.set(name, i);
  });
  const wanted = [...DEEPLOC_REQUIRED, ...[labelColumns].flat()];
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

/** What the label cells of the whole table said, beyond the rows they dropped. */
interface LabelFindings {
  /** Per column: a 0/1 column holding another integer (a column of classes?). */
  otherIntegers: Map<string, ReasonCount>;
  /** Per column: regression cells that are not finite numbers. */
  notNumbers: Map<string, ReasonCount>;
  /** Per 0/1 column: whether any row had 0 or 1, and a few of the values seen. */
  seenValid: Map<string, boolean>;
  values: Map<string, string[]>;
}

/** The label of one row, or a note of why it has none (`drop`) or why the table is refused. */
function readTarget(
  plan: LabelPlan,
  cells: string[],
  line: number,
  found: LabelFindings,
): { target: Target } | { drop: string } | { refused: true } {
  const quoted = (c: string, raw: string) =>
    `line ${line}: ${printable(c)}="${printable(raw, 40)}"`;
  if (plan.problemType === "regression") {
    const values: number[] = [];
    let refused = false;
    plan.columns.forEach((c, j) => {
      const v = readNumberCell(cells[j]!);
      if (v === null) {
        const r = found.notNumbers.get(c) ?? { count: 0, firstLines: [], examples: [] };
        found.notNumbers.set(c, r);
        tally(r, line, quoted(c, cells[j]!));
        refused = true;
      } else values.push(v);
    });
    return refused ? { refused: true } : { target: values };
  }
  if (plan.classes === "values") {
    const key = classKey(cells[0]!);
    return key === null ? { drop: quoted(plan.columns[0]!, cells[0]!) } : { target: key };
  }
  // 0/1 columns: binary single-label, or multi-label.
  const values: number[] = [];
  let drop: string | undefined;
  let refused = false;
  plan.columns.forEach((c, j) => {
    const raw = cells[j]!;
    const v = readBinaryCell(raw);
    const seen = found.values.get(c) ?? [];
    if (seen.length < MAX_EXAMPLES && !seen.includes(raw.trim())) seen.push(raw.trim());
    found.values.set(c, seen);
    if (v === 0 || v === 1) {
      found.seenValid.set(c, true);
      values.push(v);
    } else if (v === "other") {
      const r = found.otherIntegers.get(c) ?? { count: 0, firstLines: [], examples: [] };
      found.otherIntegers.set(c, r);
      tally(r, line, quoted(c, raw));
      refused = true;
    } else {
      drop ??= quoted(c, raw);
    }
  });
  if (refused) return { refused: true };
  if (drop !== undefined) return { drop };
  return { target: plan.problemType === "single_label_classification" ? values[0]! : values };
}

/** Refuse label columns that are not what the task reads (see src/data/labels.ts). */
function checkLabelFindings(plan: LabelPlan, found: LabelFindings, source: string): void {
  const lines = (r: ReasonCount) =>
    `${r.count} row${r.count === 1 ? "" : "s"}, e.g. ${r.examples.slice(0, 3).join("; ")}`;
  for (const [c, r] of found.notNumbers) {
    throw new DataError(
      `${source}: the regression target "${printable(c, 60)}" is not a finite number on ${lines(r)}; every target must be a number (fill in or remove those rows)`,
      { column: c, count: r.count, firstLines: r.firstLines },
    );
  }
  const multi = plan.problemType === "multi_label_classification";
  const hint = multi
    ? "label columns (--label-columns, --locations) must hold 0 or 1"
    : "for a column of k classes add --task single_label_classification";
  for (const [c, r] of found.otherIntegers) {
    throw new DataError(
      `${source}: column "${printable(c, 60)}" is not a 0/1 column: it holds other integers on ${lines(r)}; ${hint}`,
      { column: c, count: r.count, firstLines: r.firstLines },
    );
  }
  for (const c of plan.columns) {
    if (plan.classes === "values" || plan.problemType === "regression") break;
    if (!found.seenValid.get(c) && found.values.has(c)) {
      const seen = found.values.get(c)!.map((v) => `"${printable(v, 30)}"`);
      throw new DataError(
        `${source}: column "${printable(c, 60)}" is not a 0/1 column: no row holds 0 or 1 (values such as ${seen.join(", ")}); ${hint}`,
        { column: c, values: found.values.get(c) },
      );
    }
  }
}

async function readRows(
  input: string,
  plan: LabelPlan,
  ok: Uint8Array,
  onProgress?: (p: PrepareProgress) => void,
) {
  const dropped: Partial<Record<DropReason, ReasonCount>> = {};
  const conflicts: ReasonCount = { count: 0, firstLines: [], examples: [] };
  const warnings: string[] = [];
  const rows: Row[] = [];
  const lines: number[] = [];
  const found: LabelFindings = {
    otherIntegers: new Map(),
    notNumbers: new Map(),
    seenValid: new Map(),
    values: new Map(),
  };
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
      cols = resolveColumns(rec.fields, plan.columns);
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
    const read = readTarget(
      plan,
      plan.columns.map((c) => f[cols![c]!]!),
      rec.line,
      found,
    );
    if ("refused" in read) continue; // the table is refused after reading (checkLabelFindings)
    if ("drop" in read) {
      note(dropped, "invalid_label", rec.line, read.drop);
      continue;
    }
    const target = read.target;
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
      if (targetText(kept.target) !== targetText(target)) {
        tally(
          conflicts,
          rec.line,
          `${example}: ${printable(plan.columns.join(","), 60)} ${printable(targetText(target), 60)} here, ${printable(targetText(kept.target), 60)} kept`,
        );
      }
      note(dropped, "duplicate", rec.line, example);
      continue;
    }
    if (id !== "") byId.set(id, rows.length);
    bySequence.set(sequence, rows.length);
    rows.push({ id, sequence, kingdom: f[cols.Kingdom!]!.trim(), partition, target });
    lines.push(rec.line);
  }
  if (!cols) throw new DataError(`${opened.displayName} is empty: no header row`, { input });
  checkLabelFindings(plan, found, opened.displayName);
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

/** Rows per class id (every class listed, absent ones with 0). */
function countClasses(labels: Iterable<number>, numClasses = 2): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let c = 0; c < numClasses; c++) counts[String(c)] = 0;
  for (const l of labels) counts[String(l)] = (counts[String(l)] ?? 0) + 1;
  return counts;
}

/** Positive rows per label name. */
function countPositives(
  rows: Iterable<number[]>,
  names: readonly string[],
): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  for (const r of rows) {
    r.forEach((v, c) => {
      counts[names[c]!]! += v;
    });
  }
  return counts;
}

function summariseTargets(
  rows: readonly number[][],
  names: readonly string[],
): Record<string, TargetSummary> {
  const round = (x: number) => Math.round(x * 1e6) / 1e6;
  return Object.fromEntries(
    names.map((name, c) => {
      const v = rows.map((r) => r[c]!);
      const mean = v.reduce((a, b) => a + b, 0) / (v.length || 1);
      const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length || 1);
      return [
        name,
        {
          min: Math.min(...v),
          max: Math.max(...v),
          mean: round(mean),
          std: round(Math.sqrt(variance)),
        },
      ];
    }),
  );
}

/**
 * Indices of the test rows: random, stratified (per class, or for multi-label rows
 * `labelSets` by iterative stratification), or one homology partition.
 */
export function splitIndices(
  labels: number[],
  partitions: number[],
  opts: {
    testSize: number;
    seed: number;
    stratify: boolean;
    holdoutPartition?: number;
    /** Multi-label 0/1 rows (one per example): stratify all labels at once. */
    labelSets?: readonly number[][];
  },
): { train: number[]; test: number[] } {
  const n = labels.length;
  const isTest = new Uint8Array(n);
  if (opts.holdoutPartition !== undefined) {
    partitions.forEach((p, i) => {
      if (p === opts.holdoutPartition) isTest[i] = 1;
    });
  } else if (opts.stratify && opts.labelSets) {
    for (const i of iterativeStratification(opts.labelSets, opts.testSize, opts.seed))
      isTest[i] = 1;
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
function balancedOrNull(labels: number[], numClasses: number): number[] | null {
  try {
    return balancedClassWeights(labels, numClasses);
  } catch {
    return null;
  }
}

function posWeightOrNull(rows: number[][], numLabels: number): number[] | null {
  try {
    return balancedPositiveWeights(rows, numLabels);
  } catch {
    return null;
  }
}

/** The Parquet `label` column of a task (see the file header). */
function labelSeries(problemType: ProblemType, values: (number | number[])[]): pl.Series {
  if (problemType === "single_label_classification") return pl.Series("label", values, pl.Int64);
  if (problemType === "multi_label_classification") {
    return pl.Series(
      "label",
      values.map((v) => Float32Array.from(v as number[])),
      pl.List(pl.Float32),
    );
  }
  const rows = values as number[][];
  return rows[0]?.length === 1
    ? pl.Series(
        "label",
        rows.map((r) => r[0]!),
        pl.Float64,
      )
    : pl.Series(
        "label",
        rows.map((r) => Float64Array.from(r)),
        pl.List(pl.Float64),
      );
}

function toFrame(
  rows: Row[],
  labels: (number | number[])[],
  problemType: ProblemType,
  idx: number[],
  tok: EsmTokenizer,
  tokenMaxLength: number,
) {
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
    labelSeries(
      problemType,
      idx.map((i) => labels[i]!),
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
  const plan = o.plan;
  const tok = options.tokenizer ?? new EsmTokenizer();
  const progress = options.onProgress;
  const read = await readRows(options.input, plan, residueTable(tok), progress);

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

  // Labels as the model sees them: class ids, or 0/1 / target vectors.
  const classes =
    plan.classes === "values" ? classesOf(kept.map((r) => r.target as string)) : undefined;
  const task = taskOf(plan, classes?.names);
  const labels: (number | number[])[] = kept.map((r) =>
    classes ? classes.ids.get(r.target as string)! : (r.target as number | number[]),
  );
  const single = plan.problemType === "single_label_classification";
  const multi = plan.problemType === "multi_label_classification";
  const classIds = single ? (labels as number[]) : kept.map(() => 0);

  progress?.({ phase: "split", rows: kept.length });
  const split = splitIndices(
    classIds,
    kept.map((r) => r.partition),
    {
      testSize: o.testSize,
      seed: o.seed,
      stratify: options.stratify ?? false,
      holdoutPartition: options.holdoutPartition,
      labelSets: multi ? (labels as number[][]) : undefined,
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
  const trainFrame = toFrame(kept, labels, plan.problemType, split.train, tok, o.tokenMaxLength);
  const testFrame = toFrame(kept, labels, plan.problemType, split.test, tok, o.tokenMaxLength);
  const k = task.labels.length;
  const splitStats = (idx: number[]): SplitStats => {
    const part = idx.map((i) => labels[i]!);
    if (single) return { rows: idx.length, classCounts: countClasses(part as number[], k) };
    if (multi)
      return { rows: idx.length, classCounts: countPositives(part as number[][], task.labels) };
    return {
      rows: idx.length,
      classCounts: {},
      targets: summariseTargets(part as number[][], task.labels),
    };
  };
  const trainLabels = split.train.map((i) => labels[i]!);
  const all = splitStats(kept.map((_, i) => i));

  const stats: PrepareStats = {
    source: read.source,
    labelColumn: plan.columns.join(","),
    task: { ...task, columns: plan.columns },
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
    classCounts: all.classCounts,
    ...(all.targets ? { targets: all.targets } : {}),
    splits: { train: splitStats(split.train), test: splitStats(split.test) },
    length: summariseLengths(kept.map((r) => r.sequence.length)),
    classWeights: single ? balancedOrNull(trainLabels as number[], k) : null,
    ...(multi ? { posWeight: posWeightOrNull(trainLabels as number[][], k) } : {}),
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
