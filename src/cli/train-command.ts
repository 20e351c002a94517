import { parseArgs } from "node:util";
import { fineTuneStaged } from "../aws/staged";
import {
  isTrainingContainer,
  runTrainingContainer,
  sageMakerPaths,
} from "../aws/training-contract";
import type { BackendChoice } from "../backend";
import { parseEngineChoice } from "../onnx/select";
import type { TrainConfig, TrainEvent } from "../train/trainer";
import type { Command } from "./main";
import { numberFlag } from "./main";
import { type ProgressLine, progressLine, transferPrinter } from "./progress";

const USAGE = `Usage: esmkit train --data DIR --out DIR [--model ID|DIR] [options]
       esmkit train               (inside a SageMaker training container)

Fine-tune ESM-2 for sequence classification on the output of "esmkit prepare".
Writes DIR/model (merged, Hugging Face format), DIR/adapter (PEFT), metrics.json,
history.jsonl and checkpoints/. Ctrl-C saves a checkpoint; --resume continues.
DIR may be s3://bucket/prefix (downloaded / uploaded through a local copy).

Without --data and --out, when /opt/ml/input/config/hyperparameters.json exists (root
overridable with ESMKIT_SM_ROOT), it runs the SageMaker training contract: settings
from the hyperparameters (snake_case names of the flags below, e.g. max_steps), data
from the train channel, resume from /opt/ml/checkpoints, the model to /opt/ml/model,
and on failure the reason to /opt/ml/output/failure (see docs/aws.md).

  --data DIR|S3                  prepared data (train.parquet, test.parquet)   required
  --out DIR|S3                   output directory                              required
  --model ID|DIR|S3              base model                 facebook/esm2_t6_8M_UR50D
  --random-if-unavailable        random weights of the same size when the Hub is unreachable
  --no-lora                      full fine-tuning instead of LoRA
  --lora-rank N                  8
  --lora-alpha N                 16
  --lora-dropout F               0.05
  --lora-targets A,B,C           module names (exact or suffix)   query,key,value
  --learning-rate F              1e-4
  --weight-decay F               0.01
  --batch-size N                 8
  --epochs N                     1
  --max-steps N                  stop after N optimizer steps
  --max-length N                 tokens per sequence, <cls>/<eos> included    512
  --gradient-accumulation-steps N                                             1
  --gradient-checkpointing       recompute each layer in the backward pass (default on for the tfjs engine on wasm/cpu)
  --no-gradient-checkpointing    keep every activation (faster where memory allows)
  --warmup-steps N | --warmup-ratio F                                         0
  --max-grad-norm F              1.0
  --class-weights W              balanced | none | w0,w1,...                 balanced
  --seed N                       42
  --save-steps N                 checkpoint every N steps (0: epoch ends)    0
  --save-total-limit N           checkpoints kept                            2
  --eval-batch-size N            16
  --limit-train N, --limit-eval N  use only the first N examples
  --backend NAME                 auto | tensorflow-gpu | tensorflow | wasm | cpu
  --engine NAME                  auto | onnx | tfjs (auto: onnxruntime unless TensorFlow.js is native)
  --threads N                    onnxruntime threads (onnx engine)           all cores
  --workers N                    tfjs engine: threads for the accumulation micro-batches (LoRA)   1
  --resume                       continue from the latest checkpoint in DIR
  --quiet
`;

