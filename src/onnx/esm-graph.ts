/**
 * ESM-2 as ONNX graphs for onnxruntime: the forward pass (the same maths as esm2.ts)
 * and, for training, a hand-written backward pass producing the gradients of the
 * trainable tensors (LoRA A/B, full Linear weights, LayerNorm weights, the classifier).
 *
 * Every weight is a graph INPUT, held by the caller in esmkit's layout (Linear weights
 * `[in, out]`, LoRA `A^T [in, r]` and `B^T [r, out]`), so one graph serves every
 * checkpoint of a shape, holds no copy of the weights, and gradients come out in the
 * layout of the tfjs variables. Per-batch tables are computed in JavaScript and fed
 * too: the additive attention mask `[B, 1, 1, L]`, the rotary cos/sin `[L, 1, hd]`,
 * the token-dropout row scale `[B, L, 1]`, LoRA dropout masks and the loss weights.
 *
 * The export (src/export/) uses the same pieces for a self-contained model: its weights
 * bound as initializers (GraphBuilder.bindInputs) and, with `tokenInputs`, int64 token
 * inputs from which the graph computes those tables itself. The engine binds the int8
 * codes of a quantized base the same way (`ModulePlan.int8`, `GraphPlan.int8Kernel`).
 *
 * int8 Linear (frozen): y = DQMM(x, Q^T, s) + b, dx = DQMM(dy * s, Q, 1), with Q the
 * `[out, in]` codes, s the per-output scales and DQMM DynamicQuantizeMatMul (quantize.ts).
 *
 * Backward formulas (row-major, N = B * L rows):
 *   Linear  y = x W + b:      dx = dy W^T, dW = x^T dy, db = colsum(dy)
 *   LoRA    y += s (m*x) A B: dB = s (m x A)^T dy, dA = s (m x)^T (dy B^T), dx += m * s dy B^T A^T
 *   LayerNorm (xh = normalised x, r = 1/std): dx = r (g - mean(g) - xh mean(g xh)), g = dy w
 *   GELU (erf): dy = dg (Phi(y) + y phi(y))
 *   attention (P = softmax): dV = P^T dC, dP = dC V^T, dS = P (dP - rowsum(dP P)),
 *                            dQ = dS K, dK = dS^T Q
 *   rotary  y = x cos + rot(x) sin, rot([a, b]) = [-b, a]: dx = dy cos - rot(dy sin)
 *   loss, by problem type (W, P fed per batch; see task-feeds.ts taskLossFeeds):
 *     cross-entropy  -sum(W log_softmax(z)), W = weighted one-hot rows: dz = softmax(z) rowsum(W) - W
 *     BCE-with-logits sum(W softplus(z) - P z): dz = W sigmoid(z) - P
 *                    (W = (p y + 1 - y) s / (B C), P = p y s / (B C); p = pos_weight, s = loss scale)
 *     MSE            sum(W (z - T)^2): dz = 2 W (z - T)   (W = s / (B C), T = targets)
 */

import { loraKeys } from "../lora/lora";
import {
  EMBEDDING,
  FINAL_NORM,
  headLinears,
  INV_FREQ_KEY,
  isClassifier,
  LAYER,
  type LinearModule,
  type LinearRole,
  layerLinear,
  layerPrefix,
} from "../model/architecture";
import type { EsmConfig } from "../model/config";
import { MASK_VALUE } from "../model/esm2";
import { floatAttr, GraphBuilder, MS_DOMAIN } from "./graph";
import { DType } from "./proto";
import {
  int8BackwardMatMul,
  int8DynamicMatMul,
  int8MatMul,
  int8ScaleName,
  int8WeightName,
  int8WeightTName,
} from "./quantize";

/** How one Linear module takes part: trained fully, adapted by LoRA, or frozen. */
export interface ModulePlan {
  hasBias: boolean;
  /** Weight and bias get gradients. */
  trainable: boolean;
  /** A LoRA side path; `dropout` true when a mask input multiplies its input. */
  lora: { scaling: number; rank: number; dropout: boolean } | null;
  /**
   * The weight is int8 (inputs `<module>.weight_int8` `[in, out]` and
   * `<module>.weight_scale` `[out]`, see quantize.ts; for a backward pass also
   * `<module>.weight_int8_t` `[out, in]`). Frozen modules only.
   */
  int8?: boolean;
}

/**
 * Token inputs as tokenizers give them, for a self-contained model (the export): int64
 * `input_ids` and `attention_mask` `[batch_size, sequence_length]`, with the
 * per-batch tables (token-dropout scale, additive mask, rotary cos/sin) computed in the
 * graph from them and the rotary frequencies (input `esm.rotary_embeddings.inv_freq`).
 */
export interface TokenInputs {
  /**
   * Put `<eos>` back at the end of a row that a tokenizer cut at `maxLength` tokens
   * after adding `<cls>`/`<eos>` (transformers.js does: `[<cls>, r1 .. r(max-1)]`), so
   * the model sees what esmkit's tokenizer gives, `[<cls>, r1 .. r(max-2), <eos>]`. Only
   * rows of exactly `maxLength` real tokens that start with `clsId` and do not end with
   * `eosId` change.
   */
  restoreEos?: { maxLength: number; clsId: number; eosId: number };
}

