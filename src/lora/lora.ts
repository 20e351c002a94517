/**
 * LoRA as PEFT does it, in one variant: `y = base(x) + B(A(dropout(x))) * alpha / r`
 * on the Linear layers whose dotted names match `targetModules`, with the base
 * weights frozen and the classification head trained fully (PEFT's SEQ_CLS
 * `modules_to_save`).
 *
 * Which layers get LoRA follows PEFT 0.21's `check_target_module_exists`, in its order:
 * a module named by `excludeModules` is skipped; so is one inside `modulesToSave` (PEFT
 * never adapts a module it trains and saves whole: `classifier.dense` and
 * `classifier.out_proj` for sequence classification); only then are the targets
 * matched. The masked-LM head some checkpoints carry is skipped too: PEFT's model is
 * EsmForSequenceClassification, which has none.
 *
 * A and B are kept transposed (`[in, r]`, `[r, out]`) so the side path is two plain
 * 2-D matmuls; adapter files use PEFT's `[r, in]` / `[out, r]` layout.
 */
import * as tf from "@tensorflow/tfjs-core";
import { AdapterError, ConfigError } from "../errors";
import { isLmHead, SEQ_CLS_MODULES_TO_SAVE } from "../model/architecture";
import { matMul2d } from "../model/fast-grad";
import { SeededRandom } from "../util/random";

/** What LoRA needs from a model's Linear layer (weights stored `[in, out]`). */
export interface AdaptableLinear {
  /** Hugging Face dotted module name, e.g. `esm.encoder.layer.0.attention.self.query`. */
  readonly name: string;
  /** `[in, out]` */
  readonly weight: tf.Variable;
  /** Added to the layer output when set. */
  adapter?: { apply(x2d: tf.Tensor2D): tf.Tensor2D };
}

export interface AdaptableModel {
  namedLinears(): Map<string, AdaptableLinear>;
  /** Every parameter by Hugging Face key, e.g. `classifier.dense.weight`. */
  namedVariables(): Map<string, tf.Variable>;
}

export interface LoraConfig {
  /** Rank r of the update (default 8). */
  rank: number;
  /** Scaling numerator: the update is multiplied by alpha / rank (default 16). */
  alpha: number;
  /** Dropout on the adapter input during training (default 0.05). */
  dropout: number;
  /** Module names (exact or `.suffix` match) or ONE regular expression matched against the full name. */
  targetModules: string[] | string;
  /** Only "none" is supported (biases stay frozen). */
  bias: "none";
  /**
   * Modules trained fully and saved with the adapter, never adapted. "classifier" and
   * "score" are always added, as PEFT's sequence-classification model does.
   */
  modulesToSave: string[];
  /** Modules never adapted, matched like `targetModules` (PEFT's `exclude_modules`); default none. */
  excludeModules?: string[] | string | null;
}

export const DEFAULT_LORA: LoraConfig = {
  rank: 8,
  alpha: 16,
  dropout: 0.05,
  targetModules: ["query", "key", "value"],
  bias: "none",
  modulesToSave: [...SEQ_CLS_MODULES_TO_SAVE],
};

export function resolveLoraConfig(partial: Partial<LoraConfig> = {}): LoraConfig {
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const c: LoraConfig = { ...DEFAULT_LORA, ...given };
  const bad = (field: string, value: unknown, accepted: string) =>
    new ConfigError(`Invalid LoRA ${field}: ${JSON.stringify(value)}; expected ${accepted}`, {
      field,
      value,
    });
  if (!Number.isInteger(c.rank) || c.rank < 1) throw bad("rank", c.rank, "an integer >= 1");
  if (!(Number.isFinite(c.alpha) && c.alpha > 0)) throw bad("alpha", c.alpha, "a number > 0");
  if (!(c.dropout >= 0 && c.dropout < 1)) throw bad("dropout", c.dropout, "a number in [0, 1)");
  if (c.bias !== "none") throw bad("bias", c.bias, '"none" (the only variant supported)');
  if (Array.isArray(c.targetModules) ? c.targetModules.length === 0 : c.targetModules === "") {
    throw bad("targetModules", c.targetModules, "at least one module name or a regular expression");
  }
  if (!Array.isArray(c.modulesToSave) || !c.modulesToSave.every((m) => typeof m === "string"))
    throw bad("modulesToSave", c.modulesToSave, "a list of module names");
  c.modulesToSave = [...new Set([...c.modulesToSave, ...SEQ_CLS_MODULES_TO_SAVE])];
  return c;
}

/** The names of a module's LoRA tensors, A `[r, in]` and B `[out, r]` (PEFT's, unprefixed). */
export function loraKeys(module: string): { a: string; b: string } {
  return { a: `${module}.lora_A.weight`, b: `${module}.lora_B.weight` };
}

