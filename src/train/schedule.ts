/**
 * Learning-rate schedule: linear warmup then linear decay to 0, as transformers'
 * `get_linear_schedule_with_warmup`. Stateless: `lrAt(k)` is the rate for the k-th
 * optimizer update (0-based), so the first update uses `lr * lambda(0)` (0 when there is
 * warmup) exactly as torch's LambdaLR does, and a resumed run needs only the step count.
 */
import { ConfigError } from "../errors";

export interface LinearScheduleOptions {
  /** Peak learning rate (the optimizer's base lr). */
  lr: number;
  /** Total number of optimizer updates in the run. */
  totalSteps: number;
  /** Warmup length in updates. Give this or `warmupRatio`, not both; default 0. */
  warmupSteps?: number;
  /** Warmup as a fraction of `totalSteps`, rounded up (HF: `ceil(total * ratio)`). */
  warmupRatio?: number;
}

export interface LrSchedule {
  readonly lr: number;
  readonly warmupSteps: number;
  readonly totalSteps: number;
  /** The multiplier for update `step` (0-based). */
  lambda(step: number): number;
  /** The learning rate for update `step` (0-based): `lr * lambda(step)`. */
  lrAt(step: number): number;
}

/** transformers' `_get_linear_schedule_with_warmup_lr_lambda`. */
export function linearWarmupLambda(step: number, warmupSteps: number, totalSteps: number): number {
  if (step < warmupSteps) return step / Math.max(1, warmupSteps);
  return Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}

function isNonNegativeInteger(v: number): boolean {
  return Number.isInteger(v) && v >= 0;
}

/** Warmup steps from either a count or a ratio of the total (HF `get_warmup_steps`). */
export function resolveWarmupSteps(
  totalSteps: number,
  options: { warmupSteps?: number; warmupRatio?: number },
): number {
  const { warmupSteps, warmupRatio } = options;
  if (warmupSteps !== undefined && warmupRatio !== undefined) {
    throw new ConfigError(
      `Give warmupSteps (${warmupSteps}) or warmupRatio (${warmupRatio}), not both`,
      { warmupSteps, warmupRatio },
    );
  }
  if (warmupRatio !== undefined) {
    if (!(warmupRatio >= 0 && warmupRatio <= 1)) {
      throw new ConfigError(`warmupRatio ${warmupRatio} is invalid; expected a number in [0, 1]`, {
        warmupRatio,
      });
    }
    return Math.ceil(totalSteps * warmupRatio);
  }
  const steps = warmupSteps ?? 0;
  if (!isNonNegativeInteger(steps)) {
    throw new ConfigError(`warmupSteps ${steps} is invalid; expected an integer >= 0`, {
      warmupSteps: steps,
    });
  }
  return steps;
}

export function linearScheduleWithWarmup(options: LinearScheduleOptions): LrSchedule {
  const { lr, totalSteps } = options;
  if (!(Number.isFinite(lr) && lr >= 0)) {
    throw new ConfigError(`lr ${lr} is invalid; expected a finite number >= 0`, { lr });
  }
  if (!(Number.isInteger(totalSteps) && totalSteps > 0)) {
    throw new ConfigError(`totalSteps ${totalSteps} is invalid; expected an integer > 0`, {
      totalSteps,
    });
  }
  const warmupSteps = resolveWarmupSteps(totalSteps, options);
  const lambda = (step: number) => linearWarmupLambda(step, warmupSteps, totalSteps);
  return { lr, warmupSteps, totalSteps, lambda, lrAt: (step) => lr * lambda(step) };
}
