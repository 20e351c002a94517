/**
 * Memory stays bounded however many proteins stream through `embedToParquet`: 20,000
 * short proteins with per-residue output (about 150 MB of floats written) on the tiny
 * model, in a child process whose RSS is sampled after GC as it goes. Holding the rows
 * (or the input) would add about 120 MB between the first and last samples; the bound
 * asserted is 48 MB, while a streaming run stays within a few MB.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { FIXTURES } from "./helpers";

const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-embed-mem-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const PROTEINS = 20_000;
const RESIDUES = "ACDEFGHIKLMNPQRSTVWY";

test(`${PROTEINS} proteins: RSS does not grow with the number embedded`, () => {
  // Deterministic proteins of 40..79 residues.
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const lines: string[] = [];
  let residues = 0;
  for (let i = 0; i < PROTEINS; i++) {
    const n = 40 + Math.floor(rand() * 40);
    residues += n;
    let s = "";
    for (let j = 0; j < n; j++) s += RESIDUES[Math.floor(rand() * 20)];
    lines.push(`>p${i}\n${s}`);
  }
  const fasta = path.join(tmp, "many.fasta");
  writeFileSync(fasta, `${lines.join("\n")}\n`);
  const out = path.join(tmp, "many.parquet");
  const r = spawnSync(
    process.execPath,
    [
      "--expose-gc",
      path.join(__dirname, "memory-child.js"),
      path.join(FIXTURES, "model", "tiny"),
      fasta,
      out,
      "2000",
    ],
    { encoding: "utf8", timeout: 240_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  const samples = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const done = samples.pop();
  assert.equal(done.done, PROTEINS);
  // 32 floats per residue (the tiny model's hidden size), 4 bytes each.
  const floatMiB = (residues * 32 * 4) / 2 ** 20;
  assert.ok(statSync(out).size > floatMiB * 2 ** 20, "every residue's vector was written");
  const mib = samples.map((s: { rss: number }) => s.rss / 2 ** 20);
  // From the second sample on (the first includes warm-up: sessions, arena, JIT).
  const base = mib[1]!;
  const growth = Math.max(...mib.slice(1)) - base;
  console.log(
    `RSS after each 2000 proteins (MiB): ${mib.map((m: number) => m.toFixed(0)).join(", ")}; growth ${growth.toFixed(1)} MiB while ${floatMiB.toFixed(0)} MiB of vectors were written`,
  );
  assert.ok(mib.length >= 9, `samples: ${mib.length}`);
  assert.ok(growth < 48, `RSS grew ${growth.toFixed(1)} MiB from ${base.toFixed(0)} MiB`);
});