export interface EsmGraphOptions {
  /** int64 token inputs and tables computed in the graph (default: tables fed, see IN). */
  tokenInputs?: TokenInputs;
}

/** Which tensors a graph computes gradients for and which modules carry LoRA. */
export interface GraphPlan {
  config: EsmConfig;
  /** By module name (e.g. `esm.encoder.layer.0.attention.self.query`, `classifier.dense`). */
  modules: ReadonlyMap<string, ModulePlan>;
  /** LayerNorm module names whose weight and bias train. */
  trainableNorms: ReadonlySet<string>;
  /** Attention runs over the heads in this many groups (default 1: all at once). */
  headGroups?: number;
  /**
   * The kernel of int8 modules: "MatMulInteger" (default: standard-domain ops, what the
   * export writes) or "DynamicQuantizeMatMul" (com.microsoft, the engine's; it also has
   * a backward pass).
   */
  int8Kernel?: "MatMulInteger" | "DynamicQuantizeMatMul";
  /** The loss of training graphs (default cross-entropy: single-label classification). */
  loss?: LossKind;
  /**
   * Graphs without a backward pass (the engine's inference): `layerForward` uses
   * onnxruntime's fused CPU kernels (com.microsoft RotaryEmbedding, MultiHeadAttention,
   * Gelu) and, when query, key and value are all int8 with DynamicQuantizeMatMul, one
   * matmul for the three (the activations quantized once). Not for the export, which
   * keeps standard-domain ops.
   */
  fused?: boolean;
}

/** The loss a training graph ends with, one per problem type. */
export type LossKind = "cross_entropy" | "bce_with_logits" | "mse";

/** Input names of per-batch tables. */
export const IN = {
  ids: "input_ids",
  rowScale: "row_scale",
  addMask: "additive_mask",
  cos: "rope_cos",
  sin: "rope_sin",
  lossWeights: "loss_weights",
  lossTargets: "loss_targets",
  hidden: "hidden",
  dHidden: "d_hidden",
  backward: "backward",
} as const;

/** The attention mask input of token-input graphs (EsmGraphOptions.tokenInputs). */
export const TOKEN_MASK = "attention_mask";

export const OUT = {
  logits: "logits",
  lastHidden: "last_hidden_state",
  loss: "loss",
  hidden: "hidden_out",
  dHidden: "d_hidden_in",
} as const;

/** The input name of a LoRA dropout mask. */
export function dropoutMaskName(module: string): string {
  return `${module}.lora_dropout_mask`;
}

/** The output name of a gradient. */
export function gradName(param: string): string {
  return `grad:${param}`;
}

interface LinearSaved {
  x: string;
  inF: number;
  outF: number;
  /** LoRA input after dropout, and its A projection. */
  u?: string;
  a?: string;
}

interface NormSaved {
  x: string;
  mean: string;
  rstd: string;
}

interface LayerSaved {
  h: string;
  n1: NormSaved;
  q: LinearSaved;
  k: LinearSaved;
  v: LinearSaved;
  /** Per head `[B, 1, L, hd]` / `[B, 1, L, L]`. */
  qh: string[];
  kh: string[];
  vh: string[];
  p: string[];
  o: LinearSaved;
  h1: string;
  n2: NormSaved;
  fi: LinearSaved;
  y: string;
  erf: string;
  fo: LinearSaved;
}

/**
 * Builds ESM-2 pieces into one GraphBuilder. `names(key)` maps a parameter key (full
 * Hugging Face name) to the graph's input name; per-layer graphs map
 * `esm.encoder.layer.i.` to `layer.` so one graph serves every layer.
 */
export class EsmGraph {
  readonly g: GraphBuilder;
  private readonly H: number;
  private readonly nh: number;
  private readonly hd: number;
  private readonly eps: number;
  private shapes?: { b: string; l: string; bl: string; blnh: string; blh: string };
  private tables?: { ids: string; rowScale: string; addMask: string; cos: string; sin: string };
  readonly grads = new Map<string, string>();

  constructor(
    graph: string | GraphBuilder,
    readonly plan: GraphPlan,
    readonly names: (key: string) => string = (k) => k,
    readonly options: EsmGraphOptions = {},
  ) {
    this.g = typeof graph === "string" ? new GraphBuilder(graph) : graph;
    const c = plan.config;
    this.H = c.hiddenSize;
    this.nh = c.numAttentionHeads;
    this.hd = c.hiddenSize / c.numAttentionHeads;
    this.eps = c.layerNormEps;
  }

  // ---- inputs ----

  addMask(): string {
    if (this.options.tokenInputs) return this.tokenTables().addMask;
    return this.g.input(IN.addMask, "float", ["B", 1, 1, "L"]);
  }

