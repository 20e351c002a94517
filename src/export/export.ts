/**
 * `exportModel`: a fine-tuned ESM-2 (a merged model directory, or a PEFT adapter merged
 * onto its base) -> a folder that transformers.js (`@huggingface/transformers`) loads
 * from a local path, in Node and in the browser:
 *
 *   config.json                  the model's config (+ "transformers.js_config")
 *   tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.txt
 *   onnx/model.onnx              float32, weights inside (or in model.onnx_data)
 *   onnx/model_quantized.onnx    with --quantize int8 (transformers.js dtype "q8")
 *   esmkit-export.json           what was exported: task, labels, max length, files
 *   index.html, app.js, vendor/  with `web`: the static page (web-page.ts)
 *
 * Tokens: transformers.js cuts a long input after adding `<cls>`/`<eos>`, so its ids
 * end `[..., r1023]` where esmkit's end `[..., r1022, <eos>]`; the exported graph puts
 * that `<eos>` back (EsmGraph's `restoreEos`), so both see the same tokens.
 *
 * Written to a staging folder and renamed into place: a failure leaves nothing behind.
 */
import { existsSync, promises as fsp, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { ensureBackend } from "../backend";
import { ConfigError, StorageError, TokenizerError } from "../errors";
import { openOutputDir } from "../io/storage";
import { isAdapterDir, loadMergedAdapter } from "../lora/merged";
import { esmConfigJsonText } from "../model/config";
import type { Esm2Model } from "../model/esm2";
import { hubDownload, isRepoId } from "../model/hub";
import { fromPretrained } from "../model/pretrained";
import { encodeModel, encodeModelWithExternalData, type ModelDef } from "../onnx/proto";
import { EsmTokenizer } from "../tokenizer/esm-tokenizer";
import { buildExportGraph, EXPORT_TASKS, type ExportTask, TASK_OUTPUT } from "./onnx-model";
import { writeWebPage } from "./web-page";

export const QUANTIZE_CHOICES = ["none", "int8"] as const;
export type ExportQuantize = (typeof QUANTIZE_CHOICES)[number];
export const EXTERNAL_DATA_CHOICES = ["auto", "always", "never"] as const;
export type ExternalDataChoice = (typeof EXTERNAL_DATA_CHOICES)[number];

/** The manifest's file name in the export folder. */
export const EXPORT_MANIFEST = "esmkit-export.json";

/**
 * protobuf cannot encode a message of 2 GiB or more; "auto" moves the weights out when
 * they come within 256 MiB of it (the graph itself is small).
 */
const PROTOBUF_LIMIT = 2 ** 31 - 1;
const GRAPH_MARGIN = 256 * 2 ** 20;

export interface ExportOptions {
  /** A merged model directory (config.json + safetensors) or a PEFT adapter directory. */
  model: string;
  /** The folder to write (must not exist unless `overwrite`). */
  out: string;
  /** The base of an adapter (default: its `base_model_name_or_path`); a directory or Hub id. */
  base?: string;
  /** Default "text-classification". */
  task?: ExportTask;
  /** "int8" also writes onnx/model_quantized.onnx (default "none"). */
  quantize?: ExportQuantize;
  /** Replace an existing `out` (default false). */
  overwrite?: boolean;
  /** Also write the static web page (text-classification only). */
  web?: boolean;
  /** Weights in `.onnx_data` files: "auto" (default) past protobuf's 2 GB limit. */
  externalData?: ExternalDataChoice;
  /** Tokens per sequence incl. `<cls>`/`<eos>`; default the tokenizer's model_max_length or 1024. */
  maxLength?: number;
  /** Progress lines (default: none). */
  onProgress?: (message: string) => void;
  /** Warnings while loading (default: stderr). */
  onWarning?: (message: string) => void;
}

export interface ExportManifest {
  format: 1;
  esmkit: string;
  task: ExportTask;
  /** Label names by class index (text-classification). */
  labels: string[];
  /** Tokens per sequence, `<cls>`/`<eos>` included: sequences longer are truncated. */
  maxLength: number;
  /** transformers.js dtypes available: "fp32", and "q8" with int8. */
  dtypes: string[];
  /** The graph output transformers.js reads. */
  output: string;
  /** Files relative to the folder, with byte sizes. */
  files: Record<string, number>;
  externalData: boolean;
  web: boolean;
}

export interface ExportResult {
  out: string;
  manifest: ExportManifest;
}

function checkChoice<T extends string>(name: string, value: string, choices: readonly T[]): T {
  if (!choices.includes(value as T)) {
    throw new ConfigError(`${name} must be one of ${choices.join(", ")}; got "${value}"`, {
      [name]: value,
    });
  }
  return value as T;
}

/** The model with any adapter merged, the base it came from, and where to look for a tokenizer. */
async function loadForExport(
  options: ExportOptions,
  warn: (m: string) => void,
): Promise<{ model: Esm2Model; tokenizerPlaces: string[] }> {
  const dir = options.model;
  const st = existsSync(dir) ? statSync(dir) : undefined;
  if (!st?.isDirectory()) {
    throw new ConfigError(
      `--model ${JSON.stringify(dir)} is not a directory; give a model directory (config.json + model.safetensors) or a PEFT adapter directory (adapter_config.json)`,
      { model: dir },
    );
  }
  if (!isAdapterDir(dir)) {
    return { model: await fromPretrained(dir, { onWarning: warn }), tokenizerPlaces: [dir] };
  }
  const { model, base } = await loadMergedAdapter(dir, {
    base: options.base,
    howToPass: "pass the base model (--base DIR|HUB_ID)",
    onWarning: warn,
  });
  return { model, tokenizerPlaces: [dir, base] };
}

/** The first tokenizer (vocab.txt) among local directories and Hub ids. */
async function findTokenizer(places: string[]): Promise<EsmTokenizer> {
  for (const place of places) {
    if (existsSync(path.join(place, "vocab.txt"))) return EsmTokenizer.fromDirectory(place);
    if (!existsSync(place) && isRepoId(place)) {
      const vocab = await hubDownload(place, "vocab.txt", { optional: true });
      if (vocab) {
        await hubDownload(place, "tokenizer_config.json", { optional: true });
        await hubDownload(place, "special_tokens_map.json", { optional: true });
        return EsmTokenizer.fromDirectory(path.dirname(vocab));
      }
    }
  }
  throw new TokenizerError(
    `No tokenizer (vocab.txt) in ${places.map((p) => JSON.stringify(p)).join(" or ")}; the export needs the model's own. Copy vocab.txt and tokenizer_config.json from the base model into the model directory (esmkit train writes them to run/model/)`,
    { places },
  );
}

/** Writes one ONNX model, and its data file beside it when `external`. */
async function writeOnnx(
  dir: string,
  file: string,
  def: ModelDef,
  external: boolean,
): Promise<void> {
  const target = path.join(dir, "onnx", file);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  if (!external) {
    await fsp.writeFile(target, encodeModel(def));
    return;
  }
  const dataName = `${file}_data`;
  const enc = encodeModelWithExternalData(def, { location: dataName });
  await fsp.writeFile(target, enc.model);
  const fh = await fsp.open(path.join(dir, "onnx", dataName), "w");
  try {
    for (const c of enc.chunks) await fh.write(c.data, 0, c.data.length, c.offset);
  } finally {
    await fh.close();
  }
}

function weightBytes(model: Esm2Model): number {
  let n = 0;
  for (const v of model.namedVariables().values()) n += v.size * 4;
  return n;
}

function esmkitVersion(): string {
  return (require("../../../package.json") as { version: string }).version;
}

/**
 * Exports a model for transformers.js (see the file comment). Returns the manifest
 * written to `esmkit-export.json`.
 */
export async function exportModel(options: ExportOptions): Promise<ExportResult> {
  const task = checkChoice("task", options.task ?? "text-classification", EXPORT_TASKS);
  const quantize = checkChoice("quantize", options.quantize ?? "none", QUANTIZE_CHOICES);
  const externalChoice = checkChoice(
    "externalData",
    options.externalData ?? "auto",
    EXTERNAL_DATA_CHOICES,
  );
  if (options.web && task !== "text-classification") {
    throw new ConfigError(
      `The web page classifies proteins: it needs task "text-classification", not "${task}"`,
      { task },
    );
  }
  const out = path.resolve(options.out);
  if (existsSync(out) && !options.overwrite) {
    throw new StorageError(
      `Output ${out} already exists; choose another folder or pass --overwrite`,
      { location: out },
    );
  }
  const progress = options.onProgress ?? (() => {});
  const warn = options.onWarning ?? ((m: string) => process.stderr.write(`${m}\n`));
  await ensureBackend();
  progress(`loading ${options.model}`);
  const { model, tokenizerPlaces } = await loadForExport(options, warn);
  try {
    if (task === "text-classification" && (model.loadReport?.missingInitialised.length ?? 0) > 0) {
      throw new ConfigError(
        `${options.model} has no trained classifier (${model.loadReport!.missingInitialised.join(", ")} were newly initialised): it is not an EsmForSequenceClassification checkpoint. Fine-tune it first, or export --task feature-extraction`,
        { model: options.model, missing: model.loadReport!.missingInitialised },
      );
    }
    const found = await findTokenizer(tokenizerPlaces);
    const maxLength = options.maxLength ?? found.modelMaxLength ?? 1024;
    if (!Number.isInteger(maxLength) || maxLength < 3) {
      throw new ConfigError(`maxLength must be an integer >= 3, got ${maxLength}`, { maxLength });
    }
    const tokenizer = new EsmTokenizer(found.vocab, found.specials, maxLength);
    const external =
      externalChoice === "always" ||
      (externalChoice === "auto" && weightBytes(model) > PROTOBUF_LIMIT - GRAPH_MARGIN);

    const staged = await openOutputDir(out, { overwrite: options.overwrite });
    try {
      const dir = staged.localDir;
      await fsp.chmod(dir, 0o755); // a staging folder is private; the export is a site too
      const jsConfig: Record<string, unknown> = {};
      // Without a quantized file, every device must load the float one (wasm defaults to q8).
      if (quantize === "none") jsConfig.dtype = "fp32";
      if (external) {
        jsConfig.use_external_data_format = Object.fromEntries(
          ["model.onnx", ...(quantize === "int8" ? ["model_quantized.onnx"] : [])].map((f) => [
            f,
            1,
          ]),
        );
      }
      let configText = esmConfigJsonText({
        ...model.config,
        extra: { ...model.config.extra, "transformers.js_config": jsConfig },
      });
      if (task === "feature-extraction") {
        configText = configText.replace('"EsmForSequenceClassification"', '"EsmModel"');
      }
      await fsp.writeFile(path.join(dir, "config.json"), configText);
      await tokenizer.save(dir);
      const restoreEos = { maxLength, clsId: tokenizer.clsId, eosId: tokenizer.eosId };
      progress(`writing onnx/model.onnx (float32${external ? ", external data" : ""})`);
      await writeOnnx(
        dir,
        "model.onnx",
        buildExportGraph(model, { task, restoreEos }).modelDef(),
        external,
      );
      const dtypes = ["fp32"];
      if (quantize === "int8") {
        progress("writing onnx/model_quantized.onnx (int8 encoder weights)");
        await writeOnnx(
          dir,
          "model_quantized.onnx",
          buildExportGraph(model, { task, restoreEos, int8: true }).modelDef(),
          external,
        );
        dtypes.push("q8");
      }
      const n = model.config.numLabels;
      const manifest: ExportManifest = {
        format: 1,
        esmkit: esmkitVersion(),
        task,
        labels: Array.from({ length: n }, (_, i) => model.config.id2label[i] ?? `LABEL_${i}`),
        maxLength,
        dtypes,
        output: TASK_OUTPUT[task],
        files: {},
        externalData: external,
        web: options.web ?? false,
      };
      if (options.web) {
        progress("writing the web page (index.html, app.js, vendor/)");
        await writeWebPage(dir);
      }
      manifest.files = await listFiles(dir);
      await fsp.writeFile(
        path.join(dir, EXPORT_MANIFEST),
        `${JSON.stringify(manifest, null, 2)}\n`,
      );
      await staged.commit();
      progress(`exported to ${out}`);
      return { out, manifest };
    } catch (e) {
      await staged.abort();
      throw e;
    }
  } finally {
    model.dispose();
  }
}

/** Every file under `dir` (relative, `/`-separated) with its size. */
async function listFiles(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const walk = async (sub: string) => {
    for (const e of await fsp.readdir(path.join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(rel);
      else out[rel] = (await fsp.stat(path.join(dir, rel))).size;
    }
  };
  await walk("");
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The manifest of an export folder, or an error saying the folder is not one. */
export function readExportManifest(dir: string): ExportManifest {
  const file = path.join(dir, EXPORT_MANIFEST);
  if (!existsSync(file)) {
    throw new ConfigError(`${dir} is not an esmkit export (no ${EXPORT_MANIFEST})`, { dir });
  }
  return JSON.parse(readFileSync(file, "utf8")) as ExportManifest;
}
