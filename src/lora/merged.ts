/**
 * A PEFT adapter directory used as a model: the base it names, loaded with the adapter
 * merged into its weights. One definition for everything that accepts "a model directory
 * or an adapter directory" (the predictor, the embedder, the export).
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../errors";
import type { Esm2Model } from "../model/esm2";
import { fromPretrained } from "../model/pretrained";
import { ADAPTER_CONFIG, loadAdapter, readAdapterConfig } from "./adapter-io";

/** Whether `dir` holds a PEFT adapter alone (adapter_config.json and no config.json). */
export function isAdapterDir(dir: string): boolean {
  return existsSync(path.join(dir, ADAPTER_CONFIG)) && !existsSync(path.join(dir, "config.json"));
}

/**
 * The base model of the adapter in `dir`: `base` when given, else its
 * `base_model_name_or_path`. `howToPass` ends the error when there is neither.
 */
export function adapterBase(dir: string, base?: string, howToPass = "pass the base model"): string {
  const named = base ?? readAdapterConfig(dir).baseModel;
  if (typeof named !== "string" || named === "") {
    throw new ConfigError(`${dir} holds an adapter without base_model_name_or_path; ${howToPass}`, {
      dir,
    });
  }
  return named;
}

export interface MergedAdapterOptions {
  /** The base model (default: the adapter's base_model_name_or_path). */
  base?: string;
  /** How to pass a base, for the error when the adapter names none. */
  howToPass?: string;
  onWarning?: (message: string) => void;
}

/**
 * The base model of the adapter in `dir`, loaded (a Hub id or a local directory) with the
 * adapter merged into its weights; the model is freed again if the adapter does not fit.
 */
export async function loadMergedAdapter(
  dir: string,
  options: MergedAdapterOptions = {},
): Promise<{ model: Esm2Model; base: string }> {
  const base = adapterBase(dir, options.base, options.howToPass);
  const model = await fromPretrained(
    base,
    options.onWarning ? { onWarning: options.onWarning } : {},
  );
  try {
    loadAdapter(model, dir).merge();
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, base };
}
