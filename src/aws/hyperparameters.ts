/**
 * SageMaker hyperparameters <-> `fineTune` options. SageMaker hands the container every
 * value as a string (`"max_steps": "200"`); each key is checked like its flag, so a typo
 * fails the job at once, naming the key and the value, instead of training with a default
 * for hours. The keys are `esmkit train`'s flags in snake_case (kebab-case is accepted
 * too), derived from their one declaration in src/train/flags.ts: type, range, default,
 * doc and exclusive pairs. `sagemaker_*` keys, which the SageMaker Python SDK adds for
 * its own containers, are ignored.
 */
import { ConfigError } from "../errors";
import { fineTuneSettings, TRAIN_FLAGS, type TrainValues } from "../train/flags";
import type { FineTuneOptions } from "../train/run";
import { closest, defaultText, relationProblem, snakeCase } from "../util/flags";

/** What hyperparameters set: fineTune's options without the locations of data and output. */
export type HyperparameterOptions = Omit<FineTuneOptions, "data" | "out" | "model"> & {
  model?: string;
};

export interface Hyperparameter {
  /** The `esmkit train` flag it is, without the dashes. */
  flag: keyof TrainValues;
  /** What values are accepted, in words. */
  accepts: string;
  doc: string;
}

/** Every accepted hyperparameter: `esmkit train`'s flags, snake_case (the docs table comes from here). */
export const HYPERPARAMETERS: Readonly<Record<string, Hyperparameter>> = Object.fromEntries(
  Object.entries(TRAIN_FLAGS)
    .filter(([, f]) => f.hyperparameter !== false)
    .map(([name, f]) => {
      const d = defaultText(f);
      const doc = f.hyperparameter || (d === undefined ? f.help : `${f.help} (${d})`);
      return [snakeCase(name), { flag: name as keyof TrainValues, accepts: f.kind.accepts, doc }];
    }),
);

function suggest(key: string): string {
  const near = closest(key, Object.keys(HYPERPARAMETERS));
  return near ? ` (did you mean ${near}?)` : "";
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
  const values: Record<string, unknown> = {};
  const ignored: string[] = [];
  const seen = new Map<string, string>();
  const loraKeys: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (isIgnoredHyperparameter(key)) {
      ignored.push(key);
      continue;
    }
    const name = snakeCase(key);
    const hp = HYPERPARAMETERS[name];
    if (!hp) {
      throw new ConfigError(
        `Unknown hyperparameter "${key}" (value ${JSON.stringify(value)})${suggest(name)}; accepted: ${Object.keys(HYPERPARAMETERS).join(", ")}`,
        { key, value },
      );
    }
    if (seen.has(name)) {
      throw new ConfigError(
        `Hyperparameter ${name} is given twice (as "${seen.get(name)}" and "${key}")`,
        { key },
      );
    }
    seen.set(name, key);
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      throw new ConfigError(
        `Hyperparameter ${key}=${JSON.stringify(value)}: expected a string (SageMaker passes every value as a string)`,
        { key, value },
      );
    }
    const parsed = TRAIN_FLAGS[hp.flag].kind.parse(unquote(String(value)).trim());
    if ("expected" in parsed) {
      throw new ConfigError(
        `Hyperparameter ${key}=${JSON.stringify(String(value))} is invalid: expected ${hp.accepts}`,
        { key, value },
      );
    }
    values[hp.flag] = parsed.value;
    if (name.startsWith("lora_")) loraKeys.push(key);
  }
  if (values.lora === false && loraKeys.length > 0) {
    throw new ConfigError(`lora=false (full fine-tuning) conflicts with ${loraKeys.join(", ")}`, {
      keys: loraKeys,
    });
  }
  const clash = relationProblem(TRAIN_FLAGS, new Set(Object.keys(values)), snakeCase);
  if (clash) throw new ConfigError(`${clash[0]!.toUpperCase()}${clash.slice(1)}`, {});
  return {
    options: fineTuneSettings(values as Partial<TrainValues>) as HyperparameterOptions,
    ignored,
  };
}

/** The hyperparameter table as Markdown rows (key, expected value, meaning). */
export function hyperparameterTable(): string {
  return Object.entries(HYPERPARAMETERS)
    .map(([k, h]) => `| \`${k}\` | ${h.accepts} | ${h.doc.replace(/<\w+>/g, "`$&`")} |`)
    .join("\n");
}
