/**
 * The committed notebooks: no outputs (strip them with `node build/test/notebooks/strip.js
 * notebooks/*.ipynb`), the esmkit kernel, a purpose statement and a `parameters` cell.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../helpers/python";
import { formatNotebook, type NotebookJson, runLeftovers, stripNotebook } from "./strip";

const DIR = path.join(REPO_ROOT, "notebooks");
const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".ipynb"))
  .sort();
const load = (f: string) => JSON.parse(readFileSync(path.join(DIR, f), "utf8")) as NotebookJson;
const text = (s: string | string[]) => (Array.isArray(s) ? s.join("") : s);

test("the four numbered notebooks are there", () => {
  assert.deepEqual(files, [
    "01-prepare-data.ipynb",
    "02-fine-tune-lora.ipynb",
    "03-deploy-and-predict.ipynb",
    "04-multi-label-locations.ipynb",
  ]);
});

test("committed notebooks carry no outputs or execution counts", () => {
  const dirty = files
    .map((f) => ({ f, problems: runLeftovers(load(f)) }))
    .filter((d) => d.problems.length > 0)
    .map((d) => `notebooks/${d.f}: ${d.problems.join("; ")}`);
  assert.deepEqual(
    dirty,
    [],
    `strip them with: node build/test/notebooks/strip.js notebooks/*.ipynb\n${dirty.join("\n")}`,
  );
});

test("each notebook uses the esmkit kernel, states its purpose and has a parameters cell first", () => {
  for (const f of files) {
    const nb = load(f);
    assert.deepEqual(
      nb.metadata.kernelspec,
      { display_name: "TypeScript (esmkit)", language: "typescript", name: "esmkit" },
      f,
    );
    const [first] = nb.cells;
    assert.equal(first?.cell_type, "markdown", `${f}: starts with a markdown cell`);
    assert.match(text(first!.source), /^# \d\d · .+\n\n\*\*(Tutorial|How-to)\b/, f);
    const code = nb.cells.filter((c) => c.cell_type === "code");
    const tagged = code.filter((c) =>
      ((c.metadata?.tags as string[] | undefined) ?? []).includes("parameters"),
    );
    assert.equal(tagged.length, 1, `${f}: one cell tagged "parameters"`);
    assert.equal(code[0], tagged[0], `${f}: the parameters cell is the first code cell`);
    assert.match(text(tagged[0]!.source), /process\.env\.ESMKIT_NB_OUT/, f);
  }
});

test("strip: clears outputs, counts and run metadata, and writes Jupyter's format", () => {
  const run: NotebookJson = {
    cells: [
      {
        cell_type: "code",
        source: "1",
        metadata: { tags: ["parameters"], execution: { "iopub.status.busy": "x" } },
        execution_count: 3,
        outputs: [{ output_type: "stream", name: "stdout", text: "1\n" }],
      },
      { cell_type: "markdown", source: "# é", metadata: {} },
    ],
    metadata: { widgets: {}, kernelspec: { name: "esmkit" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  assert.equal(runLeftovers(run).length, 4);
  const clean = stripNotebook(run);
  assert.deepEqual(runLeftovers(clean), []);
  assert.deepEqual(clean.cells[0], {
    cell_type: "code",
    source: "1",
    metadata: { tags: ["parameters"] },
    execution_count: null,
    outputs: [],
  });
  assert.equal(run.cells[0]!.outputs!.length, 1, "the input is not modified");
  const written = formatNotebook(clean);
  assert.ok(written.startsWith('{\n "cells": [\n  {\n   "cell_type": "code",\n'), written);
  assert.ok(written.includes('"source": "# é"') && written.endsWith("}\n"));
});
