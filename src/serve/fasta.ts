/**
 * A FASTA reader for protein sequences, forgiving in layout and strict in content:
 * - records span any number of lines; blank lines, CRLF / CR line ends, a UTF-8 BOM
 *   and whitespace inside sequence lines are fine;
 * - `>header`: the id is the first word, the description the rest;
 * - residues are upper-cased and one `*` at the end of a record is dropped;
 * - errors name the line (and column): sequence data before the first header, an
 *   empty header, a record without residues, a character that is not a residue.
 */
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

export function parseFasta(text: string, options: FastaOptions = {}): FastaRecord[] {
  const prefix = options.source ? `${options.source}: ` : "";
  const records: FastaRecord[] = [];
  let current: { id: string; description: string; line: number; parts: string[] } | undefined;
  let residues = 0; // in the current record
  let star: { line: number; column: number; position: number } | undefined;

  const finish = () => {
    if (!current) return;
    if (residues === 0) {
      throw new FastaFormatError(
        `${prefix}line ${current.line}: record ${quoteId(current.id)} has no sequence`,
        { line: current.line, id: current.id, reason: "empty_record" },
      );
    }
    records.push({
      id: current.id,
      description: current.description,
      sequence: current.parts.join(""),
      line: current.line,
    });
  };

  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = body.split(/\r\n|\r|\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!;
    const lineNo = n + 1;
    let start = 0;
    while (start < line.length && isSpace(line.charCodeAt(start))) start++;
    if (start === line.length) continue;
    if (line.charCodeAt(start) === 0x3e /* > */) {
      finish();
      const header = line.slice(start + 1).trim();
      if (header === "") {
        throw new FastaFormatError(`${prefix}line ${lineNo}: empty header (">" without an id)`, {
          line: lineNo,
          reason: "empty_header",
        });
      }
      const m = /^(\S+)\s*(.*)$/s.exec(header)!;
      current = { id: m[1]!, description: m[2]!, line: lineNo, parts: [] };
      residues = 0;
      star = undefined;
      continue;
    }
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
      residues++;
      if (star) {
        throw invalidCharacter(
          0x2a,
          star.position,
          `${prefix}line ${star.line}, column ${star.column} (record ${quoteId(current.id)})`,
          " (a stop `*` is only allowed at the end of a record)",
        );
      }
      if (code === 0x2a) {
        star = { line: lineNo, column: i + 1, position: residues };
        residues--;
        clean = false;
        continue;
      }
      if (!isResidueCode(code)) {
        const where = `${prefix}line ${lineNo}, column ${i + 1} (record ${quoteId(current.id)})`;
        throw invalidCharacter(line.codePointAt(i)!, residues, where);
      }
    }
    const part = clean && start === 0 ? line : line.replace(/[\s*\ufeff]+/g, "");
    current.parts.push(part.toUpperCase());
  }
  finish();
  return records;
}
