/**
 * ESM-2 in TensorFlow.js, read top to bottom: Linear, LayerNorm, GELU, then the model
 * (embeddings with token dropout, rotary attention, pre-LayerNorm layers, final
 * LayerNorm, classification and masked-LM heads); the parameter table is in
 * parameters.ts. The maths is Hugging Face transformers' EsmForSequenceClassification /
 * EsmForMaskedLM exactly (the shared spec esm2-reference.md); parity is tested against
 * fixtures produced by the pinned Python stack (test/reference/).
 *
 * Speed notes (TensorFlow.js 4.22, wasm backend):
 * - dense layers are 2-D matmuls `[B*L, in] x [in, out]` with the weight stored
 *   pre-transposed as `[in, out]` (Hugging Face stores `[out, in]`): the transposed
 *   matMul forms are 15-20x slower on wasm;
 * - attention uses per-(sequence, head) 2-D matmuls for long inputs and one batched
 *   matmul for short ones, see `attend`.
 *
 * Tensors returned by the public methods belong to the caller (dispose them); the
 * methods run inside tf.tidy and leave nothing else behind.
 */
import * as tf from "@tensorflow/tfjs-core";
import { ConfigError, DataError, WeightsError } from "../errors";
import { SeededRandom } from "../util/random";
import {
  CLASSIFIER,
  EMBEDDING,
  FINAL_NORM,
  INV_FREQ_KEY,
  isLmHead,
  LAYER,
  LM_HEAD,
  layerPrefix,
  type ParamSpec,
  parameterSpecs,
} from "./architecture";
import type { EsmConfig } from "./config";
import { attention, dense, recordingGradients } from "./fast-grad";
import { initialValues, toModelTensor } from "./parameters";
import type { LoadReport } from "./weights";

/** A side path added to a Linear's output, e.g. a LoRA adapter `B(A(x)) * scale`. */
export interface LinearAdapter {
  apply(x2d: tf.Tensor2D): tf.Tensor2D;
}

/** `y = x W + b` with W stored `[in, out]`; `name` is the Hugging Face module name. */
export class Linear {
  /** Optional side path, added to the output when set (LoRA hooks in here). */
  adapter?: LinearAdapter;

  constructor(
    /** Dotted Hugging Face module name, e.g. `esm.encoder.layer.0.attention.self.query`. */
    readonly name: string,
    /** `[in, out]`: the transpose of the Hugging Face `weight`. */
    readonly weight: tf.Variable<tf.Rank.R2>,
    /** `[out]`, or null for a bias-free projection. */
    readonly bias: tf.Variable<tf.Rank.R1> | null,
  ) {}

  get inFeatures(): number {
    return this.weight.shape[0];
  }

  get outFeatures(): number {
    return this.weight.shape[1];
  }

  /** `[N, in] -> [N, out]`. */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const y = dense(x, this.weight, this.bias, this.weight.trainable);
      return this.adapter ? tf.add(y, this.adapter.apply(x)) : y;
    });
  }
}

/** LayerNorm over the last axis: biased variance, eps inside the square root. */
export class LayerNorm {
  constructor(
    readonly name: string,
    readonly weight: tf.Variable<tf.Rank.R1>,
    readonly bias: tf.Variable<tf.Rank.R1>,
    readonly eps: number,
  ) {}

  /** `[N, H] -> [N, H]`. */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const { mean, variance } = tf.moments(x, -1, true); // [N, 1]
      const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps)));
      return tf.add(tf.mul(normed, this.weight), this.bias);
    });
  }
}

/** The exact (erf) GELU of the original ESM code; `tanh` approximations drift. */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))))) as T;
}

// ---- the model --------------------------------------------------------------------------

export interface EsmInputs {
  /** Token ids `[B, L]` (int32 tensor or nested arrays), `<cls>` first, padded right. */
  inputIds: number[][] | tf.Tensor2D;
  /** 1 for real tokens, 0 for padding `[B, L]`; default all ones (as transformers). */
  attentionMask?: number[][] | tf.Tensor2D;
}

