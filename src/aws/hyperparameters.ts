/**
 * SageMaker hyperparameters <-> `fineTune` options. SageMaker hands the container every
 * value as a string (`"max_steps": "200"`); each key here has one parser that checks the
 * value, so a typo fails the job at once, naming the key and the value, instead of
 * training with a default for hours. Keys are snake_case (kebab-case is accepted too),
 * named after `esmkit train`'s flags. `sagemaker_*` keys, which the SageMaker Python SDK
 * adds for its own containers, are ignored.
 */
import { BACKEND_NAMES, type BackendChoice } from "../backend";
import { ConfigError } from "../errors";
import type { LoraConfig } from "../lora/lora";
import { ENGINE_CHOICES, type EngineChoice } from "../onnx/select";
import type { FineTuneOptions } from "../train/run";

/** What hyperparameters set: fineTune's options without the locations of data and output. */
export type HyperparameterOptions = Omit<FineTuneOptions, "data" | "out" | "model"> & {
  model?: string;
};

type Kind =
  | { type: "int"; min: number }
  | { type: "float"; min: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean }
  | { type: "bool" }
  | { type: "string" }
  | { type: "list" }
  | { type: "enum"; values: readonly string[] }
  | { type: "class-weights" };

interface Spec {
  kind: Kind;
  doc: string;
  apply(o: HyperparameterOptions, lora: Partial<LoraConfig>, v: unknown): void;
}

const int = (min: number): Kind => ({ type: "int", min });
const set =
  <K extends keyof HyperparameterOptions>(k: K) =>
  (o: HyperparameterOptions, _l: Partial<LoraConfig>, v: unknown) => {
    o[k] = v as HyperparameterOptions[K];
  };
const setLora =
  <K extends keyof LoraConfig>(k: K) =>
  (_o: HyperparameterOptions, l: Partial<LoraConfig>, v: unknown) => {
    l[k] = v as LoraConfig[K];
  };

