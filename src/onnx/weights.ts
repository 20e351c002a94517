/**
 * Where the onnx engine reads its weights: the TensorFlow.js model (training, and
 * whenever the tfjs model exists anyway: its variables stay the one owner of every
 * weight), or a checkpoint on disk read tensor by tensor, with no TensorFlow.js model at
 * all (`predict`, `serve` and `evaluate` on the onnx engine: one copy of the weights, the
 * engine's own).
 *
 * Values are in the engine's layout: Linear weights `[in, out]`, LoRA `A^T [in, r]` and
 * `B^T [r, out]`, everything else as in the checkpoint.
 *
 * On the wasm backend the engine reads the model's weights in place (`view`): a
 * Float32Array over the WebAssembly memory where the variable's data lives, handed to
 * onnxruntime-node, which runs on the array's memory without copying it. So a frozen
 * float32 base is held once, not twice (650M: 2.6 GB less). A view is only good until
 * TensorFlow.js next allocates (the memory may grow, which replaces its buffer) or the
 * variable changes, so the engine makes them afresh for each run and never keeps one.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { LoraModel } from "../lora/lora";
import { INV_FREQ_KEY } from "../model/architecture";
import type { EsmConfig } from "../model/config";
import type { Esm2Model } from "../model/esm2";
import type { OpenCheckpoint } from "../model/pretrained";

export interface EngineWeights {
  readonly config: EsmConfig;
  /** The rotary inverse frequencies `[head_dim / 2]`. */
  readonly invFreq: Float32Array;
  /** Shape of `key` in the engine's layout; undefined when there is no such tensor. */
  shape(key: string): number[] | undefined;
  /**
   * An object that stays the same as long as `key`'s value does (a tf.Variable's data
   * id: an assignment or a merge makes a new one); undefined when there is no such tensor.
   */
  version(key: string): object | undefined;
  /** `key`'s values, a fresh array the caller may keep. */
  read(key: string): Float32Array;
  /**
   * `key`'s values without a copy, where the source allows it (a tfjs variable on the
   * wasm backend); undefined otherwise (then use `read`). Valid only until the next
   * TensorFlow.js allocation or change of `key`: use it at once, never keep it.
   */
  view?(key: string): Float32Array | undefined;
  /** Called at the start of each engine call: tensors may have been added (adapters). */
  refresh(): void;
  dispose(): void;
}

/** The weights of a TensorFlow.js model and its LoRA adapters, as they are at each call. */
export function modelWeights(model: Esm2Model, lora?: LoraModel): EngineWeights {
  let vars: Map<string, tf.Variable> | undefined;
  const table = () => {
    if (!vars) {
      vars = model.namedVariables();
      if (lora) for (const [k, v] of lora.trainableVariables()) vars.set(k, v);
    }
    return vars;
  };
  return {
    config: model.config,
    invFreq: new Float32Array(model.invFreq.dataSync()),
    shape: (key) => {
      const v = table().get(key);
      return v ? [...v.shape] : undefined;
    },
    version: (key) => (table().get(key) as unknown as { dataId: object } | undefined)?.dataId,
    read: (key) => {
      const v = table().get(key);
      if (!v) throw new Error(`The graph needs ${key}, which the model does not hold`);
      return new Float32Array(v.dataSync() as Float32Array);
    },
    view: (key) => {
      const v = table().get(key);
      return v ? wasmView(v) : undefined;
    },
    refresh: () => {
      vars = undefined;
    },
    dispose: () => undefined,
  };
}

/** What `wasmView` needs of tfjs-backend-wasm (4.x); checked at each use. */
interface WasmBackendLike {
  dataIdMap: { get(dataId: object): { memoryOffset: number | null } | undefined };
  wasm: { HEAPU8: Uint8Array } | null;
}

/**
 * A Float32Array over the WebAssembly memory that holds `t`'s data, or undefined when its
 * data is not there (another backend: tfjs-node's data lives in TensorFlow's C memory,
 * where JavaScript cannot reach it without a copy) or the memory is shared (onnxruntime-node
 * refuses arrays over a SharedArrayBuffer).
 */
export function wasmView(t: tf.Tensor): Float32Array | undefined {
  if (t.dtype !== "float32" || t.isDisposed) return undefined;
  const info = (
    tf.engine().state.tensorInfo as WeakMap<object, { backend: unknown }> | undefined
  )?.get(t.dataId);
  const backend = info?.backend as Partial<WasmBackendLike> | undefined;
  if (!backend?.dataIdMap || !backend.wasm?.HEAPU8) return undefined;
  const offset = backend.dataIdMap.get(t.dataId)?.memoryOffset;
  const buffer = backend.wasm.HEAPU8.buffer;
  if (typeof offset !== "number" || offset % 4 !== 0 || !(buffer instanceof ArrayBuffer)) {
    return undefined;
  }
  if (offset + t.size * 4 > buffer.byteLength) return undefined;
  return new Float32Array(buffer, offset, t.size);
}

/**
 * The weights of a checkpoint opened with `openPretrained`, read from disk when first
 * asked for (the engine keeps what it uses); they never change. Disposing closes it.
 */
export function checkpointWeights(open: OpenCheckpoint): EngineWeights {
  const specs = new Map(open.checked.specs.map((s) => [s.key, s]));
  const versions = new Map<string, object>();
  return {
    config: open.config,
    invFreq: open.read(INV_FREQ_KEY),
    shape: (key) => {
      const s = specs.get(key);
      if (!s) return undefined;
      return s.linear ? [s.shape[1]!, s.shape[0]!] : [...s.shape];
    },
    version: (key) => {
      if (!specs.has(key)) return undefined;
      let v = versions.get(key);
      if (!v) {
        v = { key };
        versions.set(key, v);
      }
      return v;
    },
    read: (key) => {
      const s = specs.get(key);
      if (!s) throw new Error(`The graph needs ${key}, which ${open.files.description} lacks`);
      const hf = open.read(key);
      if (!s.linear) return hf;
      const [out, inF] = s.shape as [number, number];
      const t = new Float32Array(hf.length); // [out, in] -> [in, out]
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) t[i * out + o] = hf[o * inF + i]!;
      return t;
    },
    refresh: () => undefined,
    dispose: () => open.close(),
  };
}