  private rope(): { cos: string; sin: string } {
    if (this.options.tokenInputs) return this.tokenTables();
    return {
      cos: this.g.input(IN.cos, "float", ["L", 1, this.hd]),
      sin: this.g.input(IN.sin, "float", ["L", 1, this.hd]),
    };
  }

  /**
   * The per-batch tables from int64 `input_ids` / `attention_mask`, the same float32
   * maths the engine does in JavaScript (engine.ts `tables`) and esm2.ts does in tfjs.
   */
  private tokenTables() {
    if (this.tables) return this.tables;
    const g = this.g;
    const c = this.plan.config;
    const dims = ["batch_size", "sequence_length"];
    const inIds = g.input(IN.ids, "int64", dims);
    const inMask = g.input(TOKEN_MASK, "int64", dims);
    const scalar = (v: number) => g.i64([v], []);
    const m = g.op("Cast", [inMask], { to: DType.float }); // [B, L]
    const len = g.op("ReduceSum", [m, g.i64([1])], { keepdims: 1 }); // [B, 1]
    const L = g.op("Gather", [g.op("Shape", [inIds]), scalar(1)], { axis: 0 });
    const pos = g.op("Range", [scalar(0), L, scalar(1)]); // [L] int64
    let ids = inIds;
    const fix = this.options.tokenInputs?.restoreEos;
    if (fix) {
      const last = g.op("Cast", [g.op("Sub", [len, g.f32([1])])], { to: DType.int64 }); // [B, 1]
      const lastTok = g.op("GatherElements", [inIds, last], { axis: 1 }); // [B, 1]
      const firstTok = g.op("Slice", [inIds, g.i64([0]), g.i64([1]), g.i64([1])]); // [B, 1]
      const cut = g.op("And", [
        g.op("And", [
          g.op("Equal", [len, g.f32([fix.maxLength])]),
          g.op("Not", [g.op("Equal", [lastTok, scalar(fix.eosId)])]),
        ]),
        g.op("Equal", [firstTok, scalar(fix.clsId)]),
      ]); // [B, 1]
      const atLast = g.op("Equal", [g.op("Unsqueeze", [pos, g.i64([0])]), last]); // [B, L]
      ids = g.op("Where", [g.op("And", [atLast, cut]), scalar(fix.eosId), inIds]);
    }
    // Token dropout: masked positions zeroed, the rest scaled by
    // (1 - 0.15 * 0.8) / (1 - masked / real) per row; padding zeroed.
    let rowScale = m;
    if (c.tokenDropout && c.maskTokenId !== null) {
      const isMask = g.op("Cast", [g.op("Equal", [ids, scalar(c.maskTokenId)])], {
        to: DType.float,
      });
      const ratio = g.op("Div", [g.op("ReduceSum", [isMask, g.i64([1])], { keepdims: 1 }), len]);
      const scale = g.op("Div", [g.f32([1 - 0.15 * 0.8]), g.op("Sub", [g.f32([1]), ratio])]);
      rowScale = g.op("Mul", [g.op("Mul", [g.op("Sub", [g.f32([1]), isMask]), scale]), m]);
    }
    const addMask = g.op("Mul", [g.op("Sub", [g.f32([1]), m]), g.f32([MASK_VALUE])]);
    // Rotary tables for positions 0..L-1: emb = [p * f, p * f], f = inv_freq.
    const posF = g.op("Cast", [pos], { to: DType.float });
    const invFreq = g.input(this.names(INV_FREQ_KEY), "float", [this.hd / 2]);
    const freqs = g.op("Mul", [g.op("Unsqueeze", [posF, g.i64([1])]), invFreq]); // [L, hd/2]
    const emb = g.op("Unsqueeze", [g.op("Concat", [freqs, freqs], { axis: -1 }), g.i64([1])]); // [L, 1, hd]
    this.tables = {
      ids,
      rowScale: g.op("Unsqueeze", [rowScale, g.i64([2])]), // [B, L, 1]
      addMask: g.op("Unsqueeze", [addMask, g.i64([1, 2])]), // [B, 1, 1, L]
      cos: g.op("Cos", [emb]),
      sin: g.op("Sin", [emb]),
    };
    return this.tables;
  }

  private dims() {
    if (!this.shapes) {
      const g = this.g;
      const m = g.op("Shape", [this.addMask()]);
      const b = g.op("Gather", [m, g.i64([0])], { axis: 0 });
      const l = g.op("Gather", [m, g.i64([3])], { axis: 0 });
      this.shapes = {
        b,
        l,
        bl: g.op("Concat", [b, l], { axis: 0 }),
        blnh: g.op("Concat", [b, l, g.i64([this.nh, this.hd])], { axis: 0 }),
        blh: g.op("Concat", [b, l, g.i64([this.H])], { axis: 0 }),
      };
    }
    return this.shapes;
  }

  private param(key: string, shape: (number | string)[]): string {
    return this.g.input(this.names(key), "float", shape);
  }

  private modulePlan(module: string): ModulePlan {
    const p = this.plan.modules.get(module);
    if (!p) throw new Error(`No plan for module ${module}`);
    return p;
  }

