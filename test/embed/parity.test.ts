/**
 * `esmkit embed`'s numbers against Hugging Face EsmModel's hidden states
 * (test/reference/embed_reference.py): committed fixtures for the tiny test models,
 * and the 8M architecture (random weights) computed by Python at test time.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { embed, embedSequences, loadEmbedder } from "../../src/embed";
import { pythonSkipReason, referencePython, runPython } from "../helpers/python";
import {
  checkpoint8m,
  type EmbedReference,
  FIXTURES,
  fastaPairs,
  maxAbsDiff,
  readReference,
} from "./helpers";

const TOLERANCE = 1e-4;
const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-embed-parity-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function compareAll(ref: EmbedReference, got: Float32Array[], want: number[][], what: string) {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    worst = Math.max(worst, maxAbsDiff(got[i]!, want[i]!, `${what} ${ref.ids[i]}`));
  }
  return worst;
}

for (const name of ["tiny", "odd"]) {
  test(`${name}: every hidden state, mean and cls pooling, per residue, match EsmModel`, async () => {
    const ref = readReference(name);
    assert.ok(ref.last_equals_last_hidden_state, "fixture: hidden_states[N] is last_hidden_state");
    assert.ok(ref.last_is_final_norm_of_last_layer && ref.last_differs_from_last_layer_output);
    const embedder = await loadEmbedder(path.join(FIXTURES, "model", name), {
      maxLength: ref.max_length,
      threads: 1,
    });
    try {
      assert.equal(embedder.numLayers, ref.num_layers);
      assert.equal(embedder.hiddenSize, ref.hidden_size);
      const seqs = ref.sequences.map(([, s]) => s);
      const diffs: Record<string, number> = {};
      for (let layer = 0; layer <= ref.num_layers; layer++) {
        for (const pooling of ["mean", "cls"] as const) {
          // batch 3: mixed lengths padded together (the sort puts the long ones first)
          const got = embedder.embed(seqs, { pooling, layer, batchSize: 3 });
          const want = (pooling === "mean" ? ref.mean : ref.cls)[String(layer)]!;
          diffs[`${pooling}@${layer}`] = compareAll(
            ref,
            got.map((g) => g.embedding),
            want,
            `${pooling} layer ${layer}`,
          );
        }
      }
      for (const [layer, want] of Object.entries(ref.per_residue)) {
        const got = embedder.embed(seqs, { layer: Number(layer), perResidue: true, batchSize: 4 });
        got.forEach((g, i) => {
          assert.equal(g.residues!.length, ref.embedded_residues[i]! * ref.hidden_size);
        });
        diffs[`residues@${layer}`] = compareAll(
          ref,
          got.map((g) => g.residues!),
          want.map((rows) => rows.flat()),
          `per residue layer ${layer}`,
        );
      }
      // -1 is the last hidden state, as in Python.
      const last = embedder.embed(seqs, { layer: -1 });
      diffs["mean@-1"] = compareAll(
        ref,
        last.map((g) => g.embedding),
        ref.mean[String(ref.num_layers)]!,
        "layer -1",
      );
      console.log(`${name} max abs diff vs EsmModel: ${JSON.stringify(diffs)}`);
      for (const [k, d] of Object.entries(diffs)) assert.ok(d < TOLERANCE, `${k}: ${d}`);
      // The checks can fail: the layers differ from each other by far more than the tolerance.
      const l0 = ref.mean["0"]![0]!;
      const lN = ref.mean[String(ref.num_layers)]![0]!;
      assert.ok(maxAbsDiff(l0, lN, "layers") > 0.05);
    } finally {
      embedder.dispose();
    }
  });
}

test("embed() streams rows in input order across windows, with lengths and truncation", async () => {
  const ref = readReference("tiny");
  const records = ref.sequences.map(([id, sequence]) => ({ id, sequence: sequence.toLowerCase() }));
  const rows = [];
  for await (const row of embed({
    model: path.join(FIXTURES, "model", "tiny"),
    records,
    maxLength: ref.max_length,
    window: 3,
    batchSize: 2,
    threads: 1,
  })) {
    rows.push(row);
  }
  assert.deepEqual(
    rows.map((r) => r.id),
    ref.ids,
  );
  assert.deepEqual(
    rows.map((r) => r.length),
    ref.lengths,
  );
  assert.deepEqual(
    rows.map((r) => r.truncated),
    ref.lengths.map((n) => n > ref.max_length - 2),
  );
  const d = compareAll(
    ref,
    rows.map((r) => r.embedding),
    ref.mean[String(ref.num_layers)]!,
    "streamed",
  );
  assert.ok(d < TOLERANCE, `streamed rows: ${d}`);
  const vectors = await embedSequences(
    path.join(FIXTURES, "model", "tiny"),
    ref.sequences.map(([, s]) => s),
    { maxLength: ref.max_length, layer: 1, threads: 1 },
  );
  assert.ok(compareAll(ref, vectors, ref.mean["1"]!, "embedSequences") < TOLERANCE);
});

test("esm2_t6_8M architecture (random weights): embeddings match EsmModel", async (t) => {
  const python = referencePython();
  if (!python) return t.skip(pythonSkipReason());
  const dir = checkpoint8m(python);
  // 7 DeepLoc proteins of 61..1028 residues: the longest is truncated at 1024 tokens.
  const pairs = fastaPairs(
    readFileSync(path.join(FIXTURES, "export", "deeploc-50.fasta"), "utf8"),
  ).filter((_, i) => i % 8 === 0);
  const seqFile = path.join(tmp, "seqs.json");
  writeFileSync(seqFile, JSON.stringify(pairs));
  const ref = JSON.parse(
    runPython(python, "embed_reference.py", [
      "embed",
      dir,
      seqFile,
      "--layers",
      "0,3,6",
      "--per-residue",
      "6",
    ]),
  ) as EmbedReference;
  assert.ok(ref.last_equals_last_hidden_state && ref.last_is_final_norm_of_last_layer);
  assert.ok(
    ref.embedded_residues.some((n, i) => n < ref.lengths[i]!),
    "a truncated protein",
  );
  const embedder = await loadEmbedder(dir, { maxLength: 1024 });
  try {
    const seqs = pairs.map(([, s]) => s);
    const diffs: Record<string, number> = {};
    for (const layer of [0, 3, 6]) {
      for (const pooling of layer === 0 ? (["mean"] as const) : (["mean", "cls"] as const)) {
        const got = embedder.embed(seqs, { layer, pooling, batchSize: 4 });
        diffs[`${pooling}@${layer}`] = compareAll(
          ref,
          got.map((g) => g.embedding),
          (pooling === "mean" ? ref.mean : ref.cls)[String(layer)]!,
          `${pooling}@${layer}`,
        );
      }
    }
    const res = embedder.embed(seqs, { perResidue: true, batchSize: 4 });
    diffs["residues@6"] = compareAll(
      ref,
      res.map((g) => g.residues!),
      ref.per_residue["6"]!.map((rows) => rows.flat()),
      "per residue",
    );
    console.log(`8M max abs diff vs EsmModel: ${JSON.stringify(diffs)}`);
    for (const [k, d] of Object.entries(diffs)) assert.ok(d < TOLERANCE, `${k}: ${d}`);
  } finally {
    embedder.dispose();
  }
});
