/**
 * A streaming RFC 4180 CSV reader: quoted fields (with "" escapes and embedded line
 * breaks), CRLF / LF / CR line ends, a UTF-8 byte-order mark. Each record carries
 * the 1-based line number where it starts, so data problems can be reported by line.
 */

import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";

export interface CsvRecord {
  fields: string[];
  /** 1-based line of the file where the record starts (the header is line 1). */
  line: number;
}

export async function* readCsv(stream: Readable): AsyncGenerator<CsvRecord, void, undefined> {
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

  for await (const chunk of stream) {
    const text = typeof chunk === "string" ? chunk : decoder.write(chunk as Buffer);
    if (text.length > 0) any = true;
    consume(text);
    yield* out;
    out.length = 0;
  }
  consume(decoder.end());
  if (any) {
    const rec = endRecord();
    if (rec) out.push(rec);
  }
  yield* out;
}