  // ---- building blocks ----

  private linear(m: LinearModule, x: string): { y: string; s: LinearSaved } {
    const g = this.g;
    const { name: module, inFeatures: inF, outFeatures: outF } = m;
    const p = this.modulePlan(module);
    let y: string;
    if (p.int8) {
      const wq = g.input(this.names(int8WeightName(module)), "int8", [inF, outF]);
      const scales = this.param(int8ScaleName(module), [outF]);
      const bias = p.hasBias ? this.param(`${module}.bias`, [outF]) : undefined;
      if (this.plan.int8Kernel === "DynamicQuantizeMatMul") {
        y = int8DynamicMatMul(g, x, wq, scales, bias);
      } else {
        y = int8MatMul(g, x, wq, scales);
        if (bias) y = g.op("Add", [y, bias]);
      }
    } else {
      const w = this.param(`${module}.weight`, [inF, outF]);
      const inputs = [x, w];
      if (p.hasBias) inputs.push(this.param(`${module}.bias`, [outF]));
      y = g.op("Gemm", inputs);
    }
    return this.loraSide(m, x, y);
  }

  /** Adds `m`'s LoRA side path (if it has one) to its base output `y`. */
  private loraSide(m: LinearModule, x: string, base: string): { y: string; s: LinearSaved } {
    const g = this.g;
    const { name: module, inFeatures: inF, outFeatures: outF } = m;
    const p = this.modulePlan(module);
    let y = base;
    const s: LinearSaved = { x, inF, outF };
    if (p.lora) {
      const r = p.lora.rank;
      const aT = this.param(loraKeys(module).a, [inF, r]);
      const bT = this.param(loraKeys(module).b, [r, outF]);
      const u = p.lora.dropout
        ? g.op("Mul", [
            x,
            g.input(this.names(dropoutMaskName(module)), "float", [
              isClassifier(module) ? "B" : "N",
              inF,
            ]),
          ])
        : x;
      const a = g.op("MatMul", [u, aT]);
      const side = g.op("Gemm", [a, bT], { alpha: floatAttr(p.lora.scaling) });
      y = g.op("Add", [y, side]);
      s.u = u;
      s.a = a;
    }
    return { y, s };
  }

  /** Backward through a Linear; records parameter gradients; returns dx (or null). */
  private linearBack(module: string, s: LinearSaved, dy: string, wantDx: boolean): string | null {
    const g = this.g;
    const p = this.modulePlan(module);
    let dx: string | null = null;
    if (p.int8) {
      if (p.trainable || this.plan.int8Kernel !== "DynamicQuantizeMatMul") {
        throw new Error(`No backward pass through the int8 weight of ${module} in this plan`);
      }
      if (wantDx) {
        const wqT = g.input(this.names(int8WeightTName(module)), "int8", [s.outF, s.inF]);
        dx = int8BackwardMatMul(g, dy, wqT, this.names(int8ScaleName(module)));
      }
    } else {
      const w = this.names(`${module}.weight`);
      if (p.trainable) {
        this.grad(`${module}.weight`, g.op("Gemm", [s.x, dy], { transA: 1 }));
        if (p.hasBias)
          this.grad(`${module}.bias`, g.op("ReduceSum", [dy, g.i64([0])], { keepdims: 0 }));
      }
      if (wantDx) dx = g.op("Gemm", [dy, w], { transB: 1 });
    }
    if (p.lora) {
      const keys = loraKeys(module);
      const aT = this.names(keys.a);
      const bT = this.names(keys.b);
      const alpha = { alpha: floatAttr(p.lora.scaling) };
      this.grad(keys.b, g.op("Gemm", [s.a!, dy], { transA: 1, ...alpha }));
      const da = g.op("Gemm", [dy, bT], { transB: 1, ...alpha }); // [N, r]
      this.grad(keys.a, g.op("Gemm", [s.u!, da], { transA: 1 }));
      if (wantDx) {
        let du = g.op("Gemm", [da, aT], { transB: 1 }); // [N, in]
        if (p.lora.dropout) du = g.op("Mul", [du, this.names(dropoutMaskName(module))]);
        dx = g.op("Add", [dx!, du]);
      }
    }
    return dx;
  }

  private norm(module: string, x: string): { y: string; s: NormSaved } {
    const w = this.param(`${module}.weight`, [this.H]);
    const b = this.param(`${module}.bias`, [this.H]);
    const [y, mean, rstd] = this.g.opN("LayerNormalization", [x, w, b], 3, {
      axis: -1,
      epsilon: floatAttr(this.eps),
    });
    return { y: y!, s: { x, mean: mean!, rstd: rstd! } };
  }

