/**
 * A FASTA reader for protein sequences, forgiving in layout and strict in content:
 * - records span any number of lines; blank lines, CRLF / CR line ends, a UTF-8 BOM
 *   and whitespace inside sequence lines are fine;
 * - `>header`: the id is the first word, the description the rest;
 * - residues are upper-cased and one `*` at the end of a record is dropped;
 * - errors name the line (and column): sequence data before the first header, an
 *   empty header, a record without residues, a character that is not a residue.
 */
import { StringDecoder } from "node:string_decoder";
import { FastaFormatError } from "./errors";
import { invalidCharacter, isResidueCode, isSpace } from "./sequences";

export interface FastaRecord {
  /** First word of the header. */
  id: string;
  /** The rest of the header, trimmed ("" when absent). */
  description: string;
  /** Uppercase residues, line breaks and a trailing `*` removed. */
  sequence: string;
  /** 1-based line of the header. */
  line: number;
}

export interface FastaOptions {
  /** Prefix for messages, e.g. the file name. */
  source?: string;
}

/** An id as it may appear in a message: quoted, and cut when absurdly long. */
export function quoteId(id: string): string {
  return JSON.stringify(id.length > 60 ? `${id.slice(0, 57)}...` : id);
}

/**
 * The FASTA reader fed one line at a time, so a file can be read as a stream (see
 * `readFastaRecords`) with the same rules and messages as `parseFasta`.
 */
export class FastaParser {
  private readonly prefix: string;
  private current: { id: string; description: string; line: number; parts: string[] } | undefined;
  private residues = 0; // in the current record
  private star: { line: number; column: number; position: number } | undefined;

  constructor(options: FastaOptions = {}) {
    this.prefix = options.source ? `${options.source}: ` : "";
  }

  private finish(): FastaRecord | undefined {
    const current = this.current;
    if (!current) return undefined;
    if (this.residues === 0) {
      throw new FastaFormatError(
        `${this.prefix}line ${current.line}: record ${quoteId(current.id)} has no sequence`,
        { line: current.line, id: current.id, reason: "empty_record" },
      );
    }
    this.current = undefined;
    return {
      id: current.id,
      description: current.description,
      sequence: current.parts.join(""),
      line: current.line,
    };
  }

  /**
   * One line without its line break (`lineNo` counts from 1; a UTF-8 BOM on line 1 is
   * skipped); returns the record this line's header ended, if any.
   */
  line(text: string, lineNo: number): FastaRecord | undefined {
    const prefix = this.prefix;
    const line = lineNo === 1 && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
    let start = 0;
    while (start < line.length && isSpace(line.charCodeAt(start))) start++;
    if (start === line.length) return undefined;
    if (line.charCodeAt(start) === 0x3e /* > */) {
      const done = this.finish();
      const header = line.slice(start + 1).trim();
      if (header === "") {
        throw new FastaFormatError(`${prefix}line ${lineNo}: empty header (">" without an id)`, {
          line: lineNo,
          reason: "empty_header",
        });
      }
      const m = /^(\S+)\s*(.*)$/s.exec(header)!;
      this.current = { id: m[1]!, description: m[2]!, line: lineNo, parts: [] };
      this.residues = 0;
      this.star = undefined;
      return done;
    }
    const current = this.current;
    if (!current) {
      throw new FastaFormatError(
        `${prefix}line ${lineNo}: sequence data before the first ">" header`,
        { line: lineNo, reason: "no_header" },
      );
    }
    // Validate the line, then keep its residues in one piece (fast path for big files).
    let clean = true;
    for (let i = start; i < line.length; i++) {
      const code = line.charCodeAt(i);
      if (isSpace(code)) {
        clean = false;
        continue;
      }
      this.residues++;
      if (this.star) {
        throw invalidCharacter(
          0x2a,
          this.star.position,
          `${prefix}line ${this.star.line}, column ${this.star.column} (record ${quoteId(current.id)})`,
          " (a stop `*` is only allowed at the end of a record)",
        );
      }
      if (code === 0x2a) {
        this.star = { line: lineNo, column: i + 1, position: this.residues };
        this.residues--;
        clean = false;
        continue;
      }
      if (!isResidueCode(code)) {
        const where = `${prefix}line ${lineNo}, column ${i + 1} (record ${quoteId(current.id)})`;
        throw invalidCharacter(line.codePointAt(i)!, this.residues, where);
      }
    }
    const part = clean && start === 0 ? line : line.replace(/[\s*\ufeff]+/g, "");
    current.parts.push(part.toUpperCase());
    return undefined;
  }

  /** At the end of the input: the last record, if any. */
  end(): FastaRecord | undefined {
    return this.finish();
  }
}

export function parseFasta(text: string, options: FastaOptions = {}): FastaRecord[] {
  const parser = new FastaParser(options);
  const records: FastaRecord[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  for (let n = 0; n < lines.length; n++) {
    const r = parser.line(lines[n]!, n + 1);
    if (r) records.push(r);
  }
  const last = parser.end();
  if (last) records.push(last);
  return records;
}

/**
 * FASTA records from a byte stream, one at a time (memory: one record and one chunk),
 * with `parseFasta`'s rules and messages.
 */
export async function* readFastaRecords(
  stream: AsyncIterable<Buffer | string>,
  options: FastaOptions = {},
): AsyncGenerator<FastaRecord> {
  const parser = new FastaParser(options);
  const decoder = new StringDecoder("utf8");
  let pending = "";
  let lineNo = 0;
  const feed = function* (text: string, final: boolean): Generator<FastaRecord> {
    pending += text;
    const re = /\r\n|\r|\n/g;
    let from = 0;
    for (let m = re.exec(pending); m; m = re.exec(pending)) {
      // A "\r" at the very end may be the first half of "\r\n": wait for more.
      if (!final && m[0] === "\r" && m.index === pending.length - 1) break;
      const r = parser.line(pending.slice(from, m.index), ++lineNo);
      if (r) yield r;
      from = m.index + m[0].length;
    }
    pending = pending.slice(from);
    if (final) {
      const r = parser.line(pending, ++lineNo);
      if (r) yield r;
      pending = "";
    }
  };
  for await (const chunk of stream) {
    yield* feed(typeof chunk === "string" ? chunk : decoder.write(chunk), false);
  }
  yield* feed(decoder.end(), true);
  const last = parser.end();
  if (last) yield last;
}