export interface EsmOutputs {
  /** After the final LayerNorm `[B, L, H]`. */
  lastHiddenState: tf.Tensor3D;
  /** Classification logits `[B, numLabels]`. */
  logits: tf.Tensor2D;
}

/** "mean": average over positions with attention mask 1 (`<cls>` and `<eos>` included);
 * "mean-residues": over residues only, as facebookresearch/esm's extract.py; "cls": position 0. */
export type Pooling = "mean" | "mean-residues" | "cls";

/** "auto" picks per sequence length (see `attend`); the others force one path. */
export type AttentionImpl = "auto" | "batched" | "per-head";

export interface Esm2ModelOptions {
  /** Attention matmul strategy; default "auto". */
  attention?: AttentionImpl;
}

interface EncoderLayer {
  attnNorm: LayerNorm;
  query: Linear;
  key: Linear;
  value: Linear;
  attnOut: Linear;
  ffnNorm: LayerNorm;
  ffnIn: Linear;
  ffnOut: Linear;
}

interface LmHead {
  dense: Linear;
  layerNorm: LayerNorm;
  /** Null when tied: the decoder is the word embedding matrix. */
  decoder: Linear | null;
  bias: tf.Variable<tf.Rank.R1>;
}

/** Largest float32, negated: the additive mask value transformers uses. */
export const MASK_VALUE = -3.4028234663852886e38;

/** Sequence lengths above which per-head attention is used under "auto" (see `attend`). */
const PER_HEAD_MIN_LENGTH = 256;
/** ...and at most this many (sequence, head) pairs: unstacking more costs more than it saves. */
const PER_HEAD_MAX_HEADS = 64;

/**
 * ESM-2 encoder with a sequence-classification head and, when the checkpoint has one,
 * the masked-LM head. Build it with `Esm2Model.random`, `fromPretrained` (pretrained.ts),
 * or from a parameter map (see weights.ts); `savePretrained` writes it back.
 */
export class Esm2Model {
  readonly config: EsmConfig;
  /** `[V, H]` token embeddings. */
  readonly wordEmbeddings: tf.Variable<tf.Rank.R2>;
  /** `[head_dim / 2]` rotary frequencies, from the checkpoint when it has them. */
  readonly invFreq: tf.Variable<tf.Rank.R1>;
  readonly layers: readonly EncoderLayer[];
  /** `esm.encoder.emb_layer_norm_after`, applied after the last layer. */
  readonly finalLayerNorm: LayerNorm;
  readonly classifierDense: Linear;
  readonly classifierOut: Linear;
  readonly lmHeadModule: LmHead | null;
  /** Checkpoint tensors we do not use but write back on save (`esm.contact_head.*`). */
  readonly passthrough = new Map<string, { shape: number[]; data: Float32Array }>();
  attention: AttentionImpl;
  /** How the weights were loaded (set by fromPretrained). */
  loadReport: LoadReport | undefined;
  /** The directory or Hub id the model came from (set by fromPretrained). */
  nameOrPath: string | undefined;
  private readonly variables = new Map<string, tf.Variable>();
  private readonly specs: ParamSpec[];
  private disposed = false;

