/**
 * The onnx engine (an EsmEngine, src/engine/engine.ts): ESM-2 forward passes and LoRA /
 * full training steps run by onnxruntime's native CPU kernels instead of tfjs, on the
 * same weights (read from the model's tf.Variables: in place on the wasm backend, with
 * no copy; weights.ts) and with the same results within float32 rounding. The tfjs model stays the owner of every weight: optimizers,
 * checkpoints, adapters and saving are unchanged; this class only computes logits,
 * hidden states, losses and gradients.
 *
 * Gradient checkpointing: without it one graph runs forward and backward and
 * onnxruntime keeps every activation it needs; with it, the forward pass keeps only each
 * layer's input, and each layer's backward graph recomputes that layer first.
 *
 * `quantize: "int8"`: the frozen encoder Linears run on int8 codes (per output channel,
 * quantized here from the model's float weights, src/onnx/quantize.ts) with activations
 * quantized on the fly, forward and backward; LoRA, the classifier, LayerNorms and
 * embeddings stay float32, and so do the model's own weights (adapters and saved models
 * are unchanged). The codes are baked into the forward and training graphs as
 * initializers, so onnxruntime pre-packs them once; they reach onnxruntime through an
 * external data file written one tensor at a time (session-files.ts), never as one
 * buffer. The per-layer graphs of a checkpointed step, shared by every layer, take them
 * as inputs.
 */
import * as tf from "@tensorflow/tfjs-core";
import {
  checkTokenBatch,
  type EsmEngine,
  type MicroBatch,
  requireCapabilities,
  type StepOptions,
  type StepResult,
  type TokenBatch,
} from "../engine/engine";
import { checkLabels, DEFAULT_TASK } from "../engine/task";
import { ConfigError } from "../errors";
import { type LoraModel, loraKeys } from "../lora/lora";
import {
  classificationLinears,
  EMBEDDING,
  encoderNorms,
  FINAL_NORM,
  isClassifier,
  LAYER_LINEARS,
  layerPrefix,
} from "../model/architecture";
import type { EsmConfig } from "../model/config";
import { Esm2Model, MASK_VALUE } from "../model/esm2";
import { SeededRandom } from "../util/random";
import { dropoutMaskName, EsmGraph, type GraphPlan, IN, type ModulePlan, OUT } from "./esm-graph";
import { GraphBuilder } from "./graph";
import {
  type Int8Weight,
  int8RangeHere,
  int8ScaleName,
  int8WeightName,
  int8WeightTName,
  QUANTIZE_CHOICES,
  type Quantize,
  quantizeInt8,
  transposeInt8,
} from "./quantize";
import {
  boolScalar,
  floatTensor,
  int8Tensor,
  int32Tensor,
  OrtSession,
  type OrtTensor,
} from "./runtime";
import { SessionFiles } from "./session-files";
import { LOSS_KINDS, targetsOf, taskLossFeeds } from "./task-feeds";
import { type EngineWeights, modelWeights } from "./weights";

const LAYER_ALIAS = "layer.";

export interface OnnxEngineOptions {
  /** onnxruntime intra-op threads (default 1). */
  threads?: number;
  /** The LoRA wrapper of the model, if any (its unmerged adapters take part). */
  lora?: LoraModel;
  /** "int8": the frozen encoder Linears run on int8 weights (default "none"). */
  quantize?: Quantize;
  /**
   * Inference graphs on onnxruntime's fused kernels (GraphPlan.fused; default true).
   * false gives the standard-op graph the training passes use (tests compare the two).
   */
  fused?: boolean;
}

/** The int8 form of one frozen Linear, from the float weight whose data it was made of. */
interface Int8Entry {
  source: object;
  q: Int8Weight;
  tensors: Map<string, OrtTensor>;
}

interface BatchTables {
  feeds: Record<string, OrtTensor>;
  B: number;
  L: number;
}

export class OnnxEsmEngine implements EsmEngine {
  readonly name = "onnx";
  readonly threads: number;
  readonly quantize: Quantize;
  /** Whether int8 weights use 7 bits on this CPU, and why (quantize.ts). */
  readonly int8Range: { reduceRange: boolean; reason: string };
  private readonly sessions = new Map<string, OrtSession>();
  private readonly weightCache = new WeakMap<object, OrtTensor>();
  private readonly int8 = new Map<string, Int8Entry>();
  /** Sessions with int8 weights baked in, by key: their plan and the weights' stamp then. */
  private readonly baked = new Map<string, { plan: GraphPlan; stamp: string }>();
  private readonly dataIds = new WeakMap<object, number>();
  private readonly invFreq: Float32Array;
  /** Where the weights come from: the tfjs model (and its adapters), or a checkpoint. */
  readonly weights: EngineWeights;
  /** The tfjs model the weights come from; undefined on checkpoint weights. */
  readonly model?: Esm2Model;