/** Every accepted hyperparameter, its type and meaning (the docs table comes from here). */
export const HYPERPARAMETERS: Readonly<Record<string, Spec>> = {
  model: {
    kind: { type: "string" },
    doc: "base model: Hub id or a path in the container (default: the `model` channel if given, else facebook/esm2_t6_8M_UR50D)",
    apply: set("model"),
  },
  random_if_unavailable: {
    kind: { type: "bool" },
    doc: "random weights of the same size when the Hub is unreachable",
    apply: set("randomIfUnavailable"),
  },
  lora: {
    kind: { type: "bool" },
    doc: "LoRA (true, default) or full fine-tuning (false)",
    apply: (o, _l, v) => {
      if (v === false) o.lora = false;
    },
  },
  lora_rank: { kind: int(1), doc: "LoRA rank r (8)", apply: setLora("rank") },
  lora_alpha: {
    kind: { type: "float", min: 0, minExclusive: true },
    doc: "LoRA alpha (16)",
    apply: setLora("alpha"),
  },
  lora_dropout: {
    kind: { type: "float", min: 0, max: 1, maxExclusive: true },
    doc: "LoRA dropout (0.05)",
    apply: setLora("dropout"),
  },
  lora_targets: {
    kind: { type: "list" },
    doc: "comma-separated module names (query,key,value)",
    apply: setLora("targetModules"),
  },
  learning_rate: {
    kind: { type: "float", min: 0, minExclusive: true },
    doc: "peak learning rate (1e-4)",
    apply: set("learningRate"),
  },
  weight_decay: {
    kind: { type: "float", min: 0 },
    doc: "AdamW weight decay (0.01)",
    apply: set("weightDecay"),
  },
  batch_size: { kind: int(1), doc: "micro-batch size (8)", apply: set("batchSize") },
  epochs: { kind: int(1), doc: "epochs (1)", apply: set("epochs") },
  max_steps: { kind: int(1), doc: "stop after N optimizer steps", apply: set("maxSteps") },
  max_length: {
    kind: int(3),
    doc: "tokens per sequence, <cls>/<eos> included (512)",
    apply: set("maxLength"),
  },
  gradient_accumulation_steps: {
    kind: int(1),
    doc: "micro-batches per optimizer step (1)",
    apply: set("gradientAccumulationSteps"),
  },
  gradient_checkpointing: {
    kind: { type: "bool" },
    doc: "recompute each layer in the backward pass (false)",
    apply: set("gradientCheckpointing"),
  },
  warmup_steps: { kind: int(0), doc: "linear warm-up steps (0)", apply: set("warmupSteps") },
  warmup_ratio: {
    kind: { type: "float", min: 0, max: 1 },
    doc: "warm-up as a fraction of the steps",
    apply: set("warmupRatio"),
  },
  max_grad_norm: {
    kind: { type: "float", min: 0, minExclusive: true },
    doc: "gradient clipping norm (1.0)",
    apply: set("maxGradNorm"),
  },
  class_weights: {
    kind: { type: "class-weights" },
    doc: "balanced (default), none, or w0,w1,...",
    apply: set("classWeights"),
  },
  seed: { kind: int(0), doc: "seed (42)", apply: set("seed") },
  save_steps: {
    kind: int(0),
    doc: "checkpoint every N steps into /opt/ml/checkpoints (0: epoch ends)",
    apply: set("saveSteps"),
  },
  save_total_limit: { kind: int(1), doc: "checkpoints kept (2)", apply: set("saveTotalLimit") },
  eval_batch_size: { kind: int(1), doc: "evaluation batch size (16)", apply: set("evalBatchSize") },
  limit_train: { kind: int(1), doc: "use the first N training examples", apply: set("limitTrain") },
  limit_eval: { kind: int(1), doc: "use the first N evaluation examples", apply: set("limitEval") },
  backend: {
    kind: { type: "enum", values: ["auto", ...BACKEND_NAMES] },
    doc: "tensorflow-gpu, tensorflow, wasm, cpu or auto (default)",
    apply: (o, _l, v) => {
      o.backend = v as BackendChoice;
    },
  },
  engine: {
    kind: { type: "enum", values: ENGINE_CHOICES },
    doc: "onnx, tfjs or auto (default: onnxruntime unless TensorFlow.js is native)",
    apply: (o, _l, v) => {
      o.engine = v as EngineChoice;
    },
  },
  threads: { kind: int(1), doc: "onnxruntime threads (all cores)", apply: set("threads") },
  overwrite: {
    kind: { type: "bool" },
    doc: "replace checkpoints of another run found in /opt/ml/checkpoints instead of failing the job (false); this run's own checkpoints are always resumed",
    apply: set("overwrite"),
  },
};

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

function suggest(key: string): string {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of Object.keys(HYPERPARAMETERS)) {
    const dist = editDistance(key, k);
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  return best && bestD <= Math.max(2, Math.floor(key.length / 4)) ? ` (did you mean ${best}?)` : "";
}

function describe(kind: Kind): string {
  switch (kind.type) {
    case "int":
      return `an integer >= ${kind.min}`;
    case "float": {
      const lo = `${kind.minExclusive ? ">" : ">="} ${kind.min}`;
      const hi = kind.max === undefined ? "" : ` and ${kind.maxExclusive ? "<" : "<="} ${kind.max}`;
      return `a number ${lo}${hi}`;
    }
    case "bool":
      return "true or false";
    case "string":
      return "a non-empty string";
    case "list":
      return "a comma-separated list of names";
    case "enum":
      return `one of ${kind.values.join(", ")}`;
    case "class-weights":
      return "balanced, none or numbers like 0.7,1.7";
  }
}

/** SageMaker's Python SDK JSON-encodes values for framework estimators ("\"abc\""). */
function unquote(s: string): string {
  if (s.length >= 2 && s.startsWith('"') && s.endsWith('"')) {
    try {
      const v = JSON.parse(s);
      if (typeof v === "string") return v;
    } catch {
      // not JSON: keep as is
    }
  }
  return s;
}

