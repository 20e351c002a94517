/**
 * Sequence records streamed from a FASTA or CSV location (a local path, http(s):// or
 * s3://, through the storage layer), one at a time: memory holds one record and one
 * read chunk whatever the file's size.
 */
import { readCsv } from "../data/csv";
import { DataError } from "../errors";
import { openRead, type TransferProgress } from "../io/storage";
import { quoteId, readFastaRecords } from "../serve/fasta";

export interface SequenceRecord {
  id: string;
  /** The sequence as read (normalised later: whitespace, case, a final `*`). */
  sequence: string;
  /** Where it was, for messages: `FILE record "P1" (line 7)`, `FILE line 12 (id "P1")`. */
  where: string;
}

export interface RecordSourceOptions {
  /** FASTA input (multi-line records). */
  fasta?: string;
  /** CSV input with a header row. */
  csv?: string;
  /** CSV id column (default "id" when the header has one, else the 1-based row number). */
  idColumn?: string;
  /** CSV sequence column (default "sequence"; matched exactly, then ignoring case). */
  sequenceColumn?: string;
  /** Bytes read so far (and the total when the source tells it). */
  onProgress?: (p: TransferProgress) => void;
}

function findColumn(header: string[], name: string): number {
  const exact = header.indexOf(name);
  if (exact >= 0) return exact;
  return header.findIndex((h) => h.trim().toLowerCase() === name.toLowerCase());
}

async function* csvRecords(
  location: string,
  options: RecordSourceOptions,
): AsyncGenerator<SequenceRecord> {
  const input = await openRead(location, { onProgress: options.onProgress });
  const name = input.displayName;
  const sequenceColumn = options.sequenceColumn ?? "sequence";
  let header: string[] | undefined;
  let idIdx = -1;
  let seqIdx = -1;
  let row = 0;
  for await (const rec of readCsv(input.stream, { name })) {
    if (!header) {
      header = rec.fields;
      const found = header.map((h) => JSON.stringify(h)).join(", ");
      seqIdx = findColumn(header, sequenceColumn);
      if (seqIdx < 0) {
        throw new DataError(
          `${name}: no column "${sequenceColumn}" (--sequence-column); found: ${found}`,
          { column: sequenceColumn },
        );
      }
      idIdx = findColumn(header, options.idColumn ?? "id");
      if (idIdx < 0 && options.idColumn !== undefined) {
        throw new DataError(
          `${name}: no column "${options.idColumn}" (--id-column); found: ${found}`,
          {
            column: options.idColumn,
          },
        );
      }
      continue;
    }
    row++;
    if (rec.unterminated && rec.fields.length < header.length) {
      throw new DataError(
        `${name} line ${rec.line}: the last row has ${rec.fields.length} of ${header.length} fields and no line break: the file looks cut off`,
        { line: rec.line },
      );
    }
    const id = idIdx >= 0 ? (rec.fields[idIdx] ?? "") : String(row);
    yield {
      id,
      sequence: rec.fields[seqIdx] ?? "",
      where: `${name} line ${rec.line} (id ${quoteId(id)})`,
    };
  }
  if (!header) throw new DataError(`${name} is empty: no header row`, {});
}

async function* fastaRecords(
  location: string,
  options: RecordSourceOptions,
): AsyncGenerator<SequenceRecord> {
  const input = await openRead(location, { onProgress: options.onProgress });
  const name = input.displayName;
  for await (const r of readFastaRecords(input.stream, { source: name })) {
    yield {
      id: r.id,
      sequence: r.sequence,
      where: `${name} record ${quoteId(r.id)} (line ${r.line})`,
    };
  }
}

/** The records of `options.fasta` or `options.csv` (exactly one), in file order. */
export function readSequenceRecords(options: RecordSourceOptions): AsyncGenerator<SequenceRecord> {
  if ((options.fasta === undefined) === (options.csv === undefined)) {
    throw new DataError("give one input: fasta or csv", {});
  }
  return options.fasta !== undefined
    ? fastaRecords(options.fasta, options)
    : csvRecords(options.csv!, options);
}
