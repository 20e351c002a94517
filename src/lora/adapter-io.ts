/**
 * PEFT adapter files: `adapter_config.json` + `adapter_model.safetensors`, with PEFT's
 * key names (`base_model.model.<module>.lora_A.weight` `[r, in]`, `lora_B.weight`
 * `[out, r]`, and the fully trained `modules_to_save` under their own names), so an
 * adapter saved here loads in `PeftModel.from_pretrained` and one saved by Python
 * loads here.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { AdapterError } from "../errors";
import type { Esm2Model } from "../model/esm2";
import { readSafetensors, type TensorToWrite, writeSafetensors } from "../model/safetensors";
import { type LoraConfig, LoraModel, loraKeys, resolveLoraConfig, savedModuleOf } from "./lora";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";
const PREFIX = "base_model.model.";

/** The adapter_config.json PEFT writes for a LoRA SEQ_CLS adapter. */
export function peftConfigJson(
  config: LoraConfig,
  baseModel: string | null,
): Record<string, unknown> {
  return {
    peft_type: "LORA",
    task_type: "SEQ_CLS",
    base_model_name_or_path: baseModel,
    r: config.rank,
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    target_modules: config.targetModules,
    bias: config.bias,
    modules_to_save: config.modulesToSave,
    exclude_modules: config.excludeModules ?? null,
    fan_in_fan_out: false,
    init_lora_weights: true,
    inference_mode: true,
    use_dora: false,
    use_rslora: false,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

/** Read and check adapter_config.json, refusing what this LoRA variant cannot run. */
export function readAdapterConfig(dir: string): { config: LoraConfig; baseModel: string | null } {
  const file = path.join(dir, ADAPTER_CONFIG);
  if (!existsSync(file)) {
    throw new AdapterError(`No ${ADAPTER_CONFIG} in ${dir}: not a PEFT adapter directory`, { dir });
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new AdapterError(
      `${file} is not valid JSON: ${(e as Error).message}`,
      { file },
      { cause: e },
    );
  }
  const refuse = (field: string, accepted: string) =>
    new AdapterError(
      `${file}: ${field} = ${JSON.stringify(raw[field])} is not supported; expected ${accepted}`,
      { file, field, value: raw[field] },
    );
  if (raw.peft_type !== "LORA") throw refuse("peft_type", '"LORA"');
  if (raw.use_dora === true) throw refuse("use_dora", "false");
  if (raw.use_rslora === true) throw refuse("use_rslora", "false");
  if (raw.fan_in_fan_out === true) throw refuse("fan_in_fan_out", "false");
  if ((raw.bias ?? "none") !== "none") throw refuse("bias", '"none"');
  for (const f of ["rank_pattern", "alpha_pattern"]) {
    const v = raw[f];
    if (v && typeof v === "object" && Object.keys(v).length > 0)
      throw refuse(f, "{} (one rank and alpha for all)");
  }
  if (raw.layers_to_transform != null) throw refuse("layers_to_transform", "null");
  const targets = raw.target_modules;
  if (
    !(
      typeof targets === "string" ||
      (Array.isArray(targets) && targets.every((t) => typeof t === "string"))
    )
  ) {
    throw refuse("target_modules", "a list of module names or a regular expression");
  }
  const modules = raw.modules_to_save;
  if (!(modules == null || (Array.isArray(modules) && modules.every((m) => typeof m === "string"))))
    throw refuse("modules_to_save", "a list of module names or null");
  const exclude = raw.exclude_modules;
  if (
    !(
      exclude == null ||
      typeof exclude === "string" ||
      (Array.isArray(exclude) && exclude.every((t) => typeof t === "string"))
    )
  )
    throw refuse("exclude_modules", "a list of module names, a regular expression or null");
  const config = resolveLoraConfig({
    rank: raw.r as number,
    alpha: raw.lora_alpha as number,
    dropout: (raw.lora_dropout as number) ?? 0,
    targetModules: targets as string[] | string,
    bias: "none",
    modulesToSave: (modules as string[] | null) ?? [], // + classifier, score (SEQ_CLS)
    excludeModules: exclude as string[] | string | null,
  });
  const base = typeof raw.base_model_name_or_path === "string" ? raw.base_model_name_or_path : null;
  return { config, baseModel: base };
}

/** Base-model keys of the modules saved with the adapter, and their HF-layout values. */
function savedModuleTensors(lora: LoraModel, model: Esm2Model): Map<string, TensorToWrite> {
  const out = new Map<string, TensorToWrite>();
  const vars = model.namedVariables();
  for (const spec of model.parameterSpecs()) {
    if (!lora.isSaved(spec.key)) continue;
    const v = vars.get(spec.key)!;
    out.set(spec.key, {
      shape: spec.shape,
      data: () => tf.tidy(() => (spec.linear ? tf.transpose(v) : v).dataSync() as Float32Array),
    });
  }
  return out;
}

/** Write the adapter in PEFT's format; returns the file names. */
export function saveAdapter(
  lora: LoraModel,
  model: Esm2Model,
  dir: string,
  options: { baseModel?: string | null } = {},
): string[] {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, a] of lora.adapters) {
    if (a.merged) {
      throw new AdapterError(
        `Adapter ${name} is merged into the base weights; unmerge before saving the adapter`,
        {
          name,
        },
      );
    }
    const [inF, r] = a.aT.shape as [number, number];
    const outF = a.bT.shape[1] as number;
    tensors.set(`${PREFIX}${loraKeys(name).a}`, {
      shape: [r, inF],
      data: () => tf.tidy(() => tf.transpose(a.aT).dataSync() as Float32Array),
    });
    tensors.set(`${PREFIX}${loraKeys(name).b}`, {
      shape: [outF, r],
      data: () => tf.tidy(() => tf.transpose(a.bT).dataSync() as Float32Array),
    });
  }
  for (const [key, t] of savedModuleTensors(lora, model)) tensors.set(`${PREFIX}${key}`, t);
  const sorted = new Map([...tensors].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), sorted, { format: "pt" });
  const json = peftConfigJson(lora.config, options.baseModel ?? model.nameOrPath ?? null);
  writeFileSync(path.join(dir, ADAPTER_CONFIG), `${JSON.stringify(json, null, 2)}\n`);
  return [ADAPTER_CONFIG, ADAPTER_WEIGHTS];
}