  /**
   * On a TensorFlow.js model (its variables hold the weights; training needs this), or on
   * `EngineWeights` such as `checkpointWeights(await openPretrained(dir))` (inference with
   * no tfjs model; the engine disposes them).
   */
  constructor(
    model: Esm2Model | EngineWeights,
    private readonly options: OnnxEngineOptions = {},
  ) {
    this.threads = options.threads ?? 1;
    this.quantize = options.quantize ?? "none";
    if (!(QUANTIZE_CHOICES as readonly string[]).includes(this.quantize)) {
      throw new ConfigError(
        `Unknown quantize "${this.quantize}"; expected one of: ${QUANTIZE_CHOICES.join(", ")}`,
        { quantize: this.quantize },
      );
    }
    this.int8Range = int8RangeHere();
    this.weights = model instanceof Esm2Model ? modelWeights(model, options.lora) : model;
    if (model instanceof Esm2Model) this.model = model;
    if (options.lora && !(model instanceof Esm2Model)) {
      throw new ConfigError("LoRA adapters need the engine on the tfjs model that holds them", {});
    }
    this.invFreq = this.weights.invFreq;
  }

  /** The model's configuration. */
  get config(): EsmConfig {
    return this.weights.config;
  }

  /** Classification logits `[B, numLabels]` (row-major) for a batch; no gradients. */
  logits(batch: TokenBatch): Float32Array {
    this.weights.refresh();
    const plan = this.inferencePlan();
    const key = `forward:${signature(plan)}`;
    const session = this.session(key, () => {
      const eg = new EsmGraph("esm2_forward", plan);
      this.bakeInt8(key, eg.g, plan);
      let h = eg.embed();
      for (let i = 0; i < plan.config.numHiddenLayers; i++) h = eg.layerForward(i, h);
      eg.g.output(OUT.logits, eg.head(h).logits, "float", ["B", plan.config.numLabels]);
      return eg.g.build();
    });
    const t = this.tables(batch);
    const out = session.run({ ...t.feeds, ...this.weightFeeds(session, new Set()) });
    return out[OUT.logits]!.data as Float32Array;
  }

  /** The last hidden state `[B * L * H]` (row-major) for a batch; no gradients. */
  lastHiddenState(batch: TokenBatch): Float32Array {
    this.weights.refresh();
    const plan = this.inferencePlan();
    const session = this.session(`hidden:${signature(plan)}`, () => {
      const eg = new EsmGraph("esm2_hidden", plan);
      let h = eg.embed();
      for (let i = 0; i < plan.config.numHiddenLayers; i++) h = eg.layerForward(i, h);
      eg.g.output(OUT.lastHidden, eg.lastHiddenState(h), "float", [
        "B",
        "L",
        plan.config.hiddenSize,
      ]);
      return eg.g.build();
    });
    const t = this.tables(batch);
    const out = session.run({ ...t.feeds, ...this.weightFeeds(session, new Set()) });
    return out[OUT.lastHidden]!.data as Float32Array;
  }

  /**
   * Hidden states `[B, L, H]` (row-major) numbered as transformers' `EsmModel`
   * `hidden_states`: 0 is the embeddings output (token-dropout scaled, padding zeroed),
   * `i` the output of encoder layer `i - 1`, and `numHiddenLayers` the last layer after
   * the final LayerNorm (`emb_layer_norm_after`), i.e. `last_hidden_state`. No gradients.
   */
  hiddenStates(batch: TokenBatch, layer: number = this.config.numHiddenLayers): Float32Array {
    const n = this.config.numHiddenLayers;
    if (!Number.isInteger(layer) || layer < 0 || layer > n) {
      throw new ConfigError(
        `layer ${layer} is out of range: the model has ${n} layers, so hidden states 0..${n} (0: embeddings, ${n}: last layer after the final LayerNorm)`,
        { layer, numHiddenLayers: n },
      );
    }
    if (layer === n) return this.lastHiddenState(batch);
    this.weights.refresh();
    const plan = this.inferencePlan();
    const session = this.session(`hidden:${layer}:${signature(plan)}`, () => {
      const eg = new EsmGraph("esm2_hidden", plan);
      let h = eg.embed();
      for (let i = 0; i < layer; i++) h = eg.layerForward(i, h);
      eg.g.output(OUT.hidden, h, "float", null);
      return eg.g.build();
    });
    const t = this.tables(batch);
    const out = session.run({ ...t.feeds, ...this.weightFeeds(session, new Set()) });
    return out[OUT.hidden]!.data as Float32Array;
  }