  private normBack(module: string, s: NormSaved, dy: string): string {
    const g = this.g;
    const w = this.names(`${module}.weight`);
    const xh = g.op("Mul", [g.op("Sub", [s.x, s.mean]), s.rstd]);
    if (this.plan.trainableNorms.has(module)) {
      const rows = g.i64([0]);
      this.grad(
        `${module}.weight`,
        g.op("ReduceSum", [g.op("Mul", [dy, xh]), rows], { keepdims: 0 }),
      );
      this.grad(`${module}.bias`, g.op("ReduceSum", [dy, rows], { keepdims: 0 }));
    }
    const gy = g.op("Mul", [dy, w]);
    const m1 = g.op("ReduceMean", [gy], { axes: [-1], keepdims: 1 });
    const m2 = g.op("ReduceMean", [g.op("Mul", [gy, xh])], { axes: [-1], keepdims: 1 });
    const inner = g.op("Sub", [g.op("Sub", [gy, m1]), g.op("Mul", [xh, m2])]);
    return g.op("Mul", [inner, s.rstd]);
  }

  private grad(key: string, value: string): void {
    const name = this.names(key);
    const prev = this.grads.get(name);
    this.grads.set(name, prev ? this.g.op("Add", [prev, value]) : value);
  }

  /** `[B, nh, L, x]` -> `headGroups` tensors `[B, nh / headGroups, L, x]`. */
  private heads(x: string): string[] {
    const n = this.plan.headGroups ?? 1;
    return n === 1 ? [x] : this.g.opN("Split", [x], n, { axis: 1 });
  }

  private joinHeads(parts: string[]): string {
    return parts.length === 1 ? parts[0]! : this.g.op("Concat", parts, { axis: 1 });
  }

  /** `[.., hd]` -> `[-b, a]` for halves `a`, `b` of the last axis. */
  private rotateHalf(x: string): string {
    const [a, b] = this.g.opN("Split", [x], 2, { axis: -1 });
    return this.g.op("Concat", [this.g.op("Neg", [b!]), a!], { axis: -1 });
  }

  // ---- the model ----

  /** ids `[B, L]` int32 -> `[N, H]` hidden rows (token-dropout scale and padding zeroing fed). */
  embed(): string {
    const g = this.g;
    const fed = !this.options.tokenInputs;
    const ids = fed ? g.input(IN.ids, "int32", ["B", "L"]) : this.tokenTables().ids;
    const rowScale = fed
      ? g.input(IN.rowScale, "float", ["B", "L", 1])
      : this.tokenTables().rowScale;
    const w = this.param(EMBEDDING, [this.plan.config.vocabSize, this.H]);
    const e = g.op("Mul", [g.op("Gather", [w, ids], { axis: 0 }), rowScale]);
    return g.op("Reshape", [e, g.i64([-1, this.H])]);
  }

  /** Encoder layer `i` on `[N, H]` rows. */
  layer(i: number, h: string): { out: string; s: LayerSaved } {
    const g = this.g;
    const P = layerPrefix(i);
    const H = this.H;
    const m = (role: LinearRole) => layerLinear(this.plan.config, i, role);
    const { cos, sin } = this.rope();
    const d = this.dims();
    const rotate = (x4: string) =>
      g.op("Add", [g.op("Mul", [x4, cos]), g.op("Mul", [this.rotateHalf(x4), sin])]);
    const n1 = this.norm(`${P}${LAYER.attnNorm}`, h);
    const q = this.linear(m("query"), n1.y);
    const k = this.linear(m("key"), n1.y);
    const v = this.linear(m("value"), n1.y);
    const heads = [0, 2, 1, 3];
    const qs = g.op("Mul", [q.y, g.f32([this.hd ** -0.5])]);
    const qh = g.op("Transpose", [rotate(g.op("Reshape", [qs, d.blnh]))], { perm: heads });
    const kh = g.op("Transpose", [rotate(g.op("Reshape", [k.y, d.blnh]))], { perm: heads });
    const vh = g.op("Transpose", [g.op("Reshape", [v.y, d.blnh])], { perm: heads });
    // Heads in `headGroups` groups: smaller score tensors at the cost of more ops.
    const qs1 = this.heads(qh);
    const ks1 = this.heads(kh);
    const vs1 = this.heads(vh);
    const ps = qs1.map((qj, j) => {
      const kT = g.op("Transpose", [ks1[j]!], { perm: [0, 1, 3, 2] });
      const scores = g.op("Add", [g.op("MatMul", [qj, kT]), this.addMask()]);
      return g.op("Softmax", [scores], { axis: -1 });
    });
    const c = this.joinHeads(ps.map((pj, j) => g.op("MatMul", [pj, vs1[j]!]))); // [B, nh, L, hd]
    const c2 = g.op("Reshape", [g.op("Transpose", [c], { perm: heads }), g.i64([-1, H])]);
    const o = this.linear(m("attnOut"), c2);
    const h1 = g.op("Add", [h, o.y]);
    const n2 = this.norm(`${P}${LAYER.ffnNorm}`, h1);
    const fi = this.linear(m("ffnIn"), n2.y);
    const erf = g.op("Erf", [g.op("Mul", [fi.y, g.f32([Math.SQRT1_2])])]);
    const gelu = g.op("Mul", [g.op("Mul", [fi.y, g.f32([0.5])]), g.op("Add", [erf, g.f32([1])])]);
    const fo = this.linear(m("ffnOut"), gelu);
    const out = g.op("Add", [h1, fo.y]);
    return {
      out,
      s: {
        h,
        n1: n1.s,
        q: q.s,
        k: k.s,
        v: v.s,
        qh: qs1,
        kh: ks1,
        vh: vs1,
        p: ps,
        o: o.s,
        h1,
        n2: n2.s,
        fi: fi.s,
        y: fi.y,
        erf,
        fo: fo.s,
      },
    };
  }

