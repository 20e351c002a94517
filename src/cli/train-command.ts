import { fineTuneStaged } from "../aws/staged";
import {
  isTrainingContainer,
  runTrainingContainer,
  sageMakerPaths,
} from "../aws/training-contract";
import { describeMetrics } from "../train/evaluate";
import { fineTuneSettings, TRAIN_FLAGS } from "../train/flags";
import type { TrainEvent } from "../train/trainer";
import { type ProgressLine, progressLine, transferPrinter } from "../util/progress";
import { defineCommand } from "./command";

function sayer(quiet: boolean | undefined) {
  return (m: string) => {
    if (!quiet || m.includes("RANDOM WEIGHTS")) process.stderr.write(`${m}\n`);
  };
}

function trainEventPrinter(say: (m: string) => void, bar: ProgressLine) {
  return (e: TrainEvent) => {
    if (e.type === "start" && e.resumedFrom !== null) say(`resuming from step ${e.resumedFrom}`);
    if (e.type === "step") {
      bar.update(
        e.step,
        e.totalSteps,
        `loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} ${Math.round(e.tokensPerSecond)} tok/s`,
      );
    }
    if (e.type === "eval") {
      say(`\neval epoch ${e.epoch}: ${describeMetrics(e.metrics)}`);
    }
    if (e.type === "end") bar.finish(`${e.step} steps`);
  };
}

const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT_CODES;

/**
 * SIGINT (Ctrl-C) and SIGTERM (kill, docker stop, a stopped SageMaker job, a spot
 * interruption) alike: finish the current step, save a checkpoint and stop, then exit
 * 130 / 143. A second signal exits at once (the lock and temporaries go on exit).
 * Serves both the plain and the SageMaker container mode.
 */
function stopOnSignals() {
  const controller = new AbortController();
  let received: StopSignal | undefined;
  const handler = (signal: StopSignal) => {
    if (received) process.exit(SIGNAL_EXIT_CODES[signal]);
    received = signal;
    const name = signal === "SIGINT" ? "interrupt (SIGINT)" : signal;
    process.stderr.write(
      `\n${name}: finishing this step and saving a checkpoint (${signal === "SIGINT" ? "Ctrl-C" : "SIGTERM"} again to quit now)\n`,
    );
    controller.abort();
  };
  for (const s of Object.keys(SIGNAL_EXIT_CODES)) process.on(s, handler);
  return {
    signal: controller.signal,
    /** The exit code of a run stopped by a signal. */
    exitCode: () => SIGNAL_EXIT_CODES[received ?? "SIGINT"],
    dispose: () => {
      for (const s of Object.keys(SIGNAL_EXIT_CODES)) process.off(s, handler);
    },
  };
}

/**
 * SageMaker container mode. A signal stops after the current step with a checkpoint in
 * /opt/ml/checkpoints, which the next attempt resumes.
 */
async function runContainer(say: (m: string) => void, quiet: boolean | undefined) {
  const stop = stopOnSignals();
  try {
    const result = await runTrainingContainer({
      onMessage: say,
      onEvent: trainEventPrinter(say, progressLine("training", { quiet })),
      signal: stop.signal,
    });
    if (result.failure) process.stderr.write(`esmkit train: ${result.failure}\n`);
    else if (result.files) say(`wrote ${result.files.join(", ")} in ${sageMakerPaths().model}`);
    return result.interrupted ? stop.exitCode() : result.exitCode;
  } finally {
    stop.dispose();
  }
}

export const trainCommand = defineCommand({
  name: "train",
  summary: "fine-tune ESM-2 (LoRA, weighted loss, accumulation, checkpointing)",
  usage: ["esmkit train               (inside a SageMaker training container)"],
  description: `
Fine-tune ESM-2 for sequence classification on the output of "esmkit prepare".
Writes DIR/model (merged, Hugging Face format), DIR/adapter (PEFT), metrics.json,
history.jsonl, run.json and checkpoints/. DIR may be s3://bucket/prefix (downloaded /
uploaded through a local copy).

One run per DIR: it is locked while a run writes it (a second run fails at once,
naming the first one's pid), and a new run refuses a DIR that holds another run unless
--overwrite. Ctrl-C or SIGTERM finishes the step, saves a checkpoint and exits 130 /
143; --resume continues, only with the settings the run started with (a difference is
refused and named). May change on resume: --max-steps, --epochs, --save-steps,
--save-total-limit, --eval-batch-size, --backend, --engine, --threads, --workers,
--gradient-checkpointing, --quiet. A resume of a finished run trains nothing: it says
so and writes model/, adapter/, metrics.json only if they are missing.

Without --data and --out, when /opt/ml/input/config/hyperparameters.json exists (root
overridable with ESMKIT_SM_ROOT), it runs the SageMaker training contract: settings
from the hyperparameters (snake_case names of the flags below, e.g. max_steps), data
from the train channel, resume from /opt/ml/checkpoints, the model to /opt/ml/model,
and on failure the reason to /opt/ml/output/failure (see docs/aws.md).`,
  flags: TRAIN_FLAGS,
  async before(v, given) {
    if (given.has("data") || given.has("out") || !isTrainingContainer()) return undefined;
    const extra = [...given].filter((k) => k !== "quiet");
    if (extra.length > 0) {
      process.stderr.write(
        `esmkit train: in SageMaker container mode the settings come from ${sageMakerPaths().hyperparameters}; remove ${extra.map((k) => `--${k}`).join(", ")}\n`,
      );
      return 2;
    }
    return runContainer(sayer(v.quiet), v.quiet);
  },
  async run(v) {
    const say = sayer(v.quiet);
    const stop = stopOnSignals();
    const bar = progressLine("training", { quiet: v.quiet });
    const transfers = transferPrinter(v.quiet);
    try {
      const result = await fineTuneStaged({
        ...fineTuneSettings(v),
        data: v.data,
        out: v.out,
        model: v.model,
        signal: stop.signal,
        onMessage: say,
        onEvent: trainEventPrinter(say, bar),
        onTransfer: transfers,
      });
      if (result.interrupted) {
        say(
          `interrupted at step ${result.step}; checkpoint saved in ${v.out}/checkpoints (continue with --resume)`,
        );
        return stop.exitCode();
      }
      if (result.alreadyComplete) {
        say(`the run in ${v.out} was already complete at step ${result.step}: nothing trained`);
        if (!result.files.includes("model/")) return 0;
      }
      say(
        `wrote ${result.files.join(", ")} in ${v.out}${result.randomWeights ? " (RANDOM base weights)" : ""}`,
      );
      return 0;
    } finally {
      stop.dispose();
    }
  },
});