  /**
   * Loss and gradients of one micro-batch, as `lossAndGradients` in train/step.ts
   * computes them: gradients of the scaled loss for every tensor in `params`.
   */
  lossAndGradients(
    params: Map<string, tf.Variable>,
    batch: MicroBatch,
    options: StepOptions = {},
  ): StepResult {
    this.weights.refresh();
    requireCapabilities(this.name, { task: options.task ?? DEFAULT_TASK });
    const names = new Set(params.keys());
    if (names.has(EMBEDDING)) {
      requireCapabilities(this.name, { trainsEmbeddings: true }, { param: EMBEDDING });
    }
    if (this.quantize === "int8") {
      const base = [...names].find((n) => isEncoderLinear(n));
      if (base) {
        throw new ConfigError(
          `quantize "int8" keeps the base model frozen, but ${base} is to be trained; train LoRA adapters (not --no-lora) or use quantize "none"`,
          { param: base },
        );
      }
    }
    const lora = this.options.lora;
    const training = lora ? lora.training : false;
    const problemType = options.task ?? DEFAULT_TASK;
    const plan: GraphPlan = { ...this.plan(names, training), loss: LOSS_KINDS[problemType] };
    const [B, L] = batch.inputIds.shape;
    const tb: TokenBatch = {
      inputIds: batch.inputIds.dataSync(),
      attentionMask: batch.attentionMask.dataSync(),
      batchSize: B,
      seqLen: L,
    };
    const t = this.tables(tb);
    const C = plan.config.numLabels;
    const lw: { weights: Float32Array; targets?: Float32Array; empty: boolean } =
      problemType === "single_label_classification"
        ? lossWeights(batch.labels.dataSync(), C, options.classWeights, options.lossScale ?? 1)
        : taskLossFeeds(problemType, targetsOf(batch, B, C), C, {
            posWeight: options.posWeight,
            scale: options.lossScale ?? 1,
          });
    const feeds: Record<string, OrtTensor> = {
      ...t.feeds,
      [IN.lossWeights]: floatTensor(lw.weights, [B, C]),
      ...(lw.targets ? { [IN.lossTargets]: floatTensor(lw.targets, [B, C]) } : {}),
      ...this.dropoutMasks(plan, B, L, options.dropoutRng),
    };
    const scale = options.lossScale ?? 1;
    const grads = new Map<string, tf.Tensor>();
    let lossValue: number;
    if (options.gradientCheckpointing) {
      lossValue = this.checkpointedStep(plan, names, params, feeds, grads);
    } else {
      const key = `train:${signature(plan)}`;
      const session = this.session(key, () => {
        const eg = new EsmGraph("esm2_train", plan);
        this.bakeInt8(key, eg.g, plan);
        let h = eg.embed();
        const saved = [];
        for (let i = 0; i < plan.config.numHiddenLayers; i++) {
          const r = eg.layer(i, h);
          saved.push(r.s);
          h = r.out;
        }
        const head = eg.head(h);
        const { loss, dLogits } = eg.loss(head.logits);
        eg.g.output(OUT.loss, loss, "float", []);
        let d = head.back(dLogits, plan.config.numHiddenLayers > 0);
        for (let i = plan.config.numHiddenLayers - 1; i >= 0; i--)
          d = eg.layerBack(i, saved[i]!, d!);
        eg.outputGrads((n) => this.shapeOf(n));
        return eg.g.build();
      });
      const out = session.run({ ...feeds, ...this.weightFeeds(session, names) });
      lossValue = (out[OUT.loss]!.data as Float32Array)[0]!;
      this.collect(out, names, (n) => n, params, grads);
    }
    const loss = lw.empty ? Number.NaN : lossValue / scale;
    return { loss, grads };
  }