  /**
   * Takes ownership of `params` (model layout, keyed by Hugging Face name; see
   * `parameterSpecs`): each becomes a tf.Variable sharing the tensor's data.
   */
  constructor(
    config: EsmConfig,
    params: Map<string, tf.Tensor>,
    options: Esm2ModelOptions & { lmHead?: boolean } = {},
  ) {
    this.config = config;
    this.attention = options.attention ?? "auto";
    const lmHead = options.lmHead ?? [...params.keys()].some(isLmHead);
    this.specs = parameterSpecs(config, { lmHead });
    const problems: string[] = [];
    for (const spec of this.specs) {
      const t = params.get(spec.key);
      const expected = spec.linear ? [spec.shape[1]!, spec.shape[0]!] : spec.shape;
      if (!t || !tf.util.arraysEqual(t.shape, expected)) {
        problems.push(`${spec.key}: expected [${expected}], got ${t ? `[${t.shape}]` : "nothing"}`);
      }
    }
    if (problems.length > 0) {
      for (const t of params.values()) t.dispose();
      throw new WeightsError(
        `Parameters do not fit the config (model layout, Linear weights [in, out]): ${problems.join("; ")}`,
        { problems },
      );
    }
    for (const spec of this.specs) {
      const t = params.get(spec.key)!;
      this.variables.set(spec.key, tf.variable(t, spec.trainable));
      t.dispose();
    }
    for (const [key, t] of params) if (!this.variables.has(key)) t.dispose(); // not ours
    const v1 = (k: string) => this.variables.get(k) as tf.Variable<tf.Rank.R1>;
    const v2 = (k: string) => this.variables.get(k) as tf.Variable<tf.Rank.R2>;
    const lin = (name: string, bias = true) =>
      new Linear(name, v2(`${name}.weight`), bias ? v1(`${name}.bias`) : null);
    const ln = (name: string) =>
      new LayerNorm(name, v1(`${name}.weight`), v1(`${name}.bias`), config.layerNormEps);
    this.wordEmbeddings = v2(EMBEDDING);
    this.invFreq = v1(INV_FREQ_KEY);
    this.layers = Array.from({ length: config.numHiddenLayers }, (_, i) => {
      const p = layerPrefix(i);
      return {
        attnNorm: ln(`${p}${LAYER.attnNorm}`),
        query: lin(`${p}${LAYER.query}`),
        key: lin(`${p}${LAYER.key}`),
        value: lin(`${p}${LAYER.value}`),
        attnOut: lin(`${p}${LAYER.attnOut}`),
        ffnNorm: ln(`${p}${LAYER.ffnNorm}`),
        ffnIn: lin(`${p}${LAYER.ffnIn}`),
        ffnOut: lin(`${p}${LAYER.ffnOut}`),
      };
    });
    this.finalLayerNorm = ln(FINAL_NORM);
    this.classifierDense = lin(CLASSIFIER.dense);
    this.classifierOut = lin(CLASSIFIER.outProj);
    this.lmHeadModule = lmHead
      ? {
          dense: lin(LM_HEAD.dense),
          layerNorm: ln(LM_HEAD.layerNorm),
          decoder: config.tieWordEmbeddings ? null : lin(LM_HEAD.decoder, false),
          bias: v1(LM_HEAD.bias),
        }
      : null;
  }

  /** A model with freshly initialised weights (as transformers initialises them). */
  static random(
    config: EsmConfig,
    options: Esm2ModelOptions & { seed?: number; lmHead?: boolean } = {},
  ): Esm2Model {
    const rng = new SeededRandom(options.seed ?? 0);
    const params = new Map<string, tf.Tensor>();
    for (const spec of parameterSpecs(config, { lmHead: options.lmHead ?? false })) {
      params.set(spec.key, toModelTensor(spec, initialValues(spec, config, rng)));
    }
    return new Esm2Model(config, params, options);
  }

  /** The parameter table of this model (Hugging Face keys and layouts). */
  parameterSpecs(): readonly ParamSpec[] {
    return this.specs;
  }

  /** Every tensor by Hugging Face key; `.trainable` on each says whether it trains. */
  namedVariables(): Map<string, tf.Variable> {
    this.checkAlive();
    return new Map(this.variables);
  }

  /** Every Linear by Hugging Face module name (the targets a LoRA adapter wraps). */
  namedLinears(): Map<string, Linear> {
    const out = new Map<string, Linear>();
    for (const l of this.layers) {
      for (const m of [l.query, l.key, l.value, l.attnOut, l.ffnIn, l.ffnOut]) out.set(m.name, m);
    }
    out.set(this.classifierDense.name, this.classifierDense);
    out.set(this.classifierOut.name, this.classifierOut);
    if (this.lmHeadModule) {
      out.set(this.lmHeadModule.dense.name, this.lmHeadModule.dense);
      if (this.lmHeadModule.decoder)
        out.set(this.lmHeadModule.decoder.name, this.lmHeadModule.decoder);
    }
    return out;
  }

