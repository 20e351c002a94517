/** Tables as a MIME bundle: the HTML of `toHtmlTable` and polars' text rendering. */
import { type DataFrame, pl, toHtmlTable } from "../data/frame";
import type { MimeBundle } from "./sink";

export type TableData = DataFrame | readonly Record<string, unknown>[];

export interface TableOptions {
  /** Rows shown; default 20. */
  maxRows?: number;
}

function toDataFrame(data: TableData): DataFrame {
  return Array.isArray(data)
    ? pl.readRecords(data as Record<string, unknown>[])
    : (data as DataFrame);
}

export function tableBundle(data: TableData, options: TableOptions = {}): MimeBundle {
  const df = toDataFrame(data);
  const maxRows = options.maxRows ?? 20;
  const more = df.height > maxRows ? `\n${df.height - maxRows} more rows` : "";
  return {
    "text/html": toHtmlTable(df, maxRows),
    "text/plain": `${df.head(maxRows).toString()}${more}`,
  };
}
