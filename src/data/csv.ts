/**
 * A streaming RFC 4180 CSV reader: quoted fields (with "" escapes and embedded line
 * breaks), CRLF / LF / CR line ends, a UTF-8 byte-order mark. Each record carries
 * the 1-based line number where it starts, so data problems can be reported by line.
 * A last record that no line break ends (a file cut short, or still open in a quoted
 * field) is marked, so that callers can refuse to trust it. A binary file is refused
 * before anything of it is parsed.
 */

import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { DataError } from "../errors";

export interface CsvRecord {
  fields: string[];
  /** 1-based line of the file where the record starts (the header is line 1). */
  line: number;
  /** Set on a last record that no line break ends: it may have been cut off. */
  unterminated?: true;
}

export interface CsvOptions {
  /** Name of the input in error messages (default "the input"). */
  name?: string;
}

/** Bytes looked at before parsing to tell text from a binary file. */
const SNIFF_BYTES = 8192;

/**
 * Text safe to print in a terminal: control characters (C0, DEL, C1), line and
 * paragraph separators and bidirectional overrides become `\uXXXX`, so input bytes
 * can never act as escape sequences; long text is cut to `max` characters.
 */
export function printable(text: string, max = 200): string {
  const escaped = text.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return escaped.length > max ? `${escaped.slice(0, max)}...` : escaped;
}

/** Fail on input that is not UTF-8 text: NUL bytes, a compressed file, invalid UTF-8. */
function checkText(head: Buffer, name: string): void {
  const fail = (why: string) =>
    new DataError(`${name} is not a CSV text file: ${why}`, { reason: why });
  if (head[0] === 0x1f && head[1] === 0x8b) {
    throw fail("it is gzip-compressed; decompress it first (gunzip)");
  }
  if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
    throw fail("it is a zip archive (or an Excel .xlsx); extract or export the CSV first");
  }
  const nul = head.indexOf(0);
  if (nul >= 0) {
    throw fail(`it has a NUL byte at offset ${nul} (a binary file, or UTF-16 text?)`);
  }
  try {
    // stream: a character cut at the end of the sample is not an error.
    new TextDecoder("utf-8", { fatal: true }).decode(head, { stream: true });
  } catch {
    throw fail("its first bytes are not valid UTF-8 (save it as UTF-8 text)");
  }
}

export async function* readCsv(
  stream: Readable,
  options: CsvOptions = {},
): AsyncGenerator<CsvRecord, void, undefined> {
  const name = options.name ?? "the input";
  const decoder = new StringDecoder("utf8");
  let fields: string[] = [];
  let field = "";
  let inQuotes = false;
  let quoteJustClosed = false;
  let line = 1;
  let recordLine = 1;
  let first = true;
  let pendingCR = false;
  let any = false;

  const endRecord = (): CsvRecord | undefined => {
    fields.push(field);
    field = "";
    const rec = { fields, line: recordLine };
    fields = [];
    const empty = rec.fields.length === 1 && rec.fields[0] === "";
    return empty ? undefined : rec;
  };

  const out: CsvRecord[] = [];
  const consume = (text: string) => {
    let i = 0;
    const n = text.length;
    if (first && n > 0) {
      first = false;
      if (text.charCodeAt(0) === 0xfeff) i = 1;
    }
    let start = i; // start of a plain run inside the current field
    while (i < n) {
      const c = text.charCodeAt(i);
      if (pendingCR) {
        pendingCR = false;
        if (c === 10) {
          i++;
          start = i;
          continue;
        }
      }
      if (inQuotes) {
        if (c === 34) {
          field += text.slice(start, i);
          if (i + 1 < n) {
            if (text.charCodeAt(i + 1) === 34) {
              field += '"';
              i += 2;
              start = i;
              continue;
            }
            inQuotes = false;
            quoteJustClosed = true;
            i++;
            start = i;
            continue;
          }
          // Quote at the chunk end: decide with the next chunk.
          inQuotes = false;
          quoteJustClosed = true;
          i++;
          start = i;
          continue;
        }
        if (c === 10 || (c === 13 && text.charCodeAt(i + 1) !== 10)) line++;
        i++;
        continue;
      }
      if (c === 34) {
        if (quoteJustClosed) {
          // "" split across the decision point: an escaped quote inside the field.
          field += '"';
          inQuotes = true;
          quoteJustClosed = false;
          i++;
          start = i;
          continue;
        }
        if (field === "" && start === i) {
          inQuotes = true;
          i++;
          start = i;
          continue;
        }
      }
      quoteJustClosed = false;
      if (c === 44) {
        fields.push(field + text.slice(start, i));
        field = "";
        i++;
        start = i;
        continue;
      }
      if (c === 10 || c === 13) {
        field += text.slice(start, i);
        const rec = endRecord();
        if (rec) out.push(rec);
        line++;
        recordLine = line;
        if (c === 13) pendingCR = true;
        i++;
        start = i;
        continue;
      }
      i++;
    }
    field += text.slice(start, n);
  };

  const feed = (chunk: Buffer | string) => {
    const text = typeof chunk === "string" ? chunk : decoder.write(chunk);
    if (text.length > 0) any = true;
    consume(text);
  };
  // The first bytes are held back until there are enough to check that they are text.
  let head: Buffer[] | undefined = [];
  let headBytes = 0;
  for await (const chunk of stream) {
    if (head) {
      const buf = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
      head.push(buf);
      headBytes += buf.length;
      if (headBytes < SNIFF_BYTES) continue;
      const all = Buffer.concat(head);
      head = undefined;
      checkText(all.subarray(0, SNIFF_BYTES), name);
      feed(all);
    } else {
      feed(chunk as Buffer | string);
    }
    yield* out;
    out.length = 0;
  }
  if (head) {
    const all = Buffer.concat(head);
    checkText(all, name);
    feed(all);
  }
  consume(decoder.end());
  if (any) {
    const rec = endRecord();
    if (rec) out.push({ ...rec, unterminated: true });
  }
  yield* out;
}