  /**
   * Encoder layer `i` on `[N, H]` rows for a graph with no backward pass: `layer`'s
   * maths, on onnxruntime's fused kernels when the plan says `fused` (see GraphPlan).
   */
  layerForward(i: number, h: string): string {
    if (!this.plan.fused) return this.layer(i, h).out;
    const g = this.g;
    const P = layerPrefix(i);
    const m = (role: LinearRole) => layerLinear(this.plan.config, i, role);
    const d = this.dims();
    const n1 = this.normForward(`${P}${LAYER.attnNorm}`, h);
    const [q, k, v] = this.queryKeyValue([m("query"), m("key"), m("value")], n1);
    const rows3 = (x: string) => g.op("Reshape", [x, d.blh]); // [B, L, H]
    const t = this.fusedTables();
    const rotate = (x: string) =>
      g.op(
        "RotaryEmbedding",
        [rows3(x), t.positions, t.cosCache, t.sinCache],
        { num_heads: this.nh, interleaved: 0 },
        MS_DOMAIN,
      );
    // One more dimension per query/key head carries the padding mask (see fusedTables).
    const widen = (x3: string, extra: string) =>
      g.op("Reshape", [
        g.op("Concat", [g.op("Reshape", [x3, d.blnh]), extra], { axis: 3 }),
        t.wide,
      ]);
    const context = g.op(
      "MultiHeadAttention",
      [widen(rotate(q), t.qExtra), widen(rotate(k), t.kExtra), rows3(v)],
      { num_heads: this.nh, scale: floatAttr(this.hd ** -0.5) },
      MS_DOMAIN,
    ); // [B, L, H]
    const o = this.linear(m("attnOut"), g.op("Reshape", [context, g.i64([-1, this.H])]));
    const h1 = g.op("Add", [h, o.y]);
    const n2 = this.normForward(`${P}${LAYER.ffnNorm}`, h1);
    const fi = this.linear(m("ffnIn"), n2);
    const gelu = g.op("Gelu", [fi.y], {}, MS_DOMAIN);
    const fo = this.linear(m("ffnOut"), gelu);
    return g.op("Add", [h1, fo.y]);
  }

  private fusedTab?: {
    cosCache: string;
    sinCache: string;
    positions: string;
    qExtra: string;
    kExtra: string;
    wide: string;
  };

  /**
   * What the fused kernels take, made once per graph from the tables: rotary caches
   * `[L, hd / 2]` (the first half of the `[L, 1, hd]` cos/sin tables: ESM-2 rotates
   * halves, RotaryEmbedding's `interleaved = 0`) and positions from 0 (`[1]`: an offset).
   * Padding: onnxruntime's CPU MultiHeadAttention runs its flash-attention kernel only
   * without a mask input, so the mask rides in one extra dimension of each query and key
   * head (`[B, L, nh, 1]`): 1 for every query, 0 for a real key and -1e9 for a padding
   * key. A real key's score is unchanged (an added 1 x 0); a padding key's is about -1e9
   * times the scale, whose softmax weight is exactly 0 in float32, as with the additive
   * mask. `wide` is the `[B, L, nh * (hd + 1)]` shape of the widened query and key.
   */
  private fusedTables() {
    if (this.fusedTab) return this.fusedTab;
    const g = this.g;
    const { cos, sin } = this.rope();
    const half = (t: string) =>
      g.op("Reshape", [
        g.op("Slice", [t, g.i64([0]), g.i64([this.hd / 2]), g.i64([2])]),
        g.i64([-1, this.hd / 2]),
      ]);
    const d = this.dims();
    const perHead = g.op("Concat", [d.b, d.l, g.i64([this.nh, 1])], { axis: 0 });
    const real = g.op("Equal", [
      g.op("Reshape", [this.addMask(), g.i64([0, -1, 1, 1])]),
      g.f32([0]),
    ]);
    this.fusedTab = {
      cosCache: half(cos),
      sinCache: half(sin),
      positions: g.i64([0]),
      qExtra: g.op("Expand", [g.f32([1]), perHead]),
      kExtra: g.op("Expand", [g.op("Where", [real, g.f32([0]), g.f32([-1e9])]), perHead]),
      wide: g.op("Concat", [d.b, d.l, g.i64([this.nh * (this.hd + 1)])], { axis: 0 }),
    };
    return this.fusedTab;
  }