  dispose(): void {
    for (const s of this.sessions.values()) s.dispose();
    this.sessions.clear();
    this.baked.clear();
    this.int8.clear();
    this.weights.dispose();
  }

  // ---- checkpointed step ----

  private checkpointedStep(
    basePlan: GraphPlan,
    names: Set<string>,
    params: Map<string, tf.Variable>,
    feeds: Record<string, OrtTensor>,
    grads: Map<string, tf.Tensor>,
  ): number {
    const nl = basePlan.config.numHiddenLayers;
    const [B, , , L] = feeds[IN.addMask]!.dims as number[];
    const plan: GraphPlan = {
      ...basePlan,
      headGroups: headGroupsFor(basePlan.config.numAttentionHeads, B!, L!),
    };
    const embed = this.session("embed", () => {
      const eg = new EsmGraph("esm2_embed", plan);
      eg.g.output(OUT.hidden, eg.embed(), "float", ["N", plan.config.hiddenSize]);
      return eg.g.build();
    });
    const hiddens: OrtTensor[] = [
      embed.run({ ...feeds, ...this.weightFeeds(embed, names) })[OUT.hidden]!,
    ];
    // A stand-in for the upstream gradient in forward runs (the branch ignores it).
    const noGrad = floatTensor(new Float32Array(plan.config.hiddenSize), [
      1,
      plan.config.hiddenSize,
    ]);
    for (let i = 0; i < nl; i++) {
      const s = this.layerSession(plan, i);
      const out = s.run({
        ...this.layerFeeds(s, i, feeds, names),
        [IN.backward]: boolScalar(false),
        [IN.hidden]: hiddens[i]!,
        [IN.dHidden]: noGrad,
      });
      hiddens.push(out[OUT.hidden]!);
    }
    const headKey = `head:${signature(plan, "head")}`;
    const head = this.session(headKey, () => {
      const eg = new EsmGraph("esm2_head", plan);
      const h = eg.g.input(IN.hidden, "float", ["N", plan.config.hiddenSize]);
      const hd = eg.head(h);
      const { loss, dLogits } = eg.loss(hd.logits);
      eg.g.output(OUT.loss, loss, "float", []);
      eg.g.output(OUT.dHidden, hd.back(dLogits, true)!, "float", ["N", plan.config.hiddenSize]);
      eg.outputGrads((n) => this.shapeOf(n));
      return eg.g.build();
    });
    const ho = head.run({ ...feeds, ...this.weightFeeds(head, names), [IN.hidden]: hiddens[nl]! });
    const loss = (ho[OUT.loss]!.data as Float32Array)[0]!;
    this.collect(ho, names, (n) => n, params, grads);
    let d = ho[OUT.dHidden]!;
    for (let i = nl - 1; i >= 0; i--) {
      const s = this.layerSession(plan, i);
      const out = s.run({
        ...this.layerFeeds(s, i, feeds, names),
        [IN.backward]: boolScalar(true),
        [IN.hidden]: hiddens[i]!,
        [IN.dHidden]: d,
      });
      this.collect(out, names, (n) => unalias(n, i), params, grads);
      d = out[OUT.hidden]!;
    }
    return loss;
  }

  /**
   * One session per layer signature for both passes of a checkpointed step, so both
   * share one memory arena: `If(backward)` runs either the layer (output: its result)
   * or the layer again and its backward pass (outputs: the input gradient, then the
   * parameter gradients; the forward branch gives zeros for those).
   */
  private layerSession(plan: GraphPlan, i: number): OrtSession {
    const sig = signature(plan, i);
    return this.session(`layer-ckpt:${sig}`, () => {
      const H = plan.config.hiddenSize;
      const root = new GraphBuilder("esm2_layer_ckpt");
      const cond = root.input(IN.backward, "bool", []);
      const h = root.input(IN.hidden, "float", ["N", H]);
      const dOut = root.input(IN.dHidden, "float", ["N", H]);
      const names = (k: string) => alias(k, i);
      const fwd = root.branch("forward");
      const f = new EsmGraph(fwd, plan, names);
      fwd.output("forward_out", f.layer(i, h).out, "float", null);
      const bwd = root.branch("backward");
      const b = new EsmGraph(bwd, plan, names);
      bwd.output("backward_out", b.layerBack(i, b.layer(i, h).s, dOut), "float", null);
      const gradNames = [...b.grads.keys()];
      const zero = root.f32([0]);
      gradNames.forEach((n, j) => {
        bwd.output(`backward_grad_${j}`, b.grads.get(n)!, "float", null);
        fwd.output(`forward_grad_${j}`, fwd.op("Identity", [zero]), "float", null);
      });
      const outs = root.opN("If", [cond], 1 + gradNames.length, {
        then_branch: { graph: bwd },
        else_branch: { graph: fwd },
      });
      root.output(OUT.hidden, outs[0]!, "float", null);
      gradNames.forEach((n, j) => {
        root.output(`grad:${n}`, outs[j + 1]!, "float", null);
      });
      return root.build();
    });
  }