/**
 * Load a PEFT LoRA adapter onto a model: injects adapters per the saved config and
 * sets A, B and the saved modules from the file. Every key must be used and every
 * adapter filled, else an AdapterError lists what is missing or unexpected.
 */
export function loadAdapter(model: Esm2Model, dir: string): LoraModel {
  const { config } = readAdapterConfig(dir);
  const { tensors } = readSafetensors(path.join(dir, ADAPTER_WEIGHTS));
  const lora = new LoraModel(model, config);
  const used = new Set<string>();
  const missing: string[] = [];
  const badShape: string[] = [];
  // Checked first, applied only when everything fits: a failed load changes nothing.
  const pending: (() => void)[] = [];
  const take = (
    key: string,
    expected: number[],
    set: (t: tf.Tensor) => void,
    transpose: boolean,
  ) => {
    const t = tensors.get(key);
    if (!t) {
      missing.push(key);
      return;
    }
    used.add(key);
    if (t.shape.join(",") !== expected.join(",")) {
      badShape.push(`${key}: file [${t.shape}] vs model [${expected}]`);
      return;
    }
    pending.push(() => {
      const value = tf.tidy(() => {
        const x = tf.tensor(t.data, t.shape, "float32");
        return transpose ? tf.transpose(x) : x;
      });
      set(value);
      value.dispose();
    });
  };
  for (const [name, a] of lora.adapters) {
    const [inF, r] = a.aT.shape as [number, number];
    const outF = a.bT.shape[1] as number;
    const keys = loraKeys(name);
    take(`${PREFIX}${keys.a}`, [r, inF], (v) => a.aT.assign(v as tf.Tensor2D), true);
    take(`${PREFIX}${keys.b}`, [outF, r], (v) => a.bT.assign(v as tf.Tensor2D), true);
  }
  const vars = model.namedVariables();
  for (const spec of model.parameterSpecs()) {
    const mod = savedModuleOf(spec.key, lora.config.modulesToSave);
    if (mod === undefined) continue;
    // PEFT versions differ: plain key or `.modules_to_save.default.` after the module.
    const plain = `${PREFIX}${spec.key}`;
    const wrapped = `${PREFIX}${mod}.modules_to_save.default.${spec.key.slice(mod.length + 1)}`;
    const key = tensors.has(plain) || !tensors.has(wrapped) ? plain : wrapped;
    take(key, spec.shape, (v) => vars.get(spec.key)!.assign(v), spec.linear);
  }
  const unexpected = [...tensors.keys()].filter((k) => !used.has(k));
  if (missing.length > 0 || unexpected.length > 0 || badShape.length > 0) {
    lora.dispose();
    const parts = [
      missing.length ? `missing keys: ${missing.join(", ")}` : "",
      unexpected.length ? `unexpected keys: ${unexpected.join(", ")}` : "",
      badShape.length ? `shape mismatches: ${badShape.join("; ")}` : "",
    ].filter(Boolean);
    throw new AdapterError(`Adapter ${dir} does not fit the model (${parts.join("; ")})`, {
      dir,
      missing,
      unexpected,
      badShape,
    });
  }
  for (const apply of pending) apply();
  return lora;
}