  /** LayerNorm with only its output (graphs with no backward pass). */
  private normForward(module: string, x: string): string {
    const w = this.param(`${module}.weight`, [this.H]);
    const b = this.param(`${module}.bias`, [this.H]);
    return this.g.op("LayerNormalization", [x, w, b], { axis: -1, epsilon: floatAttr(this.eps) });
  }

  /**
   * Query, key and value of one layer. When all three are int8 on DynamicQuantizeMatMul
   * with biases: one matmul on their codes side by side (`[in, 3 out]`; onnxruntime folds
   * the constant Concat at load), so the activations are quantized once, then split;
   * LoRA side paths are added per module after the split.
   */
  private queryKeyValue(ms: LinearModule[], x: string): string[] {
    const g = this.g;
    const plans = ms.map((m) => this.modulePlan(m.name));
    const fuse =
      this.plan.int8Kernel === "DynamicQuantizeMatMul" &&
      plans.every((p) => p.int8 && p.hasBias) &&
      ms.every((m) => m.inFeatures === ms[0]!.inFeatures);
    if (!fuse) return ms.map((m) => this.linear(m, x).y);
    const codes: string[] = [];
    const scales: string[] = [];
    const biases: string[] = [];
    for (const m of ms) {
      // Codes then scales per module: the engine quantizes each module once for both.
      codes.push(
        g.input(this.names(int8WeightName(m.name)), "int8", [m.inFeatures, m.outFeatures]),
      );
      scales.push(this.param(int8ScaleName(m.name), [m.outFeatures]));
      biases.push(this.param(`${m.name}.bias`, [m.outFeatures]));
    }
    const y = int8DynamicMatMul(
      g,
      x,
      g.op("Concat", codes, { axis: 1 }),
      g.op("Concat", scales, { axis: 0 }),
      g.op("Concat", biases, { axis: 0 }),
    );
    const parts = g.opN("Split", [y, g.i64(ms.map((m) => m.outFeatures))], 3, { axis: -1 });
    return ms.map((m, j) => this.loraSide(m, x, parts[j]!).y);
  }

  /** Backward through layer `i`: `dOut [N, H]` -> `dh [N, H]`, recording gradients. */
  layerBack(i: number, s: LayerSaved, dOut: string): string {
    const g = this.g;
    const P = layerPrefix(i);
    const { cos, sin } = this.rope();
    const d = this.dims();
    const heads = [0, 2, 1, 3];
    const swap = [0, 1, 3, 2];
    // FFN
    const dgelu = this.linearBack(`${P}${LAYER.ffnOut}`, s.fo, dOut, true)!;
    const pdf = g.op("Mul", [
      g.op("Exp", [g.op("Mul", [g.op("Mul", [s.y, s.y]), g.f32([-0.5])])]),
      g.f32([1 / Math.sqrt(2 * Math.PI)]),
    ]);
    const dgeluDy = g.op("Add", [
      g.op("Mul", [g.op("Add", [s.erf, g.f32([1])]), g.f32([0.5])]),
      g.op("Mul", [s.y, pdf]),
    ]);
    const dy = g.op("Mul", [dgelu, dgeluDy]);
    const dn2 = this.linearBack(`${P}${LAYER.ffnIn}`, s.fi, dy, true)!;
    const dh1 = g.op("Add", [dOut, this.normBack(`${P}${LAYER.ffnNorm}`, s.n2, dn2)]);
    // attention
    const dc2 = this.linearBack(`${P}${LAYER.attnOut}`, s.o, dh1, true)!;
    const dC = g.op("Transpose", [g.op("Reshape", [dc2, d.blnh])], { perm: heads });
    const dCs = this.heads(dC);
    const dQs: string[] = [];
    const dKs: string[] = [];
    const dVs: string[] = [];
    dCs.forEach((dCj, j) => {
      const p = s.p[j]!;
      dVs.push(g.op("MatMul", [g.op("Transpose", [p], { perm: swap }), dCj]));
      const dP = g.op("MatMul", [dCj, g.op("Transpose", [s.vh[j]!], { perm: swap })]);
      const rowDot = g.op("ReduceSum", [g.op("Mul", [dP, p]), g.i64([-1])], { keepdims: 1 });
      const dS = g.op("Mul", [p, g.op("Sub", [dP, rowDot])]);
      dQs.push(g.op("MatMul", [dS, s.kh[j]!]));
      dKs.push(g.op("MatMul", [g.op("Transpose", [dS], { perm: swap }), s.qh[j]!]));
    });
    const dQ = this.joinHeads(dQs);
    const dK = this.joinHeads(dKs);
    const dV = this.joinHeads(dVs);
    const unrotate = (dh4: string) => {
      const x4 = g.op("Transpose", [dh4], { perm: heads }); // [B, L, nh, hd]
      const back = g.op("Sub", [g.op("Mul", [x4, cos]), this.rotateHalf(g.op("Mul", [x4, sin]))]);
      return g.op("Reshape", [back, g.i64([-1, this.H])]);
    };
    const dq = g.op("Mul", [unrotate(dQ), g.f32([this.hd ** -0.5])]);
    const dk = unrotate(dK);
    const dv = g.op("Reshape", [g.op("Transpose", [dV], { perm: heads }), g.i64([-1, this.H])]);
    const dxq = this.linearBack(`${P}${LAYER.query}`, s.q, dq, true)!;
    const dxk = this.linearBack(`${P}${LAYER.key}`, s.k, dk, true)!;
    const dxv = this.linearBack(`${P}${LAYER.value}`, s.v, dv, true)!;
    const dn1 = g.op("Add", [g.op("Add", [dxq, dxk]), dxv]);
    return g.op("Add", [dh1, this.normBack(`${P}${LAYER.attnNorm}`, s.n1, dn1)]);
  }