  /** Number of values held (buffers such as inv_freq excluded), optionally trainable only. */
  parameterCount(options: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const [key, v] of this.variables) {
      if (key === INV_FREQ_KEY || (options.trainableOnly && !v.trainable)) continue;
      n += v.size;
    }
    return n;
  }

  get hasLmHead(): boolean {
    return this.lmHeadModule !== null;
  }

  // ---- forward, in pieces ----

  /** Embeddings with ESM token dropout, padding zeroed: ids `[B, L]` -> `[B, L, H]`. */
  embed(inputIds: tf.Tensor2D, attentionMask?: tf.Tensor2D): tf.Tensor3D {
    this.checkAlive();
    return tf.tidy(() => {
      const [B, L] = inputIds.shape;
      const H = this.config.hiddenSize;
      const ids = inputIds.dtype === "int32" ? inputIds : tf.cast(inputIds, "int32");
      const m = (
        attentionMask ? tf.cast(attentionMask, "float32") : tf.ones([B, L])
      ) as tf.Tensor2D; // [B, L]
      const e = tf.gather(this.wordEmbeddings, tf.reshape(ids, [B * L])); // [B*L, H]
      let rowScale: tf.Tensor2D = m; // [B, L]
      const maskId = this.config.maskTokenId;
      if (this.config.tokenDropout && maskId !== null) {
        // Masked positions are zeroed as if dropped; the rest rescaled by
        // (1 - 0.15 * 0.8) / (1 - observed mask ratio), per row, in train and eval.
        const isMask = tf.cast(tf.equal(ids, maskId), "float32"); // [B, L]
        const ratio = tf.div(tf.sum(isMask, 1, true), tf.sum(m, 1, true)); // [B, 1]
        const scale = tf.div(1 - 0.15 * 0.8, tf.sub(1, ratio)); // [B, 1]
        rowScale = tf.mul(tf.mul(tf.sub(1, isMask), scale), m);
      }
      return tf.reshape(tf.mul(e, tf.reshape(rowScale, [B * L, 1])), [B, L, H]);
    });
  }

  /** `[B, L]` 0/1 mask -> additive `[B, 1, 1, L]`: 0 for tokens, float32 min for padding. */
  additiveMask(attentionMask: tf.Tensor2D): tf.Tensor4D {
    return tf.tidy(() => {
      const [B, L] = attentionMask.shape;
      const m = tf.cast(attentionMask, "float32");
      return tf.reshape(tf.mul(tf.sub(1, m), MASK_VALUE), [B, 1, 1, L]);
    });
  }

  /** Rotary tables for positions 0..L-1: cos and sin `[L, head_dim]`. */
  rotary(seqLen: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    return tf.tidy(() => {
      const pos = tf.reshape(tf.range(0, seqLen, 1, "float32"), [seqLen, 1]); // [L, 1]
      const freqs = tf.mul(pos, tf.reshape(this.invFreq, [1, -1])); // [L, hd/2]
      const emb = tf.concat([freqs, freqs], 1); // [L, hd]
      return { cos: tf.cos(emb) as tf.Tensor2D, sin: tf.sin(emb) as tf.Tensor2D };
    });
  }

  /**
   * Encoder layer `i`: `[B, L, H] -> [B, L, H]`. `additiveMask` from `additiveMask()`;
   * `rope` from `rotary(L)` (computed when omitted).
   */
  layer(
    i: number,
    hidden: tf.Tensor3D,
    additiveMask: tf.Tensor4D,
    rope?: { cos: tf.Tensor2D; sin: tf.Tensor2D },
  ): tf.Tensor3D {
    this.checkAlive();
    const blk = this.layers[i];
    if (!blk) {
      throw new ConfigError(
        `Layer ${i} does not exist; the model has ${this.layers.length} layers`,
        {
          layer: i,
        },
      );
    }
    return tf.tidy(() => {
      const [B, L, H] = hidden.shape;
      const nh = this.config.numAttentionHeads;
      const hd = H / nh;
      const { cos, sin } = rope ?? this.rotary(L);
      const cos4 = tf.reshape(cos, [1, L, 1, hd]);
      const sin4 = tf.reshape(sin, [1, L, 1, hd]);
      const rotate = (x: tf.Tensor4D): tf.Tensor4D => {
        // x*cos + rotate_half(x)*sin, rotate_half(x) = [-x2, x1] (halves, not interleaved)
        const [x1, x2] = tf.split(x, 2, 3); // [B, L, nh, hd/2] each
        const rot = tf.concat([tf.neg(x2), x1], 3); // [B, L, nh, hd]
        return tf.add(tf.mul(x, cos4), tf.mul(rot, sin4));
      };

      const h = tf.reshape(hidden, [B * L, H]) as tf.Tensor2D; // [B*L, H]
      const x = blk.attnNorm.apply(h);
      // ESM scales the query before the rotation (not the scores).
      const q = tf.mul(blk.query.apply(x), hd ** -0.5); // [B*L, H]
      const k = blk.key.apply(x);
      const v = blk.value.apply(x);
      const q4 = rotate(tf.reshape(q, [B, L, nh, hd]));
      const k4 = rotate(tf.reshape(k, [B, L, nh, hd]));
      const qh = tf.transpose(q4, [0, 2, 1, 3]) as tf.Tensor4D; // [B, nh, L, hd]
      const kT = tf.transpose(k4, [0, 2, 3, 1]) as tf.Tensor4D; // [B, nh, hd, L]
      const vh = tf.transpose(tf.reshape(v, [B, L, nh, hd]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, nh, L, hd]
      const ctx = this.attend(qh, kT, vh, additiveMask); // [B, nh, L, hd]
      const ctx2 = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [B * L, H]) as tf.Tensor2D; // [B*L, H]
      const h1 = tf.add(h, blk.attnOut.apply(ctx2)) as tf.Tensor2D; // [B*L, H]

      const y = blk.ffnIn.apply(blk.ffnNorm.apply(h1)); // [B*L, I]
      const h2 = tf.add(h1, blk.ffnOut.apply(gelu(y))); // [B*L, H]
      return tf.reshape(h2, [B, L, H]);
    });
  }

  /**
   * softmax(q kT + mask) v. Two equivalent paths, timed on wasm (TF.js 4.22, this
   * project's 2-core machine, best of 9; per-head = unstack, 2-D matMul/softmax/matMul
   * per (sequence, head), stack):
   *
   *   [B, nh, L, hd]     batched   per-head
   *   [8, 20, 512, 16]   1462 ms    420 ms
   *   [8, 20, 256, 16]    379 ms    208 ms
   *   [8, 20, 128, 16]     87 ms     90 ms
   *   [8, 20,  64, 16]     23 ms     49 ms
   *   [1, 20, 256, 64]    162 ms     32 ms
   *
   * 2-D matmuls take wasm's fast kernel but pay per-op overhead (the unstack/stack
   * copies included). Whole 8M forward passes on an idle machine decided the cut:
   * 8 x 256 batched 3.6 s vs per-head 4.9 s; 8 x 512 batched 11.4 s vs per-head 10.0 s;
   * 1 x 400 batched 1.0 s vs per-head 0.5 s; 16 x 400 batched 16.7 s vs per-head 25.7 s
   * (unstacking many heads costs more than it saves). So "auto" uses per-head for
   * sequences of 256+ tokens when there are at most 64 (sequence, head) pairs. Per-head also never holds
   * the whole `[B, nh, L, L]` score tensor (168 MB at 8 x 512 for the 8M model).
   * A whole 8M-model layer at 8 x 512 (machine under load from other jobs): per-head
   * 1.5-1.9 s, batched 1.9-2.3 s. The cpu backend was slower on both, per-head
   * slightly ahead (attention alone at [8, 20, 512, 16]: 16.1 s vs 21.8 s).
   */
  private attend(
    qh: tf.Tensor4D,
    kT: tf.Tensor4D,
    vh: tf.Tensor4D,
    additiveMask: tf.Tensor4D,
  ): tf.Tensor4D {
    const [B, nh, L, hd] = qh.shape;
    const perHead =
      this.attention === "per-head" ||
      (this.attention === "auto" && L >= PER_HEAD_MIN_LENGTH && B * nh <= PER_HEAD_MAX_HEADS);
    // Under a gradient tape, always the batched path: its hand-written backward pass is
    // far faster than differentiating the per-head graph (see fast-grad.ts).
    if (!perHead || recordingGradients()) return attention(qh, kT, vh, additiveMask);
    const qs = tf.unstack(tf.reshape(qh, [B * nh, L, hd])) as tf.Tensor2D[]; // [L, hd] each
    const ks = tf.unstack(tf.reshape(kT, [B * nh, hd, L])) as tf.Tensor2D[]; // [hd, L] each
    const vs = tf.unstack(tf.reshape(vh, [B * nh, L, hd])) as tf.Tensor2D[]; // [L, hd] each
    const masks = tf.unstack(tf.reshape(additiveMask, [B, 1, L])) as tf.Tensor2D[]; // [1, L] each
    const outs = qs.map((q, j) =>
      tf.tidy(() => {
        const scores = tf.add(tf.matMul(q, ks[j]!), masks[Math.floor(j / nh)]!); // [L, L]
        return tf.matMul(tf.softmax(scores), vs[j]!); // [L, hd]
      }),
    );
    return tf.reshape(tf.stack(outs), [B, nh, L, hd]);
  }

  /** The encoder's final LayerNorm: `[B, L, H] -> [B, L, H]`. */
  finalNorm(hidden: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const [B, L, H] = hidden.shape;
      return tf.reshape(this.finalLayerNorm.apply(tf.reshape(hidden, [B * L, H])), [B, L, H]);
    });
  }

  /** Classification head on `<cls>` (position 0): `out_proj(tanh(dense(x)))`, `[B, n]`. */
  classify(hidden: tf.Tensor3D): tf.Tensor2D {
    this.checkAlive();
    return tf.tidy(() => {
      const [B, , H] = hidden.shape;
      const cls = tf.reshape(tf.slice(hidden, [0, 0, 0], [B, 1, H]), [B, H]) as tf.Tensor2D; // [B, H]
      return this.classifierOut.apply(tf.tanh(this.classifierDense.apply(cls))); // [B, n]
    });
  }

  /** Masked-LM head: `decoder(LN(gelu(dense(x)))) + bias`, `[B, L, H] -> [B, L, V]`. */
  lmHead(hidden: tf.Tensor3D): tf.Tensor3D {
    this.checkAlive();
    const head = this.lmHeadModule;
    if (!head) {
      throw new ConfigError(
        "This model has no masked-LM head: its checkpoint had no lm_head.* weights (Hub facebook/esm2_* checkpoints have one; classification checkpoints may not)",
        {},
      );
    }
    return tf.tidy(() => {
      const [B, L, H] = hidden.shape;
      const V = this.config.vocabSize;
      const x = head.layerNorm.apply(
        gelu(head.dense.apply(tf.reshape(hidden, [B * L, H]) as tf.Tensor2D)),
      );
      const logits = head.decoder
        ? head.decoder.apply(x)
        : tf.matMul(x, tf.transpose(this.wordEmbeddings)); // tied: [B*L, H] x [H, V]
      return tf.reshape(tf.add(logits, head.bias), [B, L, V]);
    });
  }

  // ---- convenience ----

  /** embed -> every layer -> final LayerNorm: the last hidden state `[B, L, H]`. */
  encode(inputIds: tf.Tensor2D, attentionMask?: tf.Tensor2D): tf.Tensor3D {
    this.checkAlive();
    return tf.tidy(() => {
      const [B, L] = inputIds.shape;
      const mask = attentionMask ?? (tf.ones([B, L], "int32") as tf.Tensor2D);
      let h = this.embed(inputIds, mask);
      const add = this.additiveMask(mask);
      const rope = this.rotary(L);
      for (let i = 0; i < this.layers.length; i++) {
        const next = this.layer(i, h, add, rope);
        h.dispose();
        h = next;
      }
      return this.finalNorm(h);
    });
  }

  /** Last hidden state and classification logits. */
  forward(inputs: EsmInputs): EsmOutputs {
    return tf.tidy(() => {
      const { ids, mask } = this.prepare(inputs);
      const lastHiddenState = this.encode(ids, mask);
      return { lastHiddenState, logits: this.classify(lastHiddenState) };
    });
  }

  /** Masked-LM logits `[B, L, V]` (needs the LM head). */
  maskedLmLogits(inputs: EsmInputs): tf.Tensor3D {
    return tf.tidy(() => {
      const { ids, mask } = this.prepare(inputs);
      return this.lmHead(this.encode(ids, mask));
    });
  }

  /** One vector per sequence `[B, H]` from the last hidden state (see `Pooling`). */
  pooledEmbedding(inputs: EsmInputs, options: { pooling?: Pooling } = {}): tf.Tensor2D {
    const pooling = options.pooling ?? "mean";
    if (!["mean", "mean-residues", "cls"].includes(pooling)) {
      throw new ConfigError(
        `Unknown pooling "${pooling}"; expected one of: mean, mean-residues, cls`,
        {
          pooling,
        },
      );
    }
    return tf.tidy(() => {
      const { ids, mask } = this.prepare(inputs);
      const h = this.encode(ids, mask); // [B, L, H]
      const [B, L, H] = h.shape;
      if (pooling === "cls") return tf.reshape(tf.slice(h, [0, 0, 0], [B, 1, H]), [B, H]);
      let w = tf.cast(mask, "float32"); // [B, L]
      if (pooling === "mean-residues") {
        // Residues only: drop <cls> at position 0 and the <eos> after the last token.
        const special = [0, this.config.eosTokenId ?? -1, this.config.padTokenId];
        for (const id of special) w = tf.mul(w, tf.cast(tf.notEqual(ids, id), "float32"));
        const count = tf.sum(w, 1, true);
        // An empty sequence has no residues: fall back to its <cls>/<eos> mean.
        w = tf.where(tf.equal(count, 0), tf.cast(mask, "float32"), w) as tf.Tensor2D;
      }
      const sum = tf.sum(tf.mul(h, tf.reshape(w, [B, L, 1])), 1); // [B, H]
      return tf.div(sum, tf.sum(w, 1, true)) as tf.Tensor2D;
    });
  }

  /** Frees every variable; the model cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private checkAlive(): void {
    if (this.disposed) throw new ConfigError("This Esm2Model has been disposed", {});
  }

  /** Inputs as int32 ids and a float mask, validated (call inside tf.tidy). */
  private prepare(inputs: EsmInputs): { ids: tf.Tensor2D; mask: tf.Tensor2D } {
    const V = this.config.vocabSize;
    const ids = Array.isArray(inputs.inputIds)
      ? tf.tensor2d(checkRows(inputs.inputIds, "inputIds", V), undefined, "int32")
      : inputs.inputIds;
    if (ids.rank !== 2) {
      throw new DataError(`inputIds must be [batch, length], got shape [${ids.shape}]`, {
        shape: ids.shape,
      });
    }
    const rawMask = inputs.attentionMask;
    const mask =
      rawMask === undefined
        ? (tf.ones(ids.shape, "float32") as tf.Tensor2D)
        : Array.isArray(rawMask)
          ? tf.tensor2d(checkRows(rawMask, "attentionMask"), undefined, "float32")
          : rawMask;
    if (!tf.util.arraysEqual(mask.shape, ids.shape)) {
      throw new DataError(
        `attentionMask shape [${mask.shape}] differs from inputIds shape [${ids.shape}]`,
        { maskShape: mask.shape, idsShape: ids.shape },
      );
    }
    return { ids: ids.dtype === "int32" ? ids : tf.cast(ids, "int32"), mask };
  }
}

function checkRows(rows: number[][], what: string, vocabSize?: number): number[][] {
  if (rows.length === 0) throw new DataError(`${what} is empty: expected at least one row`, {});
  const L = rows[0]!.length;
  rows.forEach((r, i) => {
    if (!Array.isArray(r) || r.length !== L) {
      throw new DataError(
        `${what} row ${i} has ${Array.isArray(r) ? r.length : "no"} entries, row 0 has ${L}: pad rows to one length (the tokenizer's padding option does)`,
        { row: i },
      );
    }
    if (vocabSize !== undefined) {
      const bad = r.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
      if (bad >= 0) {
        throw new DataError(
          `${what}[${i}][${bad}] = ${r[bad]} is not a token id; expected an integer in [0, ${vocabSize})`,
          { row: i, column: bad, value: r[bad] },
        );
      }
    }
  });
  return rows;
}