function parseValue(kind: Kind, text: string): unknown {
  const t = text.trim();
  const num = () => (t === "" ? Number.NaN : Number(t));
  switch (kind.type) {
    case "int": {
      const n = num();
      return Number.isInteger(n) && n >= kind.min ? n : undefined;
    }
    case "float": {
      const n = num();
      if (!Number.isFinite(n)) return undefined;
      if (kind.minExclusive ? n <= kind.min : n < kind.min) return undefined;
      if (kind.max !== undefined && (kind.maxExclusive ? n >= kind.max : n > kind.max))
        return undefined;
      return n;
    }
    case "bool": {
      const l = t.toLowerCase();
      if (["true", "1", "yes"].includes(l)) return true;
      if (["false", "0", "no"].includes(l)) return false;
      return undefined;
    }
    case "string":
      return t === "" ? undefined : t;
    case "list": {
      const parts = t.split(",").map((p) => p.trim());
      return parts.length > 0 && parts.every((p) => /^[\w.]+$/.test(p)) ? parts : undefined;
    }
    case "enum":
      return kind.values.includes(t) ? t : undefined;
    case "class-weights": {
      if (t === "balanced" || t === "none") return t;
      const ws = t.split(",").map((p) => (p.trim() === "" ? Number.NaN : Number(p)));
      return ws.length >= 2 && ws.every((w) => Number.isFinite(w) && w >= 0) ? ws : undefined;
    }
  }
}

export function isIgnoredHyperparameter(key: string): boolean {
  return key.startsWith("sagemaker_");
}

/**
 * Check raw hyperparameters and return them as SageMaker sends them: snake_case keys,
 * string values. For `createTrainingJob`, so a bad value fails before a job is paid for.
 */
export function normaliseHyperparameters(
  raw: Readonly<Record<string, unknown>>,
): Record<string, string> {
  parseHyperparameters(raw);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    out[isIgnoredHyperparameter(k) ? k : k.replace(/-/g, "_")] = String(v);
  }
  return out;
}

/**
 * Hyperparameters (strings, as in /opt/ml/input/config/hyperparameters.json) -> options.
 * Unknown keys and malformed values throw a ConfigError naming the key and the value.
 */
export function parseHyperparameters(raw: Readonly<Record<string, unknown>>): {
  options: HyperparameterOptions;
  ignored: string[];
} {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(
      `Hyperparameters must be a JSON object of strings, got ${Array.isArray(raw) ? "an array" : JSON.stringify(raw)}`,
      {},
    );
  }
  const options: HyperparameterOptions = {};
  const lora: Partial<LoraConfig> = {};
  const ignored: string[] = [];
  const seen = new Map<string, string>();
  const loraKeys: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (isIgnoredHyperparameter(key)) {
      ignored.push(key);
      continue;
    }
    const name = key.replace(/-/g, "_");
    const spec = HYPERPARAMETERS[name];
    if (!spec) {
      throw new ConfigError(
        `Unknown hyperparameter "${key}" (value ${JSON.stringify(value)})${suggest(name)}; accepted: ${Object.keys(HYPERPARAMETERS).join(", ")}`,
        { key, value },
      );
    }
    if (seen.has(name)) {
      throw new ConfigError(
        `Hyperparameter ${name} is given twice (as "${seen.get(name)}" and "${key}")`,
        {
          key,
        },
      );
    }
    seen.set(name, key);
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      throw new ConfigError(
        `Hyperparameter ${key}=${JSON.stringify(value)}: expected a string (SageMaker passes every value as a string)`,
        { key, value },
      );
    }
    const parsed = parseValue(spec.kind, unquote(String(value)));
    if (parsed === undefined) {
      throw new ConfigError(
        `Hyperparameter ${key}=${JSON.stringify(String(value))} is invalid: expected ${describe(spec.kind)}`,
        { key, value },
      );
    }
    spec.apply(options, lora, parsed);
    if (name.startsWith("lora_")) loraKeys.push(key);
  }
  if (options.lora === false && loraKeys.length > 0) {
    throw new ConfigError(`lora=false (full fine-tuning) conflicts with ${loraKeys.join(", ")}`, {
      keys: loraKeys,
    });
  }
  if (options.lora !== false && Object.keys(lora).length > 0) options.lora = lora;
  if (options.warmupSteps !== undefined && options.warmupRatio !== undefined) {
    throw new ConfigError("Give warmup_steps or warmup_ratio, not both", {});
  }
  return { options, ignored };
}

/** The hyperparameter table as Markdown rows (key, expected value, meaning). */
export function hyperparameterTable(): string {
  return Object.entries(HYPERPARAMETERS)
    .map(([k, s]) => `| \`${k}\` | ${describe(s.kind)} | ${s.doc} |`)
    .join("\n");
}
