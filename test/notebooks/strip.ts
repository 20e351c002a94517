/**
 * Notebooks are committed without outputs: run this before committing one you ran.
 *
 *   node build/test/notebooks/strip.js notebooks/*.ipynb           # strip in place
 *   node build/test/notebooks/strip.js --check notebooks/*.ipynb   # exit 1 if any has outputs
 *
 * It clears code cells' outputs and execution counts and the run metadata Jupyter
 * records (`metadata.execution` timings, notebook-level widget state), and writes the
 * file as Jupyter does (keys sorted, one-space indent, trailing newline), so a
 * notebook saved by JupyterLab changes only where it had outputs.
 */
import { readFileSync, writeFileSync } from "node:fs";

export interface NotebookJson {
  cells: {
    cell_type: string;
    source: string | string[];
    metadata?: Record<string, unknown>;
    outputs?: unknown[];
    execution_count?: number | null;
  }[];
  metadata: Record<string, unknown>;
  nbformat: number;
  nbformat_minor: number;
}

/** Cell metadata that only records a run. */
const RUN_CELL_METADATA = ["execution", "collapsed", "scrolled"];
/** Notebook metadata that only records a run. */
const RUN_NOTEBOOK_METADATA = ["widgets"];

/** What a committed notebook must not hold, one line per problem ("cell 3: 2 outputs"). */
export function runLeftovers(nb: NotebookJson): string[] {
  const problems: string[] = [];
  nb.cells.forEach((cell, i) => {
    if (cell.cell_type === "code") {
      if (cell.outputs?.length) problems.push(`cell ${i}: ${cell.outputs.length} output(s)`);
      if (cell.execution_count != null) {
        problems.push(`cell ${i}: execution_count ${cell.execution_count}`);
      }
    }
    for (const key of RUN_CELL_METADATA) {
      if (cell.metadata && key in cell.metadata) problems.push(`cell ${i}: metadata.${key}`);
    }
  });
  for (const key of RUN_NOTEBOOK_METADATA) {
    if (key in nb.metadata) problems.push(`notebook metadata.${key}`);
  }
  return problems;
}

/** A copy without outputs, execution counts or run metadata. */
export function stripNotebook(nb: NotebookJson): NotebookJson {
  const copy = JSON.parse(JSON.stringify(nb)) as NotebookJson;
  for (const cell of copy.cells) {
    if (cell.cell_type === "code") {
      cell.outputs = [];
      cell.execution_count = null;
    }
    for (const key of RUN_CELL_METADATA) delete cell.metadata?.[key];
  }
  for (const key of RUN_NOTEBOOK_METADATA) delete copy.metadata[key];
  return copy;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** The file text Jupyter writes (nbformat: sorted keys, indent 1, final newline). */
export function formatNotebook(nb: NotebookJson): string {
  return `${JSON.stringify(sortKeys(nb), null, 1)}\n`;
}

export function main(argv: string[]): number {
  const check = argv.includes("--check");
  const files = argv.filter((a) => a !== "--check");
  if (files.length === 0) {
    process.stderr.write("usage: node build/test/notebooks/strip.js [--check] NOTEBOOK.ipynb...\n");
    return 2;
  }
  let dirty = 0;
  for (const file of files) {
    const nb = JSON.parse(readFileSync(file, "utf8")) as NotebookJson;
    const problems = runLeftovers(nb);
    if (check) {
      if (problems.length) {
        dirty++;
        process.stderr.write(`${file}: not stripped (${problems.join("; ")})\n`);
      }
      continue;
    }
    const before = readFileSync(file, "utf8");
    const after = formatNotebook(stripNotebook(nb));
    if (after !== before) {
      writeFileSync(file, after);
      process.stdout.write(
        `${file}: stripped${problems.length ? ` (${problems.join("; ")})` : " (reformatted)"}\n`,
      );
    }
  }
  if (check && dirty) {
    process.stderr.write(
      `strip them with: node build/test/notebooks/strip.js ${files.join(" ")}\n`,
    );
  }
  return check && dirty ? 1 : 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
