/**
 * onnxruntime-node, loaded lazily and used synchronously.
 *
 * The package's public `InferenceSession.run` is a Promise around a synchronous native
 * call; esmkit's training step and the tfjs-shaped APIs are synchronous, so the native
 * session is used directly (`onnxruntime-node/dist/binding`, pinned to the version in
 * package.json; the engine tests would catch a changed binding).
 */
import { createRequire } from "node:module";
import { ConfigError } from "../errors";

export interface OrtTensor {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: Float32Array | Int32Array | Uint8Array | Int8Array;
}

interface NativeSession {
  loadModel(buffer: ArrayBuffer, offset: number, length: number, options: object): void;
  loadModel(modelPath: string, options: object): void;
  run(
    feeds: Record<string, OrtTensor>,
    fetches: Record<string, null>,
    options: object,
  ): Record<string, OrtTensor>;
  dispose(): void;
  readonly inputMetadata: { name: string }[];
  readonly outputMetadata: { name: string }[];
}

interface OrtModule {
  Tensor: new (
    type: string,
    data: Float32Array | Int32Array | Uint8Array | Int8Array,
    dims: readonly number[],
  ) => OrtTensor;
  binding: { InferenceSession: new () => NativeSession };
  version: string;
}

let cached: OrtModule | null | undefined;
let loadError: string | undefined;

/** The onnxruntime-node module, or null when it cannot load here (the reason in `ortUnavailableReason`). */
export function loadOrt(): OrtModule | null {
  if (cached !== undefined) return cached;
  try {
    const req = createRequire(__filename);
    const ort = req("onnxruntime-node") as {
      Tensor: OrtModule["Tensor"];
      env: { logLevel?: string };
    };
    // Warnings (e.g. about constant folding) are not the user's business.
    ort.env.logLevel = "error";
    const b = req("onnxruntime-node/dist/binding") as Pick<OrtModule, "binding"> & {
      initOrt: () => void;
    };
    const version = (req("onnxruntime-node/package.json") as { version: string }).version;
    if (typeof b.binding?.InferenceSession !== "function" || typeof b.initOrt !== "function") {
      throw new Error(`onnxruntime-node ${version} has no synchronous native session`);
    }
    b.initOrt();
    cached = { Tensor: ort.Tensor, binding: b.binding, version };
  } catch (e) {
    loadError = e instanceof Error ? e.message.split("\n")[0] : String(e);
    cached = null;
  }
  return cached;
}

export function ortUnavailableReason(): string | undefined {
  loadOrt();
  return loadError;
}

export function requireOrt(): OrtModule {
  const ort = loadOrt();
  if (!ort) {
    throw new ConfigError(
      `The onnx engine needs onnxruntime-node, which did not load: ${loadError}. Run npm ci, or use engine "tfjs"`,
      { reason: loadError },
    );
  }
  return ort;
}

export interface SessionOptions {
  /** Threads for one operator (default 1). */
  threads?: number;
}

/**
 * A loaded graph, run synchronously: from model bytes, or from a model file (whose
 * external data, relative to it, onnxruntime maps; see session-files.ts).
 */
export class OrtSession {
  private readonly native: NativeSession;
  readonly inputNames: string[];
  readonly outputNames: string[];

  constructor(model: Uint8Array | string, options: SessionOptions = {}) {
    const ort = requireOrt();
    this.native = new ort.binding.InferenceSession();
    const settings = {
      intraOpNumThreads: options.threads ?? 1,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
      // The arena keeps memory between runs (no page faults on every layer of a
      // checkpointed step); the memory pattern is off because with shapes changing per
      // batch it allocated a second block beside the first run's (peak RSS doubled).
      // The arena never gives memory back, and onnxruntime-node passes neither arena
      // settings nor run options such as memory.enable_memory_arena_shrinkage; turning
      // it off made serving several times slower. So serving bounds its memory by the
      // shapes it runs instead (src/serve/model-predictor.ts).
      enableCpuMemArena: true,
      enableMemPattern: false,
      ...(process.env.ESMKIT_ORT_PROFILE
        ? { enableProfiling: true, profileFilePrefix: process.env.ESMKIT_ORT_PROFILE }
        : {}),
    };
    if (typeof model === "string") this.native.loadModel(model, settings);
    else {
      this.native.loadModel(
        model.buffer as ArrayBuffer,
        model.byteOffset,
        model.byteLength,
        settings,
      );
    }
    this.inputNames = this.native.inputMetadata.map((m) => m.name);
    this.outputNames = this.native.outputMetadata.map((m) => m.name);
  }

  /** Runs with `feeds` (every input needed); returns every output by name. */
  run(feeds: Record<string, OrtTensor>): Record<string, OrtTensor> {
    const missing = this.inputNames.filter((n) => !(n in feeds));
    if (missing.length > 0) throw new Error(`Missing graph inputs: ${missing.join(", ")}`);
    const picked: Record<string, OrtTensor> = {};
    for (const n of this.inputNames) picked[n] = feeds[n]!;
    const fetches: Record<string, null> = {};
    for (const n of this.outputNames) fetches[n] = null;
    return this.native.run(picked, fetches, {});
  }

  dispose(): void {
    if (process.env.ESMKIT_ORT_PROFILE)
      (this.native as unknown as { endProfiling(): void }).endProfiling();
    this.native.dispose();
  }
}

export function floatTensor(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new (requireOrt().Tensor)("float32", data, dims);
}

export function int32Tensor(data: Int32Array, dims: readonly number[]): OrtTensor {
  return new (requireOrt().Tensor)("int32", data, dims);
}

export function int8Tensor(data: Int8Array, dims: readonly number[]): OrtTensor {
  return new (requireOrt().Tensor)("int8", data, dims);
}

export function boolScalar(value: boolean): OrtTensor {
  return new (requireOrt().Tensor)("bool", Uint8Array.of(value ? 1 : 0), []);
}
