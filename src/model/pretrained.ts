/**
 * `fromPretrained(idOrPath)` and `savePretrained(model, dir)`: Hugging Face model
 * directories in and out. A directory holds config.json and either model.safetensors
 * or model.safetensors.index.json with its shards; a Hub id is fetched into the
 * huggingface_hub cache first (hub.ts). Pickled PyTorch `.bin` weights are refused with
 * a conversion recipe: unpickling runs arbitrary code, and the 3B and 15B ESM-2
 * repositories ship only those.
 */
import { existsSync, promises as fsp, readdirSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { StorageError, WeightsError } from "../errors";
import { EsmTokenizer } from "../tokenizer/esm-tokenizer";
import { type EsmConfig, esmConfigJsonText, parseEsmConfig } from "./config";
import { Esm2Model, type Esm2ModelOptions } from "./esm2";
import {
  cachedFile,
  type HubOptions,
  type HubSettings,
  hubDownload,
  hubFileExists,
  hubSettings,
  isRepoId,
} from "./hub";
import { SafetensorsFile, writeSafetensors } from "./safetensors";
import {
  type CheckedCheckpoint,
  checkCheckpoint,
  initialisedValues,
  type LoadOptions,
  type LoadReport,
  loadParameters,
  stateDict,
  type TensorSource,
} from "./weights";

export interface FromPretrainedOptions extends HubOptions, LoadOptions, Esm2ModelOptions {
  /** Classifier outputs; overrides config.json (labels become LABEL_i). */
  numLabels?: number;
  /** Label names by index; sets numLabels too. */
  id2label?: Record<number, string> | string[];
  /** Called with a message when weights are newly initialised (default console.warn). */
  onWarning?: (message: string) => void;
}

export interface SavePretrainedOptions {
  /** Tokenizer whose files are written; default the ESM-2 vocabulary. */
  tokenizer?: EsmTokenizer;
  /** Also write the masked-LM head when the model has one (default true). */
  lmHead?: boolean;
}

export const WEIGHTS_NAME = "model.safetensors";
export const WEIGHTS_INDEX_NAME = "model.safetensors.index.json";
const PICKLE_NAMES = ["pytorch_model.bin", "pytorch_model.bin.index.json"];
/** What ESM-2 Hub repos hold for their tokenizer (they have no tokenizer.json). */
export const TOKENIZER_FILES = ["tokenizer_config.json", "vocab.txt", "special_tokens_map.json"];

/** Where a checkpoint's files are on disk. */
export interface CheckpointFiles {
  /** The directory or Hub id, for messages. */
  description: string;
  config: string;
  /** One file, or the index plus its shards. */
  weights: { single: string } | { index: string; shards: Map<string, string> };
}

function noSafetensors(where: string, found: string[], idOrPath: string): WeightsError {
  const out = path.basename(idOrPath);
  return new WeightsError(
    `${where} has no safetensors weights (neither ${WEIGHTS_NAME} nor ${WEIGHTS_INDEX_NAME}${found.length ? `; it has ${found.join(", ")}` : ""}). esmkit reads safetensors only: pickled .bin files can run code when loaded. Convert once with Python:\n  python -c "from transformers import EsmForMaskedLM as M; M.from_pretrained('${idOrPath}').save_pretrained('${out}-safetensors')"\nthen load the directory ${out}-safetensors.`,
    { source: where, found },
  );
}

function readJson(file: string): unknown {
  const text = readFileSync(file, "utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    const empty = text.trim() === "";
    const cut = empty || /end of (JSON )?input/i.test((e as Error).message);
    throw new WeightsError(
      `${file} is not valid JSON (${empty ? "it is empty" : (e as Error).message})${cut ? ": it is cut off, a sign of an interrupted save or copy" : ""}`,
      { file },
      { cause: e },
    );
  }
}

function shardNames(indexFile: string): string[] {
  const index = readJson(indexFile) as { weight_map?: Record<string, string> };
  if (!index || typeof index.weight_map !== "object" || index.weight_map === null) {
    throw new WeightsError(`${indexFile} has no "weight_map" object`, { file: indexFile });
  }
  const names = [...new Set(Object.values(index.weight_map))];
  for (const n of names) {
    if (typeof n !== "string" || n.includes("..") || path.isAbsolute(n)) {
      throw new WeightsError(`${indexFile} names an invalid shard ${JSON.stringify(n)}`, {
        file: indexFile,
      });
    }
  }
  return names;
}

/** What a model directory must hold, for messages. */
const ACCEPTED = `config.json plus ${WEIGHTS_NAME} (or ${WEIGHTS_INDEX_NAME} and every shard it lists)`;

/** Leftovers of an interrupted write (`*.tmp-<pid>`, `*.incomplete`, `*.partial*`). */
function leftovers(names: string[]): string[] {
  return names.filter((n) => /\.tmp-[^/]*$|\.incomplete$|\.partial/.test(n));
}

function incomplete(dir: string, problem: string, names: string[]): WeightsError {
  const left = leftovers(names);
  const why = left.length
    ? ` ${left.join(", ")} ${left.length === 1 ? "is the leftover" : "are leftovers"} of a write that was interrupted.`
    : "";
  return new WeightsError(
    `${dir} is an incomplete model directory: ${problem}.${why} A model directory needs ${ACCEPTED}; save or copy the model again.`,
    { dir, files: names, leftovers: left },
  );
}

function localFiles(dir: string): CheckpointFiles {
  const names = readdirSync(dir).sort();
  const config = path.join(dir, "config.json");
  const single = path.join(dir, WEIGHTS_NAME);
  const index = path.join(dir, WEIGHTS_INDEX_NAME);
  if (!existsSync(config)) {
    if (existsSync(single) || existsSync(index) || leftovers(names).length > 0)
      throw incomplete(dir, "it has no config.json", names);
    throw new WeightsError(
      `${dir} has no config.json: not a Hugging Face model directory (it holds ${names.length ? names.join(", ") : "nothing"}; a model directory needs ${ACCEPTED})`,
      { dir, files: names },
    );
  }
  if (existsSync(single)) return { description: dir, config, weights: { single } };
  if (existsSync(index)) {
    const shards = new Map<string, string>();
    for (const n of shardNames(index)) {
      const p = path.join(dir, n);
      if (!existsSync(p)) {
        throw new WeightsError(`${index} lists shard ${n}, which is not in ${dir}`, {
          file: index,
          shard: n,
        });
      }
      shards.set(n, p);
    }
    return { description: dir, config, weights: { index, shards } };
  }
  const pickles = PICKLE_NAMES.filter((n) => names.includes(n));
  if (pickles.length > 0) throw noSafetensors(dir, pickles, dir);
  throw incomplete(
    dir,
    `it has config.json but neither ${WEIGHTS_NAME} nor ${WEIGHTS_INDEX_NAME} (it holds ${names.join(", ")})`,
    names,
  );
}

async function hubFiles(repoId: string, s: HubSettings): Promise<CheckpointFiles> {
  const where = `${repoId} (revision "${s.revision}")`;
  const config = (await hubDownload(repoId, "config.json", {}, s))!;
  // Cache first for both layouts, so a cached model costs no request at all (hubDownload
  // still verifies the cached blob).
  const get = async (f: string) =>
    (await hubDownload(repoId, f, { optional: true }, s)) ?? undefined;
  const inCache = (f: string) => !s.forceDownload && cachedFile(s, repoId, f) !== undefined;
  let single: string | undefined;
  let index: string | undefined;
  if (inCache(WEIGHTS_NAME)) single = await get(WEIGHTS_NAME);
  else if (inCache(WEIGHTS_INDEX_NAME)) index = await get(WEIGHTS_INDEX_NAME);
  else {
    single = await get(WEIGHTS_NAME);
    if (!single) index = await get(WEIGHTS_INDEX_NAME);
  }
  let weights: CheckpointFiles["weights"] | undefined;
  if (single) weights = { single };
  else if (index) {
    const shards = new Map<string, string>();
    for (const n of shardNames(index)) shards.set(n, (await hubDownload(repoId, n, {}, s))!);
    weights = { index, shards };
  }
  if (weights) {
    // The tokenizer too, so the cache serves Python's AutoTokenizer offline as well
    // (offline, a cache filled before without them still loads).
    if (!s.offline)
      for (const f of TOKENIZER_FILES) await hubDownload(repoId, f, { optional: true }, s);
    return { description: where, config, weights };
  }
  const found: string[] = [];
  for (const n of PICKLE_NAMES) if (await hubFileExists(repoId, n, s)) found.push(n);
  throw noSafetensors(where, found, repoId);
}

/** Find (and for a Hub id, download) the files of a checkpoint. */
export async function resolveCheckpoint(
  idOrPath: string,
  options: HubOptions = {},
): Promise<CheckpointFiles> {
  if (existsSync(idOrPath)) {
    if (!statSync(idOrPath).isDirectory()) {
      throw new WeightsError(
        `${idOrPath} is a file; pass the directory holding config.json and the weights`,
        {
          path: idOrPath,
        },
      );
    }
    return localFiles(idOrPath);
  }
  if (!isRepoId(idOrPath)) {
    throw new StorageError(
      `${idOrPath} is neither an existing directory nor a Hub model id such as "facebook/esm2_t6_8M_UR50D"`,
      { idOrPath },
    );
  }
  try {
    return await hubFiles(idOrPath, hubSettings(options));
  } catch (e) {
    const status = e instanceof StorageError ? e.context.status : undefined;
    if (
      e instanceof StorageError &&
      (status === 401 || status === 404) &&
      e.context.file === "config.json"
    ) {
      throw new StorageError(
        `${e.message} (No local directory "${idOrPath}" exists either.)`,
        e.context,
        {
          cause: e,
        },
      );
    }
    throw e;
  }
}

/** The tensors of one file or of all shards, behind one interface. */
export class CheckpointSource implements TensorSource {
  readonly description: string;
  private readonly files: SafetensorsFile[] = [];
  private readonly byKey = new Map<string, SafetensorsFile>();

  constructor(files: CheckpointFiles) {
    try {
      if ("single" in files.weights) {
        this.description = files.weights.single;
        this.add(SafetensorsFile.open(files.weights.single));
      } else {
        this.description = files.weights.index;
        for (const p of files.weights.shards.values()) this.add(SafetensorsFile.open(p));
        const index = readJson(files.weights.index) as { weight_map: Record<string, string> };
        for (const [key, shard] of Object.entries(index.weight_map)) {
          if (this.byKey.get(key)?.path !== files.weights.shards.get(shard)) {
            throw new WeightsError(
              `${files.weights.index} says "${key}" is in ${shard}, but ${this.byKey.has(key) ? `it is in ${path.basename(this.byKey.get(key)!.path)}` : "no shard holds it"}`,
              { file: files.weights.index, key, shard },
            );
          }
        }
      }
    } catch (e) {
      this.close();
      if (e instanceof WeightsError && e.context.truncated) {
        throw new WeightsError(
          `${e.message}. The file is incomplete (an interrupted save, copy or download); esmkit needs the whole file: save, copy or download the model again.`,
          e.context,
          { cause: e },
        );
      }
      throw e;
    }
  }

  private add(f: SafetensorsFile): void {
    this.files.push(f);
    for (const k of f.keys()) {
      if (this.byKey.has(k)) {
        throw new WeightsError(`"${k}" appears in both ${this.byKey.get(k)!.path} and ${f.path}`, {
          key: k,
        });
      }
      this.byKey.set(k, f);
    }
  }

  keys(): string[] {
    return [...this.byKey.keys()];
  }

  info(key: string) {
    const t = this.byKey.get(key)!.tensors.get(key)!;
    return { dtype: t.dtype, shape: t.shape };
  }

  read(key: string): Float32Array {
    return this.byKey.get(key)!.readFloat32(key);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

function applyLabelOptions(config: EsmConfig, options: FromPretrainedOptions): EsmConfig {
  if (options.id2label !== undefined) {
    const names = Array.isArray(options.id2label)
      ? options.id2label
      : Object.keys(options.id2label)
          .map(Number)
          .sort((a, b) => a - b)
          .map((i) => (options.id2label as Record<number, string>)[i]!);
    const id2label = Object.fromEntries(names.map((n, i) => [i, n]));
    const label2id = Object.fromEntries(names.map((n, i) => [n, i]));
    return { ...config, numLabels: names.length, id2label, label2id };
  }
  if (options.numLabels !== undefined && options.numLabels !== config.numLabels) {
    const n = options.numLabels;
    const id2label = Object.fromEntries(Array.from({ length: n }, (_, i) => [i, `LABEL_${i}`]));
    const label2id = Object.fromEntries(Array.from({ length: n }, (_, i) => [`LABEL_${i}`, i]));
    return { ...config, numLabels: n, id2label, label2id };
  }
  return config;
}

/** config.json with the label options applied. */
function configOf(files: CheckpointFiles, options: FromPretrainedOptions): EsmConfig {
  const config = applyLabelOptions(parseEsmConfig(readJson(files.config), files.config), options);
  if (
    options.numLabels !== undefined &&
    (!Number.isInteger(options.numLabels) || options.numLabels < 1)
  ) {
    throw new WeightsError(`numLabels must be an integer >= 1, got ${options.numLabels}`, {
      numLabels: options.numLabels,
    });
  }
  return config;
}

/** A checkpoint opened and checked, read tensor by tensor (see `openPretrained`). */
export interface OpenCheckpoint {
  config: EsmConfig;
  files: CheckpointFiles;
  checked: CheckedCheckpoint;
  /** Values of the parameters the checkpoint lacks (a new classifier), drawn from the seed. */
  initialised: Map<string, Float32Array>;
  /** A parameter's values in the Hugging Face layout (`[out, in]` for Linear weights). */
  read(key: string): Float32Array;
  close(): void;
}

/**
 * The checkpoint `fromPretrained` would load, checked the same way (same errors, same new
 * classifier from `seed`, same warnings), but without building a TensorFlow.js model:
 * tensors are read one at a time when asked for. For the onnx engine's predictor, which
 * keeps one copy of the weights, its own. Close it when done.
 */
export async function openPretrained(
  idOrPath: string,
  options: FromPretrainedOptions = {},
): Promise<OpenCheckpoint> {
  const files = await resolveCheckpoint(idOrPath, options);
  const config = configOf(files, options);
  const source = new CheckpointSource(files);
  try {
    const checked = checkCheckpoint(config, source, options);
    const initialised = initialisedValues(config, checked, options.seed ?? 42);
    warnAboutLoad(checked.report, files, options);
    return {
      config,
      files,
      checked,
      initialised,
      read(key) {
        const raw = checked.found.get(key);
        const values = raw ? source.read(raw) : initialised.get(key);
        if (!values) throw new WeightsError(`${key} is not a parameter of this model`, { key });
        return values;
      },
      close: () => source.close(),
    };
  } catch (e) {
    source.close();
    throw e;
  }
}

function warnAboutLoad(
  report: LoadReport,
  files: CheckpointFiles,
  options: FromPretrainedOptions,
): void {
  const warn = options.onWarning ?? ((m: string) => console.warn(m));
  if (report.missingInitialised.length > 0) {
    warn(
      `Some weights of the model were not in the checkpoint at ${files.description} and are newly initialised: [${report.missingInitialised.join(", ")}]. You should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference.`,
    );
  }
  if (report.unexpected.length > 0) {
    warn(
      `Keys in ${files.description} the model does not use were skipped: [${report.unexpected.join(", ")}]`,
    );
  }
}

/**
 * Load an ESM-2 model from a local Hugging Face directory or a Hub id. A checkpoint
 * without a classifier (the Hub's MaskedLM ones) gets a new one, N(0, 0.02) with bias 0
 * from `seed`, listed in `model.loadReport.missingInitialised` and passed to `onWarning`.
 */
export async function fromPretrained(
  idOrPath: string,
  options: FromPretrainedOptions = {},
): Promise<Esm2Model> {
  const files = await resolveCheckpoint(idOrPath, options);
  const config = configOf(files, options);
  const source = new CheckpointSource(files);
  let loaded: ReturnType<typeof loadParameters>;
  try {
    loaded = loadParameters(config, source, options);
  } finally {
    source.close();
  }
  const { params, passthrough, report } = loaded;
  const model = new Esm2Model(config, params, { ...options, lmHead: report.lmHead });
  for (const [k, v] of passthrough) model.passthrough.set(k, v);
  model.loadReport = report;
  model.nameOrPath = idOrPath;
  warnAboutLoad(report, files, options);
  return model;
}

/**
 * Write a Hugging Face directory that `EsmForSequenceClassification.from_pretrained`
 * loads: config.json, model.safetensors (Hub key names, Linear weights `[out, in]`)
 * and the tokenizer files. Returns the file names written.
 */
export async function savePretrained(
  model: Esm2Model,
  dir: string,
  options: SavePretrainedOptions = {},
): Promise<string[]> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, "config.json"), esmConfigJsonText(model.config));
  writeSafetensors(
    path.join(dir, WEIGHTS_NAME),
    stateDict(model, { lmHead: options.lmHead ?? true }),
  );
  const tokenizerFiles = await (options.tokenizer ?? new EsmTokenizer()).save(dir);
  return ["config.json", WEIGHTS_NAME, ...tokenizerFiles];
}
