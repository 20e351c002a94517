import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { ConfigError } from "../../src/errors";
import { linearScheduleWithWarmup, resolveWarmupSteps } from "../../src/train/schedule";
import { REPO_ROOT } from "../helpers/python";

interface ScheduleCase {
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  /** lr in the optimizer before each optimizer.step(), from torch's LambdaLR. */
  lrs: number[];
}

const { cases } = JSON.parse(
  readFileSync(path.join(REPO_ROOT, "test", "fixtures", "train", "schedule.json"), "utf8"),
) as { cases: ScheduleCase[] };

test("lrAt(k) is the lr torch's LambdaLR gives the k-th update, past the end too", () => {
  assert.ok(cases.length >= 4);
  for (const c of cases) {
    const s = linearScheduleWithWarmup(c);
    c.lrs.forEach((want, k) => {
      assert.ok(
        Math.abs(s.lrAt(k) - want) <= 1e-18,
        `warmup ${c.warmupSteps} total ${c.totalSteps} step ${k}: ${s.lrAt(k)} vs ${want}`,
      );
    });
  }
});

test("with warmup the first update uses lr * lambda(0) = 0; without, the full lr", () => {
  assert.equal(linearScheduleWithWarmup({ lr: 1e-4, totalSteps: 10, warmupSteps: 2 }).lrAt(0), 0);
  assert.equal(linearScheduleWithWarmup({ lr: 1e-4, totalSteps: 10 }).lrAt(0), 1e-4);
});

test("a warmup ratio rounds up like HF's get_warmup_steps", () => {
  assert.equal(resolveWarmupSteps(25, { warmupRatio: 0.1 }), 3);
  assert.equal(resolveWarmupSteps(100, { warmupRatio: 0.06 }), 6);
  const s = linearScheduleWithWarmup({ lr: 1, totalSteps: 25, warmupRatio: 0.1 });
  assert.equal(s.warmupSteps, 3);
  assert.equal(s.lrAt(1), 1 / 3);
});

test("invalid schedule options are rejected with the value and what is accepted", () => {
  assert.throws(
    () => linearScheduleWithWarmup({ lr: 1, totalSteps: 10, warmupSteps: 2, warmupRatio: 0.1 }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /warmupSteps \(2\) or warmupRatio \(0.1\), not both/.test(e.message),
  );
  assert.throws(
    () => resolveWarmupSteps(10, { warmupRatio: 1.5 }),
    /warmupRatio 1.5 is invalid; expected a number in \[0, 1\]/,
  );
  assert.throws(() => resolveWarmupSteps(10, { warmupSteps: 2.5 }), /warmupSteps 2.5 is invalid/);
  assert.throws(
    () => linearScheduleWithWarmup({ lr: 1, totalSteps: 0 }),
    /totalSteps 0 is invalid; expected an integer > 0/,
  );
});
