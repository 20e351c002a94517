/**
 * Which engine computes forward passes and gradients (src/engine/engine.ts): "onnx"
 * (onnxruntime's native CPU kernels, see engine.ts) or "tfjs" (the TensorFlow.js model
 * itself, on whatever backend is active). "auto" takes onnx when onnxruntime-node loads
 * and TensorFlow.js runs on wasm or cpu; with tfjs-node(-gpu) installed, TensorFlow.js
 * is native (and possibly on a GPU) and stays in charge. `createEngine` makes the one
 * chosen: the trainer and the predictor get it from here.
 */
import * as os from "node:os";
import {
  ENGINE_CHOICES,
  type EngineChoice,
  type EngineName,
  type EngineNeeds,
  type EsmEngine,
  requireCapabilities,
} from "../engine/engine";
import { TfjsEngine } from "../engine/tfjs-engine";
import { ConfigError } from "../errors";
import type { LoraModel } from "../lora/lora";
import type { Esm2Model } from "../model/esm2";
import { OnnxEsmEngine } from "./engine";
import { loadOrt, ortUnavailableReason } from "./runtime";

export function parseEngineChoice(value: string, origin: string): EngineChoice {
  if ((ENGINE_CHOICES as readonly string[]).includes(value)) return value as EngineChoice;
  throw new ConfigError(
    `Unknown engine "${value}" (${origin}); expected one of: ${ENGINE_CHOICES.join(", ")}`,
    { value },
  );
}

/** `ESMKIT_ENGINE` when set (checked), else undefined. */
export function engineFromEnv(): EngineChoice | undefined {
  const v = process.env.ESMKIT_ENGINE;
  return v ? parseEngineChoice(v, "ESMKIT_ENGINE") : undefined;
}

export interface EngineDecision {
  name: EngineName;
  /** One line saying why, for logs. */
  reason: string;
}

/** Picks the engine for `choice` given the active TensorFlow.js backend name. */
export function resolveEngine(
  choice: EngineChoice | undefined,
  backendName: string,
): EngineDecision {
  const c = choice ?? "auto";
  if (c === "tfjs") return { name: "tfjs", reason: "engine tfjs (asked for)" };
  const ort = loadOrt();
  if (c === "onnx") {
    if (!ort) {
      throw new ConfigError(
        `engine "onnx" needs onnxruntime-node, which did not load: ${ortUnavailableReason()}`,
        { engine: c },
      );
    }
    return { name: "onnx", reason: `engine onnx (onnxruntime-node ${ort.version}, asked for)` };
  }
  if (backendName !== "wasm" && backendName !== "cpu") {
    return {
      name: "tfjs",
      reason: `engine tfjs (auto: TensorFlow.js runs natively on the ${backendName} backend)`,
    };
  }
  if (!ort) {
    return {
      name: "tfjs",
      reason: `engine tfjs (auto: onnxruntime-node did not load: ${ortUnavailableReason()})`,
    };
  }
  return {
    name: "onnx",
    reason: `engine onnx (auto: onnxruntime-node ${ort.version}; TensorFlow.js is on ${backendName})`,
  };
}

/**
 * The engine `name` on `model` (its LoRA adapters, if any, take part): the onnx engine
 * with `threads` onnxruntime threads, or the tfjs engine. What the caller `needs` of it
 * (a task, an int8 base, ...) is checked first: an engine that lacks it is refused with
 * a ConfigError naming the engine that has it (ENGINE_CAPABILITIES).
 */
export function createEngine(
  name: EngineName,
  model: Esm2Model,
  options: { lora?: LoraModel; threads?: number; needs?: EngineNeeds } = {},
): EsmEngine {
  requireCapabilities(name, options.needs ?? {});
  return name === "onnx"
    ? new OnnxEsmEngine(model, { lora: options.lora, threads: options.threads })
    : new TfjsEngine(model);
}

/** Default onnxruntime threads: every core Node may use (as PyTorch's default). */
export function defaultThreads(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

export function checkThreads(threads: number, origin: string): number {
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new ConfigError(`Invalid threads ${threads} (${origin}); expected an integer 1..256`, {
      threads,
    });
  }
  return threads;
}
