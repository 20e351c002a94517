/**
 * The onnx engine's multi-label and regression loss heads on their own (logits fed,
 * loss and dLogits out), with the tables of taskLossFeeds, against torch's
 * BCEWithLogitsLoss(pos_weight) and MSELoss (test/fixtures/tasks/losses.json): large
 * logits, soft targets, and the accumulation scale included.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { esm2Config } from "../../src/model/config";
import { EsmGraph, IN, type LossKind } from "../../src/onnx/esm-graph";
import { floatTensor, OrtSession } from "../../src/onnx/runtime";
import { taskLossFeeds } from "../../src/onnx/task-feeds";
import { REPO_ROOT } from "../helpers/python";

interface LossCase {
  name: string;
  kind: "cross_entropy" | "bce" | "mse";
  shape: [number, number];
  logits: number[];
  targets: number[];
  weight: number[] | null;
  loss: number;
  grad: number[];
}

const cases: LossCase[] = JSON.parse(
  readFileSync(path.join(REPO_ROOT, "test", "fixtures", "tasks", "losses.json"), "utf8"),
).cases.filter((c: LossCase) => c.kind !== "cross_entropy");

test("BCE-with-logits and MSE loss graphs reproduce torch's loss and logits gradient", () => {
  assert.equal(cases.length, 6);
  for (const c of cases) {
    const [n, k] = c.shape;
    const loss: LossKind = c.kind === "bce" ? "bce_with_logits" : "mse";
    const config = esm2Config("esm2_t6_8M_UR50D", { numHiddenLayers: 1, numLabels: k });
    const eg = new EsmGraph("loss", {
      config,
      modules: new Map(),
      trainableNorms: new Set(),
      loss,
    });
    const z = eg.g.input("z", "float", ["B", k]);
    const head = eg.loss(z);
    eg.g.output("loss_out", head.loss, "float", []);
    eg.g.output("dz", head.dLogits, "float", ["B", k]);
    const s = new OrtSession(eg.g.build());
    for (const scale of [1, 0.5]) {
      const feeds = taskLossFeeds(
        c.kind === "bce" ? "multi_label_classification" : "regression",
        c.targets,
        k,
        { posWeight: c.weight ?? undefined, scale },
      );
      const out = s.run({
        z: floatTensor(Float32Array.from(c.logits), [n, k]),
        [IN.lossWeights]: floatTensor(feeds.weights, [n, k]),
        [IN.lossTargets]: floatTensor(feeds.targets, [n, k]),
      });
      const l = out.loss_out!.data[0]!;
      assert.ok(Number.isFinite(l), `${c.name}: loss ${l}`);
      assert.ok(
        Math.abs(l - scale * c.loss) <= 1e-5 * Math.abs(c.loss),
        `${c.name} x${scale}: loss ${l} vs torch ${scale * c.loss}`,
      );
      let worst = 0;
      for (let i = 0; i < c.grad.length; i++)
        worst = Math.max(worst, Math.abs(out.dz!.data[i]! - scale * c.grad[i]!));
      assert.ok(worst <= 1e-6, `${c.name} x${scale}: dLogits max |diff| ${worst}`);
    }
    s.dispose();
  }
  assert.throws(
    () => taskLossFeeds("multi_label_classification", [1, 0, 1, 0], 2, { posWeight: [1, 2, 3] }),
    /Positive weights \[1, 2, 3\] have 3 entries; the model has 2 labels/,
  );
});
