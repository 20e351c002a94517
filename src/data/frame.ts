/**
 * The DataFrame layer for notebooks, on nodejs-polars (Rust polars through N-API,
 * installed from npm alone, reads and writes the Parquet that `prepare` produces).
 * danfojs-node could not be used: it needs tfjs-node 3 and a tarball from a CDN.
 */
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import pl from "nodejs-polars";
import { DataError } from "../errors";
import type { PreparedTask, PrepareStats } from "./prepare";

export { pl };
export type DataFrame = pl.DataFrame;

export interface PreparedData {
  train: pl.DataFrame;
  test: pl.DataFrame;
  stats: PrepareStats;
}

/** Load the output directory of `prepare` (train.parquet, test.parquet, stats.json). */
export async function loadPrepared(dir: string): Promise<PreparedData> {
  const file = (name: string) => path.join(dir, name);
  let stats: PrepareStats;
  try {
    stats = JSON.parse(await readFile(file("stats.json"), "utf8"));
  } catch (e) {
    throw new DataError(
      `${dir} is not a prepared dataset (no readable stats.json); run "esmkit prepare" first`,
      {
        dir,
      },
      { cause: e },
    );
  }
  return {
    train: pl.readParquet(file("train.parquet")),
    test: pl.readParquet(file("test.parquet")),
    stats,
  };
}

/**
 * The task a prepared dataset was made for (stats.json); stats.json files written before
 * tasks existed describe the binary task of their label column.
 */
export function preparedTask(
  stats: Pick<PrepareStats, "labelColumn"> & { task?: PreparedTask },
): PreparedTask {
  return (
    stats.task ?? {
      problemType: "single_label_classification",
      labels: ["LABEL_0", "LABEL_1"],
      columns: [stats.labelColumn ?? "Membrane"],
    }
  );
}

/**
 * Multi-label: rows, positive rows and the positive rate of each label, per split (from
 * the `label` 0/1 vectors).
 */
export function labelBalance(
  splits: Record<string, pl.DataFrame>,
  names: readonly string[],
): pl.DataFrame {
  const split: string[] = [];
  const label: string[] = [];
  const rows: number[] = [];
  const positive: number[] = [];
  for (const [name, df] of Object.entries(splits)) {
    const vectors = df.getColumn("label").toArray() as unknown as ArrayLike<number>[];
    names.forEach((l, c) => {
      let p = 0;
      for (const v of vectors) p += Number(v[c]);
      split.push(name);
      label.push(l);
      rows.push(vectors.length);
      positive.push(p);
    });
  }
  return pl
    .DataFrame([
      pl.Series("split", split, pl.Utf8),
      pl.Series("label", label, pl.Utf8),
      pl.Series("rows", rows, pl.Int64),
      pl.Series("positive", positive, pl.Int64),
    ])
    .withColumns(pl.col("positive").cast(pl.Float64).div(pl.col("rows")).alias("positive_rate"));
}

/** Rows per split and label, with the fraction of each label inside its split. */
export function classBalance(
  splits: Record<string, pl.DataFrame>,
  labelColumn = "label",
): pl.DataFrame {
  const parts = Object.entries(splits).map(([name, df]) => {
    if (!df.columns.includes(labelColumn)) {
      throw new DataError(
        `No column "${labelColumn}" in split "${name}"; columns: ${df.columns.join(", ")}`,
        {
          split: name,
        },
      );
    }
    return df
      .groupBy(labelColumn)
      .agg(pl.len().alias("rows"))
      .withColumns(pl.lit(name).alias("split"))
      .withColumns(pl.col("rows").cast(pl.Float64).div(pl.col("rows").sum()).alias("fraction"));
  });
  return pl
    .concat(parts)
    .select("split", labelColumn, "rows", "fraction")
    .sort(["split", labelColumn]);
}

/** Count, positives and positive rate per value of a column (e.g. kingdom). */
export function labelRateBy(df: pl.DataFrame, column: string, labelColumn = "label"): pl.DataFrame {
  return df
    .groupBy(column)
    .agg(pl.len().alias("rows"), pl.col(labelColumn).sum().alias("positive"))
    .withColumns(pl.col("positive").cast(pl.Float64).div(pl.col("rows")).alias("positive_rate"))
    .sort(column);
}

/** An HTML table (first `maxRows` rows) for notebooks; values are escaped. */
export function toHtmlTable(df: pl.DataFrame, maxRows = 20): string {
  const esc = (v: unknown) =>
    String(Array.isArray(v) ? `[${v.length} items]` : v).replace(
      /[&<>"]/g,
      (c) => `&#${c.charCodeAt(0)};`,
    );
  const head = df.columns.map((c) => `<th>${esc(c)}</th>`).join("");
  const rows = df
    .head(maxRows)
    .toRecords()
    .map((r) => `<tr>${df.columns.map((c) => `<td>${esc(r[c])}</td>`).join("")}</tr>`)
    .join("");
  const more = df.height > maxRows ? `<p>${df.height - maxRows} more rows</p>` : "";
  return `<table><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>${more}`;
}
