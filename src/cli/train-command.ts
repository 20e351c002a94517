import { fineTuneStaged } from "../aws/staged";
import {
  isTrainingContainer,
  runTrainingContainer,
  sageMakerPaths,
} from "../aws/training-contract";
import { fineTuneSettings, TRAIN_FLAGS } from "../train/flags";
import type { TrainEvent } from "../train/trainer";
import { defineCommand } from "./command";
import { type ProgressLine, progressLine, transferPrinter } from "./progress";

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
      const m = e.metrics;
      say(
        `\neval epoch ${e.epoch}: loss ${m.loss.toFixed(4)} accuracy ${m.accuracy.toFixed(4)} f1 ${m.f1.toFixed(4)} mcc ${m.mcc.toFixed(4)} auc ${m.rocAuc?.toFixed(4)}`,
      );
    }
    if (e.type === "end") bar.finish(`${e.step} steps`);
  };
}

/**
 * SageMaker container mode. SIGTERM (a stopped job, a spot interruption) stops after the
 * current step with a checkpoint in /opt/ml/checkpoints, which the next attempt resumes.
 */
async function runContainer(say: (m: string) => void, quiet: boolean | undefined) {
  const controller = new AbortController();
  const stop = (signal: string) => () => {
    if (controller.signal.aborted) process.exit(signal === "SIGTERM" ? 143 : 130);
    say(`\n${signal}: finishing this step and saving a checkpoint`);
    controller.abort();
  };
  const onTerm = stop("SIGTERM");
  const onInt = stop("SIGINT");
  process.on("SIGTERM", onTerm);
  process.on("SIGINT", onInt);
  try {
    const result = await runTrainingContainer({
      onMessage: say,
      onEvent: trainEventPrinter(say, progressLine("training", { quiet })),
      signal: controller.signal,
    });
    if (result.failure) process.stderr.write(`esmkit train: ${result.failure}\n`);
    else if (result.files) say(`wrote ${result.files.join(", ")} in ${sageMakerPaths().model}`);
    return result.exitCode;
  } finally {
    process.off("SIGTERM", onTerm);
    process.off("SIGINT", onInt);
  }
}

export const trainCommand = defineCommand({
  name: "train",
  summary: "fine-tune ESM-2 (LoRA, weighted loss, accumulation, checkpointing)",
  usage: ["esmkit train               (inside a SageMaker training container)"],
  description: `
Fine-tune ESM-2 for sequence classification on the output of "esmkit prepare".
Writes DIR/model (merged, Hugging Face format), DIR/adapter (PEFT), metrics.json,
history.jsonl and checkpoints/. Ctrl-C saves a checkpoint; --resume continues.
DIR may be s3://bucket/prefix (downloaded / uploaded through a local copy).

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
    const controller = new AbortController();
    const onSigint = () => {
      if (controller.signal.aborted) process.exit(130);
      process.stderr.write(
        "\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit now)\n",
      );
      controller.abort();
    };
    process.on("SIGINT", onSigint);
    const bar = progressLine("training", { quiet: v.quiet });
    const transfers = transferPrinter(v.quiet);
    try {
      const result = await fineTuneStaged({
        ...fineTuneSettings(v),
        data: v.data,
        out: v.out,
        model: v.model,
        signal: controller.signal,
        onMessage: say,
        onEvent: trainEventPrinter(say, bar),
        onTransfer: transfers,
      });
      if (result.interrupted) {
        say(
          `interrupted at step ${result.step}; checkpoint saved in ${v.out}/checkpoints (continue with --resume)`,
        );
        return 130;
      }
      say(
        `wrote ${result.files.join(", ")} in ${v.out}${result.randomWeights ? " (RANDOM base weights)" : ""}`,
      );
      return 0;
    } finally {
      process.off("SIGINT", onSigint);
    }
  },
});
