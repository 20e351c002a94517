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

/**
 * Records as a frame. JavaScript has one number type, so a column's type is inferred: it
 * is shown as integers when every value is an integer and one lies outside [-1, 1]
 * (counts, epochs); otherwise as floats, so that a rate which happens to be 0 or 1 (a
 * recall of 1) stays a float next to its fractional siblings.
 */
function toDataFrame(data: TableData): DataFrame {
  if (!Array.isArray(data)) return data as DataFrame;
  const df = pl.readRecords(data as Record<string, unknown>[]);
  const integral = df.columns.filter((c) => {
    const s = df.getColumn(c);
    const values = (s.toArray() as unknown[]).filter((v) => v !== null);
    return (
      s.dtype.equals(pl.Float64) &&
      values.length > 0 &&
      values.every((v) => Number.isSafeInteger(v)) &&
      values.some((v) => Math.abs(v as number) > 1)
    );
  });
  return integral.length ? df.withColumns(...integral.map((c) => pl.col(c).cast(pl.Int64))) : df;
}

const isFloat = (df: DataFrame, c: string) => {
  const t = df.getColumn(c).dtype;
  return t.equals(pl.Float64) || t.equals(pl.Float32);
};

/** Floating-point columns rounded to `digits` decimals. */
function rounded(df: DataFrame, digits: number | undefined): DataFrame {
  if (digits === undefined) return df;
  const floats = df.columns.filter((c) => isFloat(df, c));
  return floats.length ? df.withColumns(...floats.map((c) => pl.col(c).round(digits))) : df;
}

/** For the HTML: floating-point columns as text with exactly `digits` decimals (1.000, 0.667). */
function fixed(df: DataFrame, digits: number | undefined): DataFrame {
  if (digits === undefined) return df;
  const floats = df.columns.filter((c) => isFloat(df, c));
  const text = (c: string) =>
    pl.Series(
      c,
      (df.getColumn(c).toArray() as (number | null)[]).map((v) =>
        v === null ? null : Number.isFinite(v) ? v.toFixed(digits) : String(v),
      ),
    );
  return floats.length ? df.withColumns(...floats.map(text)) : df;
}

export function tableBundle(data: TableData, options: TableOptions = {}): MimeBundle {
  const df = toDataFrame(data);
  const maxRows = options.maxRows ?? 20;
  const shown = df.head(maxRows);
  const more = df.height > maxRows ? `\n${df.height - maxRows} more rows` : "";
  const html = toHtmlTable(fixed(shown, options.digits), maxRows);
  const note = df.height > maxRows ? `<p>${df.height - maxRows} more rows</p>` : "";
  return {
    "text/html": `${html}${note}`,
    "text/plain": `${rounded(shown, options.digits).toString()}${more}`,
  };
}
