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
  --resume                       continue the run in DIR from its latest checkpoint
  --overwrite                    replace the run DIR holds (default: refuse such a DIR)
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
      const loss =
        m.weightedLoss === undefined
          ? `loss ${m.unweightedLoss.toFixed(4)}`
          : `loss ${m.weightedLoss.toFixed(4)} (class-weighted; unweighted ${m.unweightedLoss.toFixed(4)})`;
      say(
        `\neval epoch ${e.epoch}: ${loss} accuracy ${m.accuracy.toFixed(4)} f1 ${m.f1.toFixed(4)} mcc ${m.mcc.toFixed(4)} auc ${m.rocAuc?.toFixed(4)}`,
      );
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
        overwrite: { type: "boolean" },
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
    const stop = stopOnSignals();
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
        overwrite: v.overwrite,
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
};