  /** The final LayerNorm: `[N, H]` rows -> the last hidden state `[B, L, H]`. */
  lastHiddenState(h: string): string {
    return this.g.op("Reshape", [this.norm(FINAL_NORM, h).y, this.dims().blh]);
  }

  /** Final LayerNorm and the classifier on `<cls>`: `[N, H]` -> logits `[B, C]`. */
  head(h: string): { logits: string; back: (dLogits: string, wantDh: boolean) => string | null } {
    const g = this.g;
    const H = this.H;
    const d = this.dims();
    const [denseM, outM] = headLinears(this.plan.config) as [LinearModule, LinearModule];
    const fn = this.norm(FINAL_NORM, h);
    const cls = g.op("Gather", [g.op("Reshape", [fn.y, d.blh]), g.i64([0], [])], { axis: 1 }); // [B, H]
    const dense = this.linear(denseM, cls);
    const t = g.op("Tanh", [dense.y]);
    const out = this.linear(outM, t);
    const back = (dLogits: string, wantDh: boolean) => {
      const dt = this.linearBack(outM.name, out.s, dLogits, true)!;
      const dd = g.op("Mul", [dt, g.op("Sub", [g.f32([1]), g.op("Mul", [t, t])])]);
      const dcls = this.linearBack(denseM.name, dense.s, dd, wantDh);
      const normTrains = this.plan.trainableNorms.has(FINAL_NORM);
      if (!wantDh && !normTrains) return null;
      // Place d<cls> at position 0 of every sequence, zeros elsewhere.
      const lMinus1 = g.op("Sub", [d.l, g.i64([1])]);
      const pads = g.op("Concat", [g.i64([0, 0, 0, 0]), lMinus1, g.i64([0])], { axis: 0 });
      const d3 = g.op("Pad", [g.op("Unsqueeze", [dcls!, g.i64([1])]), pads]);
      return this.normBack(FINAL_NORM, fn.s, g.op("Reshape", [d3, g.i64([-1, H])]));
    };
    return { logits: out.y, back };
  }

  /**
   * The plan's loss from fed tables `[B, C]` (see the header): weighted cross-entropy,
   * BCE-with-logits or MSE; returns the loss and its gradient w.r.t. the logits.
   */
  loss(logits: string): { loss: string; dLogits: string } {
    const g = this.g;
    const C = this.plan.config.numLabels;
    const w = g.input(IN.lossWeights, "float", ["B", C]);
    const sum = (x: string) => g.op("ReduceSum", [x], { keepdims: 0 });
    const kind = this.plan.loss ?? "cross_entropy";
    if (kind === "bce_with_logits") {
      const p = g.input(IN.lossTargets, "float", ["B", C]);
      // softplus(z) = relu(z) + log(1 + exp(-|z|)): finite for any z.
      const softplus = g.op("Add", [
        g.op("Relu", [logits]),
        g.op("Log", [
          g.op("Add", [g.f32([1]), g.op("Exp", [g.op("Neg", [g.op("Abs", [logits])])])]),
        ]),
      ]);
      const loss = sum(g.op("Sub", [g.op("Mul", [w, softplus]), g.op("Mul", [p, logits])]));
      const dLogits = g.op("Sub", [g.op("Mul", [w, g.op("Sigmoid", [logits])]), p]);
      return { loss, dLogits };
    }
    if (kind === "mse") {
      const t = g.input(IN.lossTargets, "float", ["B", C]);
      const d = g.op("Sub", [logits, t]);
      const wd = g.op("Mul", [w, d]);
      return { loss: sum(g.op("Mul", [wd, d])), dLogits: g.op("Mul", [g.f32([2]), wd]) };
    }
    const lsm = g.op("LogSoftmax", [logits], { axis: -1 });
    const loss = g.op("Neg", [sum(g.op("Mul", [w, lsm]))]);
    const rowW = g.op("ReduceSum", [w, g.i64([1])], { keepdims: 1 });
    const dLogits = g.op("Sub", [g.op("Mul", [g.op("Softmax", [logits], { axis: -1 }), rowW]), w]);
    return { loss, dLogits };
  }

  /** Declares every recorded gradient as an output named `grad:<input name>`. */
  outputGrads(shapeOf: (inputName: string) => number[]): void {
    for (const [name, value] of this.grads)
      this.g.output(gradName(name), value, "float", shapeOf(name));
  }
}