  private layerFeeds(
    s: OrtSession,
    i: number,
    feeds: Record<string, OrtTensor>,
    trainable: Set<string>,
  ): Record<string, OrtTensor> {
    const out: Record<string, OrtTensor> = {};
    for (const n of s.inputNames) {
      if (n === IN.hidden || n === IN.dHidden || n === IN.backward) continue;
      const key = unalias(n, i);
      if (key in feeds) out[n] = feeds[key]!;
      else if (n in feeds) out[n] = feeds[n]!;
      else out[n] = this.weight(key, trainable);
    }
    return out;
  }

  // ---- shared pieces ----

  private collect(
    out: Record<string, OrtTensor>,
    names: Set<string>,
    toKey: (inputName: string) => string,
    params: Map<string, tf.Variable>,
    grads: Map<string, tf.Tensor>,
  ): void {
    for (const [name, t] of Object.entries(out)) {
      if (!name.startsWith("grad:")) continue;
      const key = toKey(name.slice(5));
      if (!names.has(key)) continue;
      const v = params.get(key)!;
      grads.set(key, tf.tensor(t.data as Float32Array, v.shape, "float32"));
    }
  }

  private session(key: string, build: () => Uint8Array): OrtSession {
    let s = this.sessions.get(key);
    const baked = this.baked.get(key);
    if (s && baked && baked.stamp !== this.int8Stamp(baked.plan)) {
      // The float weights changed (a merge, an assignment): bake them again.
      s.dispose();
      this.sessions.delete(key);
      this.baked.delete(key);
      s = undefined;
    }
    if (!s) {
      try {
        const bytes = build();
        // Baked int8 codes are in an external data file (bakeInt8): load the model from
        // a file beside it; onnxruntime keeps what it needs once the session is made.
        const file = this.bakeFiles?.model(bytes);
        s = new OrtSession(file ?? bytes, { threads: this.threads });
      } finally {
        this.bakeFiles?.remove();
        this.bakeFiles = undefined;
      }
      this.sessions.set(key, s);
    }
    return s;
  }

  private shapeOf(key: string): number[] {
    const shape = this.weights.shape(key);
    if (!shape) throw new Error(`No variable ${key}`);
    return shape;
  }

  /**
   * A weight as an onnxruntime tensor: a view of the tfjs variable's own memory where the
   * weights allow it (weights.ts `view`; made for this run only, never kept), else a copy,
   * which for frozen weights is cached until reassigned.
   */
  private weight(key: string, trainable: Set<string>): OrtTensor {
    const int8 = int8Input(key);
    if (int8) {
      const e = this.int8Of(int8.module);
      let t = e.tensors.get(int8.part);
      if (!t) {
        const { q } = e;
        t =
          int8.part === "scale"
            ? floatTensor(q.scales, [q.cols])
            : int8.part === "codes"
              ? int8Tensor(q.values, [q.rows, q.cols])
              : int8Tensor(transposeInt8(q.values, q.rows, q.cols), [q.cols, q.rows]);
        e.tensors.set(int8.part, t);
      }
      return t;
    }
    const version = this.weights.version(key);
    if (!version) throw new Error(`The graph needs ${key}, which the model does not hold`);
    const view = this.weights.view?.(key);
    if (view) return floatTensor(view, this.shapeOf(key));
    if (!trainable.has(key)) {
      const hit = this.weightCache.get(version);
      if (hit) return hit;
    }
    const t = floatTensor(this.weights.read(key), this.shapeOf(key));
    if (!trainable.has(key)) this.weightCache.set(version, t);
    return t;
  }

