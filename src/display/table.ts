/** Tables as a MIME bundle: the HTML of `toHtmlTable` and polars' text rendering. */
import { type DataFrame, pl, toHtmlTable } from "../data/frame";
import type { MimeBundle } from "./sink";

export type TableData = DataFrame | readonly Record<string, unknown>[];

export interface TableOptions {
  /** Rows shown; default 20. */
  maxRows?: number;
  /** Round floating-point columns to this many decimals for display; default: as they are. */
  digits?: number;
}

/** Records as a frame; number columns holding only integers are shown as integers. */
function toDataFrame(data: TableData): DataFrame {
  if (!Array.isArray(data)) return data as DataFrame;
  const df = pl.readRecords(data as Record<string, unknown>[]);
  const integral = df.columns.filter((c) => {
    const s = df.getColumn(c);
    const values = s.toArray() as unknown[];
    return (
      s.dtype.equals(pl.Float64) &&
      values.some((v) => v !== null) &&
      values.every((v) => v === null || Number.isSafeInteger(v))
    );
  });
  return integral.length ? df.withColumns(...integral.map((c) => pl.col(c).cast(pl.Int64))) : df;
}

/** Floating-point columns rounded to `digits` decimals. */
function rounded(df: DataFrame, digits: number | undefined): DataFrame {
  if (digits === undefined) return df;
  const floats = df.columns.filter((c) => {
    const t = df.getColumn(c).dtype;
    return t.equals(pl.Float64) || t.equals(pl.Float32);
  });
  return floats.length ? df.withColumns(...floats.map((c) => pl.col(c).round(digits))) : df;
}

export function tableBundle(data: TableData, options: TableOptions = {}): MimeBundle {
  const df = rounded(toDataFrame(data), options.digits);
  const maxRows = options.maxRows ?? 20;
  const more = df.height > maxRows ? `\n${df.height - maxRows} more rows` : "";
  return {
    "text/html": toHtmlTable(df, maxRows),
    "text/plain": `${df.head(maxRows).toString()}${more}`,
  };
}
