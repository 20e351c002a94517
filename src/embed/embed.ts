/**
 * Embeddings at scale: records stream in (FASTA or CSV from a local path, http(s) or
 * s3://), are embedded a window at a time (sorted by length inside the window, so
 * batches carry little padding) and come out in input order; `embedToParquet` writes
 * them as row groups while it goes. Memory is bounded by the window, never by the input.
 *
 *   for await (const row of embed({ model: "facebook/esm2_t6_8M_UR50D", fasta: "p.fasta" }))
 *     console.log(row.id, row.embedding.length);
 *
 *   await embedToParquet({ model, csv: "deeploc.csv", idColumn: "ACC", out: "emb.parquet" });
 *
 *   const vectors = await embedSequences(model, ["MKTAYIAK", "GSHMSLFD"]);   // Float32Array[]
 */
import { constants } from "node:fs";
import { access, mkdtemp, open, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { ConfigError, DataError, StorageError } from "../errors";
import { redact, schemeOf, type TransferProgress } from "../io/storage";
import {
  type Embedder,
  type EmbedderOptions,
  type EmbedSettings,
  LAYER_CONVENTION,
  loadEmbedder,
  POOLING_CONVENTION,
} from "../onnx/embedder";
import { normaliseSequence, type TooLongPolicy } from "../serve/sequences";
import { ownedTemporary, removeDeadTemporariesOf, trackTemporary } from "../util/temporaries";
import {
  type ColumnSpec,
  type ColumnValues,
  fileSink,
  ParquetStreamWriter,
} from "./parquet-writer";
import { readSequenceRecords, type SequenceRecord } from "./records";

/** One protein's result, in input order. */
export interface EmbeddingRow {
  id: string;
  /** Residues of the input sequence (before any truncation). */
  length: number;
  /** True when only the first maxLength - 2 residues were embedded. */
  truncated: boolean;
  /** The pooled vector `[hidden]`. */
  embedding: Float32Array;
  /** With perResidue: `[embedded residues, hidden]` row-major. */
  residues?: Float32Array;
}

export interface EmbedProgress {
  /** Proteins embedded so far. */
  proteins: number;
  /** Input bytes read so far (and in all, when known). */
  bytes?: number;
  totalBytes?: number;
}

export interface EmbedOptions extends EmbedSettings, EmbedderOptions {
  /** A Hub id, model directory or PEFT adapter directory, or an Embedder already loaded. */
  model: string | Embedder;
  /** Input: one of fasta, csv (locations) or records (in memory / your own stream). */
  fasta?: string;
  csv?: string;
  records?:
    | Iterable<{ id: string; sequence: string }>
    | AsyncIterable<{ id: string; sequence: string }>;
  /** CSV id column (default "id" when present, else the row number). */
  idColumn?: string;
  /** CSV sequence column (default "sequence", case-insensitive). */
  sequenceColumn?: string;
  /** Sequences over maxLength - 2 residues: "truncate" (default, flagged) or "reject". */
  tooLong?: TooLongPolicy;
  /** Sequences sorted by length together (default 256); memory grows with it. */
  window?: number;
  onProgress?: (p: EmbedProgress) => void;
}

export const DEFAULT_WINDOW = 256;
/** Per-residue windows also close at this many buffered floats (256 MiB). */
const RESIDUE_FLOATS_PER_WINDOW = 64 * 2 ** 20;

async function* fromIterable(
  records:
    | Iterable<{ id: string; sequence: string }>
    | AsyncIterable<{ id: string; sequence: string }>,
): AsyncGenerator<SequenceRecord> {
  let i = 0;
  for await (const r of records as AsyncIterable<{ id: string; sequence: string }>) {
    i++;
    if (typeof r?.sequence !== "string") {
      throw new DataError(`record #${i} has no "sequence" string`, { index: i });
    }
    const id = typeof r.id === "string" && r.id !== "" ? r.id : `seq${i}`;
    yield { id, sequence: r.sequence, where: `record #${i} (id ${JSON.stringify(id)})` };
  }
}

function checkWindow(window: number): number {
  if (!Number.isInteger(window) || window < 1) {
    throw new ConfigError(`window must be an integer >= 1, got ${window}`, { window });
  }
  return window;
}

function inputOf(options: EmbedOptions): AsyncIterable<SequenceRecord> {
  const given = [options.fasta, options.csv, options.records].filter((x) => x !== undefined);
  if (given.length !== 1) {
    throw new ConfigError("give exactly one input: fasta, csv or records", {});
  }
  let bytes: TransferProgress | undefined;
  const onProgress = (p: TransferProgress) => {
    bytes = p;
  };
  const source = options.records
    ? fromIterable(options.records)
    : readSequenceRecords({
        fasta: options.fasta,
        csv: options.csv,
        idColumn: options.idColumn,
        sequenceColumn: options.sequenceColumn,
        onProgress,
      });
  // Attach the latest byte count to each record for the progress callback.
  return {
    async *[Symbol.asyncIterator]() {
      for await (const r of source) yield Object.assign(r, { progress: bytes });
    },
  };
}

/**
 * Embeddings of every input record, in input order, computed a window at a time. The
 * model is loaded here when `options.model` is a string (and freed at the end).
 */
export async function* embed(options: EmbedOptions): AsyncGenerator<EmbeddingRow> {
  const window = checkWindow(options.window ?? DEFAULT_WINDOW);
  const records = inputOf(options);
  const owned = typeof options.model === "string";
  const embedder =
    typeof options.model === "string" ? await loadEmbedder(options.model, options) : options.model;
  try {
    const settings = embedder.resolve(options);
    const H = embedder.hiddenSize;
    let buffer: { r: SequenceRecord; sequence: string; length: number; truncated: boolean }[] = [];
    let floats = 0;
    let done = 0;
    let last: TransferProgress | undefined;
    const flush = function* (): Generator<EmbeddingRow> {
      if (buffer.length === 0) return;
      const results = embedder.embed(
        buffer.map((b) => b.sequence),
        settings,
      );
      const rows = buffer;
      buffer = [];
      floats = 0;
      done += rows.length;
      options.onProgress?.({ proteins: done, bytes: last?.bytes, totalBytes: last?.total });
      for (let i = 0; i < rows.length; i++) {
        const b = rows[i]!;
        const e = results[i]!;
        yield {
          id: b.r.id,
          length: b.length,
          truncated: b.truncated,
          embedding: e.embedding,
          ...(e.residues ? { residues: e.residues } : {}),
        };
      }
    };
    for await (const r of records) {
      last = (r as SequenceRecord & { progress?: TransferProgress }).progress ?? last;
      const n = normaliseSequence(r.sequence, {
        maxLength: embedder.maxLength,
        tooLong: options.tooLong ?? "truncate",
        where: r.where,
      });
      buffer.push({ r, sequence: n.sequence, length: n.length, truncated: n.truncated });
      floats += settings.perResidue ? n.sequence.length * H : 0;
      if (buffer.length >= window || floats >= RESIDUE_FLOATS_PER_WINDOW) {
        yield* flush();
        // A window's compute holds the thread; records parsed from one big read chunk
        // would follow in microtasks only. Give the event loop a turn, so that signals
        // (Ctrl-C) and output streams are served between windows.
        await nextTurn();
      }
    }
    yield* flush();
    if (done === 0) {
      const what = options.fasta ?? options.csv ?? "the records";
      throw new DataError(`${redact(what)}: no sequences to embed`, {});
    }
  } finally {
    if (owned) embedder.dispose();
  }
}

/**
 * Pooled embeddings of `sequences` (raw: whitespace, lowercase and a final `*` are
 * fine), one Float32Array each, in order. For notebooks: everything in memory.
 */
export async function embedSequences(
  model: string | Embedder,
  sequences: readonly string[],
  settings: EmbedSettings & EmbedderOptions & { tooLong?: TooLongPolicy } = {},
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  const records = sequences.map((sequence, i) => ({ id: `sequences[${i}]`, sequence }));
  for await (const row of embed({ ...settings, model, records, perResidue: false })) {
    out.push(row.embedding);
  }
  return out;
}

// ---- Parquet output ----

export interface EmbedToParquetOptions extends EmbedOptions {
  /** A local path or s3:// URI; written whole or not at all. */
  out: string;
  /** Replace an existing `out` (default: refuse). */
  overwrite?: boolean;
  /** Rows per row group (default 1024; per-residue ones close earlier, at ~64 MiB). */
  rowGroupRows?: number;
}

export interface EmbedSummary {
  out: string;
  rows: number;
  truncated: number;
  hiddenSize: number;
  layer: number;
  numLayers: number;
  pooling: string;
  perResidue: boolean;
  seconds: number;
  /** Bytes of the Parquet file. */
  bytes: number;
}

/** The key under which the Parquet file's metadata describes the embeddings. */
export const PARQUET_METADATA_KEY = "esmkit.embeddings";

const GROUP_FLOATS = 16 * 2 ** 20;

/** Fail before any model loads when `out` cannot be written or exists (without overwrite). */
async function checkOutput(out: string, overwrite: boolean): Promise<void> {
  if (schemeOf(out) === "s3") {
    const { objectSize } = await import("../aws/s3");
    const exists = await objectSize(out).then(
      () => true,
      (e) => {
        if (e instanceof StorageError || /does not exist/.test(String(e))) return false;
        throw e;
      },
    );
    if (exists && !overwrite) {
      throw new ConfigError(`${out} already exists; pass --overwrite to replace it`, { out });
    }
    return;
  }
  if (schemeOf(out) !== "file") {
    throw new ConfigError(`cannot write ${redact(out)}: give a local path or an s3:// URI`, {
      out: redact(out),
    });
  }
  const dir = path.dirname(path.resolve(out));
  const bad = (why: string) => new ConfigError(`--out ${JSON.stringify(out)}: ${why}`, { out });
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw bad(`the folder ${dir} does not exist; create it first`);
  await access(dir, constants.W_OK).catch(() => {
    throw bad(`the folder ${dir} is not writable`);
  });
  const existing = await stat(out).catch(() => undefined);
  if (existing?.isDirectory()) throw bad("is a folder; give a file name");
  if (existing && !overwrite) throw bad("already exists; pass --overwrite to replace it");
}

/**
 * Embed every record and write a Parquet file: columns `id` (string), `length`
 * (int32), `truncated` (bool), `embedding` (list<float32>) and, with perResidue,
 * `residue_embeddings` (list<list<float32>>: one list per residue). Row groups are
 * written as results come; the file appears (renamed, or uploaded for s3://) only once
 * complete.
 */
export async function embedToParquet(options: EmbedToParquetOptions): Promise<EmbedSummary> {
  const started = Date.now();
  const overwrite = options.overwrite ?? false;
  const rowGroupRows = options.rowGroupRows ?? 1024;
  if (!Number.isInteger(rowGroupRows) || rowGroupRows < 1) {
    throw new ConfigError(`rowGroupRows must be an integer >= 1, got ${rowGroupRows}`, {});
  }
  checkWindow(options.window ?? DEFAULT_WINDOW);
  await checkOutput(options.out, overwrite);
  const embedder =
    typeof options.model === "string" ? await loadEmbedder(options.model, options) : options.model;
  const s3 = schemeOf(options.out) === "s3";
  let localDir: string | undefined;
  let partial: string;
  if (s3) {
    localDir = await mkdtemp(path.join(tmpdir(), "esmkit-embed-"));
    partial = path.join(localDir, "embeddings.parquet");
  } else {
    removeDeadTemporariesOf(options.out);
    partial = ownedTemporary(options.out, "partial");
  }
  const untrack = trackTemporary(localDir ?? partial);
  const settings = embedder.resolve(options);
  const columns: ColumnSpec[] = [
    { name: "id", kind: "string" },
    { name: "length", kind: "int32" },
    { name: "truncated", kind: "bool" },
    { name: "embedding", kind: "float-list" },
  ];
  if (settings.perResidue) columns.push({ name: "residue_embeddings", kind: "float-list-list" });
  const metadata = {
    [PARQUET_METADATA_KEY]: JSON.stringify({
      model: redact(embedder.source),
      pooling: settings.pooling,
      pooling_convention: POOLING_CONVENTION,
      layer: settings.layer,
      num_layers: embedder.numLayers,
      layer_convention: LAYER_CONVENTION,
      hidden_size: embedder.hiddenSize,
      max_length: embedder.maxLength,
      per_residue: settings.perResidue,
      residue_embeddings: settings.perResidue
        ? "one list of hidden_size floats per embedded residue (no <cls>/<eos>)"
        : undefined,
      esmkit: require("../../../package.json").version,
    }),
  };
  let rows = 0;
  let truncated = 0;
  const handle = await open(partial, "w");
  try {
    const writer = new ParquetStreamWriter(fileSink(handle), columns, {
      metadata,
      createdBy: `esmkit ${require("../../../package.json").version}`,
    });
    let group: EmbeddingRow[] = [];
    let groupFloats = 0;
    const flush = async () => {
      if (group.length === 0) return;
      const values: ColumnValues[] = [
        group.map((r) => r.id),
        group.map((r) => r.length),
        group.map((r) => r.truncated),
        group.map((r) => r.embedding),
      ];
      if (settings.perResidue) {
        values.push(group.map((r) => ({ values: r.residues!, width: embedder.hiddenSize })));
      }
      await writer.writeRowGroup(values);
      group = [];
      groupFloats = 0;
    };
    for await (const row of embed({ ...options, model: embedder })) {
      group.push(row);
      rows++;
      if (row.truncated) truncated++;
      groupFloats += row.embedding.length + (row.residues?.length ?? 0);
      if (group.length >= rowGroupRows || groupFloats >= GROUP_FLOATS) await flush();
    }
    await flush();
    await writer.close();
    await handle.sync();
    await handle.close();
    const bytes = (await stat(partial)).size;
    if (s3) {
      const { uploadFile } = await import("../aws/s3");
      await uploadFile(partial, options.out, { contentType: "application/vnd.apache.parquet" });
    } else {
      await rename(partial, options.out);
    }
    return {
      out: options.out,
      rows,
      truncated,
      hiddenSize: embedder.hiddenSize,
      layer: settings.layer,
      numLayers: embedder.numLayers,
      pooling: settings.pooling,
      perResidue: settings.perResidue,
      seconds: (Date.now() - started) / 1000,
      bytes,
    };
  } finally {
    await handle.close().catch(() => undefined);
    await rm(localDir ?? partial, { recursive: true, force: true });
    untrack();
    if (typeof options.model === "string") embedder.dispose();
  }
}