/** PEFT's rule: a string is a full-match regex; a list matches exact names or `.suffix`. */
export function matchesTarget(name: string, targets: string[] | string): boolean {
  if (typeof targets === "string") return pattern(`^(?:${targets})$`, targets).test(name);
  return targets.some((t) => name === t || name.endsWith(`.${t}`));
}

function pattern(source: string, given: string): RegExp {
  try {
    return new RegExp(source);
  } catch (e) {
    throw new ConfigError(
      `Invalid LoRA module pattern ${JSON.stringify(given)}: ${(e as Error).message}; expected module names or one regular expression`,
      { pattern: given },
      { cause: e },
    );
  }
}

/**
 * PEFT's modules_to_save guard, `re.match(rf"(^|.*\.){m}($|\..*)", name)`: the module
 * is `m` or lies inside it (each `m` is a regular expression, as in PEFT).
 */
function insideSaved(name: string, modulesToSave: string[]): string | undefined {
  return modulesToSave.find((m) => pattern(`^(?:(^|.*\\.)${m}($|\\..*))`, m).test(name));
}

/** Why PEFT would put no LoRA on the module `name`, or undefined when it may. */
export function exclusionReason(
  name: string,
  config: Pick<LoraConfig, "modulesToSave" | "excludeModules">,
): string | undefined {
  const exclude = config.excludeModules;
  // PEFT tests `if config.exclude_modules`: an empty string or list excludes nothing.
  if (exclude && exclude.length > 0 && matchesTarget(name, exclude))
    return `named by exclude_modules ${JSON.stringify(exclude)}`;
  const saved = insideSaved(name, config.modulesToSave);
  if (saved !== undefined)
    return `inside modules_to_save "${saved}", which is trained fully and saved whole (PEFT puts no LoRA there)`;
  if (isLmHead(name))
    return "part of the masked-LM head, which PEFT's EsmForSequenceClassification does not have";
  return undefined;
}

/** Which Linear layers the targets name, split into those adapted and those PEFT excludes. */
export interface TargetReport {
  /** Layers that get LoRA, in model order. */
  matched: string[];
  /** Layers the targets name that get no LoRA, with the reason. */
  excluded: { name: string; reason: string }[];
}

export function targetReport(
  model: AdaptableModel,
  config: Pick<LoraConfig, "targetModules" | "modulesToSave" | "excludeModules">,
): TargetReport {
  const report: TargetReport = { matched: [], excluded: [] };
  for (const name of model.namedLinears().keys()) {
    if (!matchesTarget(name, config.targetModules)) continue;
    const reason = exclusionReason(name, config);
    if (reason === undefined) report.matched.push(name);
    else report.excluded.push({ name, reason });
  }
  return report;
}

/** The Linear layers a config would adapt, by name (for checking before training). */
export function matchedModules(
  model: AdaptableModel,
  targets: string[] | string,
  modulesToSave: string[] = DEFAULT_LORA.modulesToSave,
): string[] {
  return targetReport(model, { targetModules: targets, modulesToSave }).matched;
}

/**
 * The module of `key` that `modulesToSave` wraps (PEFT's `_set_trainable`: the first
 * module, outermost first, whose dotted name ends with an entry), or undefined.
 */
export function savedModuleOf(key: string, modulesToSave: string[]): string | undefined {
  const parts = key.split(".");
  for (let i = 1; i < parts.length; i++) {
    const module = parts.slice(0, i).join(".");
    if (modulesToSave.some((m) => module.endsWith(m))) return module;
  }
  return undefined;
}

class LoraAdapter {
  readonly aT: tf.Variable; // [in, r]
  readonly bT: tf.Variable; // [r, out]
  readonly scaling: number;
  merged = false;
  private original?: tf.Tensor;

  constructor(
    readonly target: AdaptableLinear,
    readonly config: LoraConfig,
    rng: SeededRandom,
    readonly isTraining: () => boolean,
    readonly dropoutSeed: () => number,
  ) {
    const [inF, outF] = target.weight.shape as [number, number];
    const r = config.rank;
    // kaiming_uniform(a=sqrt(5)) on A [r, in] gives U(-1/sqrt(in), 1/sqrt(in)); B starts at 0.
    const bound = 1 / Math.sqrt(inF);
    const a = new Float32Array(inF * r);
    for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound;
    // Unnamed: tfjs variable names are global, and one model may be adapted twice.
    this.aT = tf.variable(tf.tensor2d(a, [inF, r]), true);
    this.bT = tf.variable(tf.zeros([r, outF]), true);
    this.scaling = config.alpha / config.rank;
  }