  private weightFeeds(s: OrtSession, trainable: Set<string>): Record<string, OrtTensor> {
    const out: Record<string, OrtTensor> = {};
    const tableNames = new Set<string>(Object.values(IN));
    for (const n of s.inputNames) {
      if (tableNames.has(n) || n.endsWith(".lora_dropout_mask")) continue;
      out[n] = this.weight(n, trainable);
    }
    return out;
  }

  /** The per-batch tables every graph takes (see esm-graph.ts). */
  private tables(batch: TokenBatch): BatchTables {
    const { batchSize: B, seqLen: L } = batch;
    const c = this.config;
    checkTokenBatch(batch, c.vocabSize);
    const ids = new Int32Array(B * L);
    const rowScale = new Float32Array(B * L);
    const addMask = new Float32Array(B * L);
    for (let b = 0; b < B; b++) {
      let real = 0;
      let masked = 0;
      for (let l = 0; l < L; l++) {
        const id = batch.inputIds[b * L + l]!;
        ids[b * L + l] = id;
        const m = batch.attentionMask[b * L + l]! ? 1 : 0;
        real += m;
        if (c.tokenDropout && c.maskTokenId !== null && id === c.maskTokenId) masked++;
        addMask[b * L + l] = m ? 0 : MASK_VALUE;
      }
      const useDropout = c.tokenDropout && c.maskTokenId !== null;
      const scale = useDropout
        ? Math.fround(Math.fround(1 - 0.15 * 0.8) / Math.fround(1 - Math.fround(masked / real)))
        : 1;
      for (let l = 0; l < L; l++) {
        const m = batch.attentionMask[b * L + l]! ? 1 : 0;
        const isMask = useDropout && ids[b * L + l] === c.maskTokenId;
        rowScale[b * L + l] = isMask ? 0 : m * scale;
      }
    }
    const hd = c.hiddenSize / c.numAttentionHeads;
    const half = hd / 2;
    const cos = new Float32Array(L * hd);
    const sin = new Float32Array(L * hd);
    for (let l = 0; l < L; l++) {
      for (let j = 0; j < hd; j++) {
        const f = Math.fround(l * this.invFreq[j % half]!);
        cos[l * hd + j] = Math.cos(f);
        sin[l * hd + j] = Math.sin(f);
      }
    }
    return {
      B,
      L,
      feeds: {
        [IN.ids]: int32Tensor(ids, [B, L]),
        [IN.rowScale]: floatTensor(rowScale, [B, L, 1]),
        [IN.addMask]: floatTensor(addMask, [B, 1, 1, L]),
        [IN.cos]: floatTensor(cos, [L, 1, hd]),
        [IN.sin]: floatTensor(sin, [L, 1, hd]),
      },
    };
  }

  /**
   * One inverted-dropout mask per adapted module with dropout, seeds drawn in forward
   * order: `[B * L, in]` for encoder modules, `[B, in]` for the classifier (it sees `<cls>` only).
   */
  private dropoutMasks(
    plan: GraphPlan,
    B: number,
    L: number,
    rng?: SeededRandom,
  ): Record<string, OrtTensor> {
    const out: Record<string, OrtTensor> = {};
    const lora = this.options.lora;
    if (!lora) return out;
    const p = lora.config.dropout;
    for (const { name: module } of classificationLinears(plan.config)) {
      const mp = plan.modules.get(module);
      if (!mp?.lora?.dropout) continue;
      const inF = this.shapeOf(loraKeys(module).a)[0]!;
      const rows = isClassifier(module) ? B : B * L;
      const r = new SeededRandom((rng ?? lora.dropoutRng).int(2 ** 31));
      const mask = new Float32Array(rows * inF);
      const keep = Math.fround(1 / (1 - p));
      for (let i = 0; i < mask.length; i++) mask[i] = r.next() < p ? 0 : keep;
      out[dropoutMaskName(module)] = floatTensor(mask, [rows, inF]);
    }
    return out;
  }

  /** The plan of graphs with no backward pass: nothing trains, fused kernels (see options). */
  private inferencePlan(): GraphPlan {
    return { ...this.plan(new Set(), false), fused: this.options.fused ?? true };
  }