export function classWeightsFlag(
  value: string | undefined,
): TrainConfig["classWeights"] | undefined {
  if (value === undefined) return undefined;
  if (value === "balanced" || value === "none") return value;
  const parts = value.split(",").map((p) => Number(p));
  if (parts.length < 2 || parts.some((p) => !Number.isFinite(p) || p < 0)) {
    const err = new Error(
      `--class-weights expects balanced, none or numbers like 0.7,1.7; got "${value}"`,
    );
    (err as NodeJS.ErrnoException).code = "ERR_PARSE_ARGS_INVALID_OPTION_VALUE";
    throw err;
  }
  return parts;
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

export const trainCommand: Command = {
  summary: "fine-tune ESM-2 (LoRA, weighted loss, accumulation, checkpointing)",
  usage: USAGE,
  async run(argv) {
    const { values: v } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        data: { type: "string" },
        out: { type: "string" },
        model: { type: "string" },
        "random-if-unavailable": { type: "boolean" },
        "no-lora": { type: "boolean" },
        "lora-rank": { type: "string" },
        "lora-alpha": { type: "string" },
        "lora-dropout": { type: "string" },
        "lora-targets": { type: "string" },
        "learning-rate": { type: "string" },
        "weight-decay": { type: "string" },
        "batch-size": { type: "string" },
        epochs: { type: "string" },
        "max-steps": { type: "string" },
        "max-length": { type: "string" },
        "gradient-accumulation-steps": { type: "string" },
        "gradient-checkpointing": { type: "boolean" },
        "no-gradient-checkpointing": { type: "boolean" },
        "warmup-steps": { type: "string" },
        "warmup-ratio": { type: "string" },
        "max-grad-norm": { type: "string" },
        "class-weights": { type: "string" },
        seed: { type: "string" },
        "save-steps": { type: "string" },
        "save-total-limit": { type: "string" },
        "eval-batch-size": { type: "string" },
        "limit-train": { type: "string" },
        "limit-eval": { type: "string" },
        backend: { type: "string" },
        workers: { type: "string" },
        engine: { type: "string" },
        threads: { type: "string" },
        resume: { type: "boolean" },
        quiet: { type: "boolean" },
      },
    });
    const say = (m: string) => {
      if (!v.quiet || m.includes("RANDOM WEIGHTS")) process.stderr.write(`${m}\n`);
    };
    if (!v.data && !v.out && isTrainingContainer()) {
      const extra = Object.keys(v).filter((k) => k !== "quiet");
      if (extra.length > 0) {
        process.stderr.write(
          `esmkit train: in SageMaker container mode the settings come from ${sageMakerPaths().hyperparameters}; remove ${extra.map((k) => `--${k}`).join(", ")}\n`,
        );
        return 2;
      }
      return runContainer(say, v.quiet);
    }
    if (!v.data || !v.out) {
      process.stderr.write(`esmkit train: --data and --out are required\n\n${USAGE}`);
      return 2;
    }
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
        data: v.data,
        out: v.out,
        model: v.model ?? "facebook/esm2_t6_8M_UR50D",
        randomIfUnavailable: v["random-if-unavailable"],
        lora: v["no-lora"]
          ? false
          : {
              rank: numberFlag("lora-rank", v["lora-rank"]),
              alpha: numberFlag("lora-alpha", v["lora-alpha"], "float"),
              dropout: numberFlag("lora-dropout", v["lora-dropout"], "float"),
              targetModules: v["lora-targets"]?.split(",").map((s) => s.trim()),
            },
        learningRate: numberFlag("learning-rate", v["learning-rate"], "float"),
        weightDecay: numberFlag("weight-decay", v["weight-decay"], "float"),
        batchSize: numberFlag("batch-size", v["batch-size"]),
        epochs: numberFlag("epochs", v.epochs),
        maxSteps: numberFlag("max-steps", v["max-steps"]),
        maxLength: numberFlag("max-length", v["max-length"]),
        gradientAccumulationSteps: numberFlag(
          "gradient-accumulation-steps",
          v["gradient-accumulation-steps"],
        ),
        gradientCheckpointing: v["no-gradient-checkpointing"] ? false : v["gradient-checkpointing"],
        warmupSteps: numberFlag("warmup-steps", v["warmup-steps"]),
        warmupRatio: numberFlag("warmup-ratio", v["warmup-ratio"], "float"),
        maxGradNorm: numberFlag("max-grad-norm", v["max-grad-norm"], "float"),
        classWeights: classWeightsFlag(v["class-weights"]),
        seed: numberFlag("seed", v.seed),
        saveSteps: numberFlag("save-steps", v["save-steps"]),
        saveTotalLimit: numberFlag("save-total-limit", v["save-total-limit"]),
        evalBatchSize: numberFlag("eval-batch-size", v["eval-batch-size"]),
        limitTrain: numberFlag("limit-train", v["limit-train"]),
        limitEval: numberFlag("limit-eval", v["limit-eval"]),
        backend: v.backend as BackendChoice | undefined,
        workers: numberFlag("workers", v.workers),
        engine: v.engine === undefined ? undefined : parseEngineChoice(v.engine, "--engine"),
        threads: numberFlag("threads", v.threads),
        resume: v.resume,
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
};