  apply(x2d: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      let x: tf.Tensor2D = x2d;
      if (this.isTraining() && this.config.dropout > 0) {
        x = tf.dropout(x, this.config.dropout, undefined, this.dropoutSeed()) as tf.Tensor2D;
      }
      // [N, in] x [in, r] -> [N, r] x [r, out] -> [N, out]
      return tf.mul(
        matMul2d(matMul2d(x, this.aT as tf.Tensor2D), this.bT as tf.Tensor2D),
        this.scaling,
      ) as tf.Tensor2D;
    });
  }

  /** The dense update `scaling * (B @ A)^T`, `[in, out]` like the base weight. */
  delta(): tf.Tensor2D {
    return tf.tidy(() => tf.mul(tf.matMul(this.aT, this.bT), this.scaling) as tf.Tensor2D);
  }

  merge(): void {
    if (this.merged) return;
    this.original = tf.clone(this.target.weight);
    const d = this.delta();
    this.target.weight.assign(tf.tidy(() => tf.add(this.target.weight, d) as tf.Tensor2D));
    d.dispose();
    this.target.adapter = undefined;
    this.merged = true;
  }

  /** Restores the exact pre-merge weights (a saved copy, not a subtraction). */
  unmerge(): void {
    if (!this.merged || !this.original) return;
    this.target.weight.assign(this.original);
    this.original.dispose();
    this.original = undefined;
    this.target.adapter = this;
    this.merged = false;
  }

  dispose(): void {
    this.aT.dispose();
    this.bT.dispose();
    this.original?.dispose();
  }
}

export interface ParameterReport {
  trainable: number;
  total: number;
  /** trainable / total * 100 */
  percent: number;
}

/**
 * A model with LoRA adapters injected. Base weights are frozen (`trainable = false`);
 * the adapters and the `modulesToSave` variables are trainable.
 */
export class LoraModel {
  readonly adapters = new Map<string, LoraAdapter>();
  /** Layers the targets named that got no LoRA, and why (see `exclusionReason`). */
  readonly excluded: { name: string; reason: string }[];
  training = false;
  /** Seeds of the dropout masks; its state goes into training checkpoints. */
  readonly dropoutRng: SeededRandom;

  constructor(
    readonly model: AdaptableModel,
    readonly config: LoraConfig,
    seed = 42,
  ) {
    const rng = new SeededRandom(seed);
    this.dropoutRng = new SeededRandom(seed + 1);
    const linears = model.namedLinears();
    const report = targetReport(model, config);
    this.excluded = report.excluded;
    if (report.matched.length === 0) {
      const some = [...linears.keys()].slice(0, 6).join(", ");
      const why = report.excluded.length
        ? `; the modules they name are all excluded: ${report.excluded.map((e) => `${e.name} (${e.reason})`).join(", ")}`
        : "";
      throw new AdapterError(
        `No module matched the LoRA targets ${JSON.stringify(config.targetModules)}${why}; Linear layers are named like: ${some}, ...`,
        { targetModules: config.targetModules, excluded: report.excluded },
      );
    }
    for (const name of report.matched) {
      const linear = linears.get(name)!;
      const adapter = new LoraAdapter(
        linear,
        config,
        rng,
        () => this.training,
        () => this.dropoutRng.int(2 ** 31),
      );
      linear.adapter = adapter;
      this.adapters.set(name, adapter);
    }
    for (const [key, v] of model.namedVariables()) {
      (v as { trainable: boolean }).trainable = this.isSaved(key);
    }
  }

  /** Is this base-model key part of `modulesToSave` (trained fully, saved with the adapter)? */
  isSaved(key: string): boolean {
    return savedModuleOf(key, this.config.modulesToSave) !== undefined;
  }

  /** Trainable variables by name: adapter A/B (our layout) and the saved modules. */
  trainableVariables(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [name, a] of this.adapters) {
      if (a.merged) continue;
      out.set(loraKeys(name).a, a.aT);
      out.set(loraKeys(name).b, a.bT);
    }
    for (const [key, v] of this.model.namedVariables()) if (this.isSaved(key)) out.set(key, v);
    return out;
  }

  parameterReport(): ParameterReport {
    let trainable = 0;
    let total = 0;
    for (const [key, v] of this.model.namedVariables()) {
      total += v.size;
      if (this.isSaved(key)) trainable += v.size;
    }
    for (const a of this.adapters.values()) {
      const n = a.aT.size + a.bT.size;
      total += n;
      trainable += n;
    }
    return { trainable, total, percent: (100 * trainable) / total };
  }

  /** Fold every adapter into its base weight (faster inference, plain checkpoint). */
  merge(): void {
    for (const a of this.adapters.values()) a.merge();
  }

  /** Undo `merge()` exactly. */
  unmerge(): void {
    for (const a of this.adapters.values()) a.unmerge();
  }

  /** Remove the adapters (after merging, or to get the base model back). */
  dispose(): void {
    for (const a of this.adapters.values()) {
      if (a.target.adapter === a) a.target.adapter = undefined;
      a.dispose();
    }
    this.adapters.clear();
  }
}

/** Inject LoRA into a model (PEFT's `get_peft_model`). */
export function applyLora(
  model: AdaptableModel,
  config: Partial<LoraConfig> = {},
  seed = 42,
): LoraModel {
  return new LoraModel(model, resolveLoraConfig(config), seed);
}