  /** Which modules train, carry LoRA, and which norms train, for this model and `trainable`. */
  private plan(trainable: Set<string>, training: boolean): GraphPlan {
    const lora = this.options.lora;
    const modules = new Map<string, ModulePlan>();
    for (const m of classificationLinears(this.config)) {
      const module = m.name;
      const adapter = lora?.adapters.get(module);
      const active = adapter && !adapter.merged;
      const trains = trainable.has(`${module}.weight`) || trainable.has(`${module}.bias`);
      modules.set(module, {
        hasBias: m.bias,
        trainable: trains,
        int8: this.quantize === "int8" && !trains && isEncoderLinear(`${module}.weight`),
        lora: active
          ? {
              scaling: adapter.scaling,
              rank: adapter.config.rank,
              dropout: training && adapter.config.dropout > 0,
            }
          : null,
      });
    }
    const trainableNorms = new Set(
      encoderNorms(this.config).filter(
        (n) => trainable.has(`${n}.weight`) || trainable.has(`${n}.bias`),
      ),
    );
    return {
      config: this.config,
      modules,
      trainableNorms,
      ...(this.quantize === "int8" ? { int8Kernel: "DynamicQuantizeMatMul" as const } : {}),
    };
  }

  // ---- int8 weights ----

  /** The int8 form of a frozen Linear, quantized from its current float weight. */
  private int8Of(module: string): Int8Entry {
    const source = this.weights.version(`${module}.weight`);
    const hit = this.int8.get(module);
    if (hit && hit.source === source) return hit;
    const entry: Int8Entry = {
      source: source!,
      q: this.quantizeModule(module),
      tensors: new Map(),
    };
    this.int8.set(module, entry);
    return entry;
  }

  /** A frozen Linear's current float weight, quantized (not kept). */
  private quantizeModule(module: string): Int8Weight {
    const key = `${module}.weight`;
    if (!this.weights.version(key)) {
      throw new Error(`The graph needs ${key}, which the model does not hold`);
    }
    const [inF, outF] = this.shapeOf(key) as [number, number]; // [in, out]
    // A view where possible: quantizing allocates nothing in TensorFlow.js.
    const values = this.weights.view?.(key) ?? this.weights.read(key);
    return quantizeInt8(values, inF, outF, {
      reduceRange: this.int8Range.reduceRange,
    });
  }

  /** The external data file of the session being built, when it bakes int8 weights. */
  private bakeFiles: SessionFiles | undefined;

  /**
   * Makes the int8 inputs of `plan`'s modules initializers of the graph being built under
   * `key` (onnxruntime pre-packs them once), and remembers which weights they came from.
   * The codes go to an external data file as each module is quantized (one module's
   * float weight and codes in JavaScript memory at a time); the scales stay inline.
   */
  private bakeInt8(key: string, g: GraphBuilder, plan: GraphPlan): void {
    if (this.quantize !== "int8") return;
    this.baked.set(key, { plan, stamp: this.int8Stamp(plan) });
    const files = new SessionFiles();
    this.bakeFiles = files;
    // The graph asks for a module's codes, then its scales: quantize once for both.
    let last: { module: string; q: Int8Weight } | undefined;
    const quantized = (module: string) => {
      if (last?.module !== module) last = { module, q: this.quantizeModule(module) };
      return last.q;
    };
    const bytes = (t: Int8Array | Float32Array) =>
      new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
    g.bindInputs((name) => {
      const int8 = int8Input(name);
      if (!int8 || !plan.modules.get(int8.module)?.int8) return undefined;
      const q = quantized(int8.module);
      if (int8.part === "scale") return bytes(q.scales);
      const codes = int8.part === "codes" ? q.values : transposeInt8(q.values, q.rows, q.cols);
      return files.append(bytes(codes));
    });
  }

  /** Which float weights the int8 modules of `plan` come from now. */
  private int8Stamp(plan: GraphPlan): string {
    const ids: number[] = [];
    for (const [module, p] of plan.modules) {
      if (!p.int8) continue;
      const dataId = this.weights.version(`${module}.weight`);
      if (!dataId) continue;
      let id = this.dataIds.get(dataId);
      if (id === undefined) {
        id = this.nextDataId++;
        this.dataIds.set(dataId, id);
      }
      ids.push(id);
    }
    return ids.join(",");
  }

  private nextDataId = 0;
}

/** The module and part of an int8 input name (quantize.ts), or null. */
function int8Input(name: string): { module: string; part: "codes" | "codesT" | "scale" } | null {
  for (const [suffix, part] of INT8_SUFFIXES) {
    if (name.endsWith(suffix)) return { module: name.slice(0, -suffix.length), part };
  }
  return null;
}

const INT8_SUFFIXES: [string, "codes" | "codesT" | "scale"][] = [
  [int8WeightName(""), "codes"],
  [int8WeightTName(""), "codesT"],
  [int8ScaleName(""), "scale"],
];

/** An encoder Linear's weight (`esm.encoder.layer.N.<linear>.weight`). */
function isEncoderLinear(param: string): boolean {
  const m = /^esm\.encoder\.layer\.\d+\.(.+)\.weight$/.exec(param);
  return m !== null && (LAYER_LINEARS as readonly string[]).includes(m[1]!);
}

/**
 * Attention score bytes per head group that checkpointed layers aim for. Measured on the
 * 8M architecture at 8 x 512, one thread: 8 MiB groups (one head) 4.1 s and 985 MB peak
 * RSS per step, 32 MiB 5.4 s / 1036 MB, 64 MiB 4.6 s / 1072 MB (noisy machine).
 */
const GROUP_SCORE_BYTES = 8 * 2 ** 20;

/**
 * Head groups for checkpointed layers: the fewest (a divisor of the head count) that
 * keep one group's `[B, heads, L, L]` scores under GROUP_SCORE_BYTES, so recomputing a
 * layer never holds the whole score tensor.
 */
export function headGroupsFor(heads: number, batch: number, length: number): number {
  for (let g = 1; g < heads; g++) {
    if (heads % g === 0 && batch * (heads / g) * length * length * 4 <= GROUP_SCORE_BYTES) return g;
  }
  return heads;
}

/** A stable key for the parts of a plan a graph depends on (a layer, the head, or all). */
function signature(plan: GraphPlan, part?: number | "head"): string {
  const pick = (keep: (name: string) => boolean, prefix = "") => {
    const mods = [...plan.modules]
      .filter(([k]) => keep(k))
      .map(([k, v]) => [k.slice(prefix.length), v]);
    const norms = [...plan.trainableNorms].filter(keep).map((k) => k.slice(prefix.length));
    return JSON.stringify([mods, norms]);
  };
  const c = plan.config;
  const shape = `g${plan.headGroups ?? 1}${plan.fused ? "f" : ""}/${c.hiddenSize}/${c.numAttentionHeads}/${c.intermediateSize}/${c.numLabels}/${c.vocabSize}/${c.layerNormEps}/${plan.loss ?? "cross_entropy"}`;
  if (part === undefined) return `${shape}:${pick(() => true)}`;
  if (part === "head")
    return `${shape}:${pick(isClassifier)}:${plan.trainableNorms.has(FINAL_NORM)}`;
  const prefix = layerPrefix(part);
  return `${shape}:${pick((k) => k.startsWith(prefix), prefix)}`;
}

function alias(key: string, i: number): string {
  const p = layerPrefix(i);
  return key.startsWith(p) ? LAYER_ALIAS + key.slice(p.length) : key;
}

function unalias(name: string, i: number): string {
  return name.startsWith(LAYER_ALIAS) ? layerPrefix(i) + name.slice(LAYER_ALIAS.length) : name;
}

/**
 * Rows of `w[y_i] / sum_j w[y_j] * scale` at column `y_i` (torch's weighted mean);
 * ignored labels (-100) give zero rows. `empty` when nothing is left (the loss is NaN).
 */
export function lossWeights(
  labels: ArrayLike<number>,
  numClasses: number,
  classWeights: number[] | undefined,
  scale: number,
): { weights: Float32Array; empty: boolean } {
  if (classWeights && classWeights.length !== numClasses) {
    throw new ConfigError(
      `Class weights [${classWeights.join(", ")}] have ${classWeights.length} entries; the model has ${numClasses} classes`,
      { classWeights, numClasses },
    );
  }
  const n = labels.length;
  const out = new Float32Array(n * numClasses);
  let total = 0;
  checkLabels(labels, numClasses, -100);
  for (let i = 0; i < n; i++) {
    const y = labels[i]!;
    if (y !== -100) total += classWeights ? classWeights[y]! : 1;
  }
  if (total === 0) return { weights: out, empty: true };
  for (let i = 0; i < n; i++) {
    const y = labels[i]!;
    if (y === -100) continue;
    out[i * numClasses + y] = ((classWeights ? classWeights[y]! : 1) / total) * scale;
  }
  return { weights: out, empty: false };
}
