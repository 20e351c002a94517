/**
 * int8 / int4 kernels of onnxruntime-node on this CPU, for one ESM-2 Linear (issue 13,
 * item 3): which graph runs a frozen quantized Linear fastest, forward (`X W + b`) and
 * backward (`dX = dY W^T`), and how far each lands from fp32.
 *
 *   node build/bench/int8-kernels.js [--threads 1] [--tokens 4800] [--arch 35m,150m,650m]
 *        [--repeats 5] [--outlier-scale 8] [--only NAME,...] [--no-backward] [--runtime node|web]
 *        [--json FILE]
 *
 * Shapes: X [tokens, K] against the three Linear shapes of an ESM-2 layer (K -> N): H -> H
 * (query, key, value, attention output), H -> 4H (intermediate) and 4H -> H (output), at
 * H = 480 (35M), 640 (150M), 1280 (650M). Tokens default to 16 x 300.
 *
 * Data: X ~ N(0, 1) with 1 % of its channels x 8 (`--outlier-scale`; 1: none), standing
 * in for the activation outliers of trained ESM-2 layers; dY ~ N(0, 1e-3); W ~ N(0, 0.02), b ~ N(0, 0.02); the same per shape for every variant.
 * Weights are graph initializers, as onnxruntime needs them to pre-pack (except the
 * "weight fed" row, which feeds W as an input, as the engine does today).
 *
 * Error against fp32 MatMul: max |y - y32| / max |y32| and mean |y - y32| / mean |y32|.
 * Time: median of `repeats` runs after one warm-up; the spread (min..max) beside it.
 *
 * Every graph is written with esmkit's own ONNX writer (src/onnx/proto.ts) and run by
 * onnxruntime-node's InferenceSession; `--runtime web` runs them on onnxruntime-web's
 * wasm backend instead (the one transformers.js uses in browsers), to see which of them
 * it supports.
 */
import { writeFileSync } from "node:fs";
import * as os from "node:os";
import { parseArgs } from "node:util";
import type * as OrtNode from "onnxruntime-node";
import {
  DType,
  type DTypeName,
  encodeModel,
  type NodeDef,
  type TensorInit,
  type ValueInfo,
} from "../src/onnx/proto";
import { SeededRandom } from "../src/util/random";
import { median } from "./median";

// proto.ts names only the types the engine emits today; the quantized graphs need the
// 8-bit ones too (TensorProto.DataType UINT8 = 2, INT8 = 3). Phase 2 adds them there.
Object.assign(DType, { uint8: 2, int8: 3 });
type Dt = DTypeName | "uint8" | "int8";
const dt = (d: Dt) => d as DTypeName;

const MS = "com.microsoft";

/** onnxruntime-node, or onnxruntime-web (its wasm build, as transformers.js runs it) with --runtime web. */
let ort: typeof OrtNode;

interface Shape {
  arch: string;
  K: number;
  N: number;
}

const HIDDEN: Record<string, number> = { "35m": 480, "150m": 640, "650m": 1280 };

function shapesOf(arch: string): Shape[] {
  const H = HIDDEN[arch]!;
  return [
    { arch, K: H, N: H },
    { arch, K: H, N: 4 * H },
    { arch, K: 4 * H, N: H },
  ];
}

// ---- data ----

function gaussian(rng: SeededRandom, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(rng.next(), 1e-12);
    const v = rng.next();
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/** `[rows, cols]` activations with 1 % of the columns scaled by `outlier`. */
function activations(rng: SeededRandom, rows: number, cols: number, outlier: number): Float32Array {
  const x = gaussian(rng, rows * cols, 1);
  for (let c = 0; c < cols; c++) {
    if (c % 100 !== 7) continue;
    for (let r = 0; r < rows; r++) x[r * cols + c]! *= outlier;
  }
  return x;
}

/** `w` `[K, N]` (row-major) transposed to `[N, K]`. */
function transpose(w: Float32Array, K: number, N: number): Float32Array {
  const t = new Float32Array(K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) t[n * K + k] = w[k * N + n]!;
  return t;
}

// ---- quantizers ----

/** Symmetric int8 of `w` `[K, N]`: per column (N scales) or per tensor (one). */
function quantInt8(
  w: Float32Array,
  K: number,
  N: number,
  perColumn: boolean,
): { q: Int8Array; scale: Float32Array } {
  const scale = new Float32Array(perColumn ? N : 1);
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) {
      const j = perColumn ? n : 0;
      scale[j] = Math.max(scale[j]!, Math.abs(w[k * N + n]!));
    }
  }
  for (let j = 0; j < scale.length; j++) scale[j] = scale[j]! / 127 || 1;
  const q = new Int8Array(K * N);
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) {
      const s = scale[perColumn ? n : 0]!;
      q[k * N + n] = Math.max(-127, Math.min(127, Math.round(w[k * N + n]! / s)));
    }
  }
  return { q, scale };
}

/**
 * MatMulNBits' layout of `w` `[K, N]`: B `[N, blocks, block * bits / 8]` (codes packed
 * low-first along K), scales `[N, blocks]`; symmetric, so the default zero point
 * 2^(bits-1) applies and no zero points are stored.
 */
function quantBlocks(
  w: Float32Array,
  K: number,
  N: number,
  bits: 4 | 8,
  block: number,
): { b: Uint8Array; scales: Float32Array; blocks: number } {
  const blocks = Math.ceil(K / block);
  const blob = (block * bits) / 8;
  const b = new Uint8Array(N * blocks * blob);
  const scales = new Float32Array(N * blocks);
  const qmax = bits === 8 ? 127 : 7;
  const zp = bits === 8 ? 128 : 8;
  for (let n = 0; n < N; n++) {
    for (let blk = 0; blk < blocks; blk++) {
      let m = 0;
      for (let k = blk * block; k < Math.min(K, (blk + 1) * block); k++)
        m = Math.max(m, Math.abs(w[k * N + n]!));
      const s = m / qmax || 1;
      scales[n * blocks + blk] = s;
      for (let j = 0; j < block; j++) {
        const k = blk * block + j;
        const code =
          k < K
            ? Math.max(
                -qmax - (bits === 4 ? 1 : 0),
                Math.min(qmax, Math.round(w[k * N + n]! / s)),
              ) + zp
            : zp;
        const at = (n * blocks + blk) * blob;
        if (bits === 8) b[at + j] = code;
        else b[at + (j >> 1)]! |= (code & 0xf) << ((j & 1) * 4);
      }
    }
  }
  return { b, scales, blocks };
}

// ---- graphs ----

interface Graph {
  nodes: NodeDef[];
  inits: TensorInit[];
  inputs: ValueInfo[];
}

const raw = (a: Float32Array | Int8Array | Uint8Array) =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const init = (name: string, d: Dt, dims: number[], data: Float32Array | Int8Array | Uint8Array) =>
  ({ name, dtype: dt(d), dims, raw: raw(data) }) as TensorInit;
let nodeId = 0;
const node = (
  op: string,
  inputs: string[],
  outputs: string[],
  attrs: NodeDef["attrs"] = {},
  domain?: string,
): NodeDef => ({
  op,
  inputs,
  outputs,
  name: `n${nodeId++}_${op}`,
  attrs,
  ...(domain ? { domain } : {}),
});
const int = (value: number) => ({ kind: "int" as const, value });

function model(g: Graph, K: number, N: number): Uint8Array {
  return encodeModel({
    graphName: "linear",
    nodes: g.nodes,
    initializers: g.inits,
    inputs: [{ name: "x", dtype: "float", shape: ["M", K] }, ...g.inputs],
    outputs: [{ name: "y", dtype: "float", shape: ["M", N] }],
    opset: 17,
    extraOpsets: { [MS]: 1 },
  });
}

interface Variant {
  name: string;
  /** What the row is about. */
  what: string;
  /** Session graph optimization level (default "all", as the engine). */
  level?: "basic" | "all";
  /**
   * Weights stay as given instead of onnxruntime's pre-packed copies
   * (`session.disable_prepacking`): what sharing one mapped copy across sessions needs.
   */
  noPrepack?: boolean;
  build(
    w: Float32Array,
    bias: Float32Array,
    K: number,
    N: number,
  ): { graph: Graph; feeds?: Record<string, OrtNode.Tensor> };
}

const biasInit = (bias: Float32Array) => init("bias", "float", [bias.length], bias);

/** `y = dq(x) @ (q * scale) + bias` after MatMulInteger, written out (Cast, Mul, Add). */
function matMulIntegerGraph(w: Float32Array, bias: Float32Array, K: number, N: number): Graph {
  const { q, scale } = quantInt8(w, K, N, true);
  return {
    inputs: [],
    inits: [init("wq", "int8", [K, N], q), init("ws", "float", [N], scale), biasInit(bias)],
    nodes: [
      node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
      node("MatMulInteger", ["xq", "wq", "xz"], ["acc"]),
      node("Cast", ["acc"], ["accf"], { to: int(DType.float) }),
      node("Mul", ["xs", "ws"], ["s"]),
      node("Mul", ["accf", "s"], ["ys"]),
      node("Add", ["ys", "bias"], ["y"]),
    ],
  };
}

function nbits(bits: 4 | 8, block: number, acc: number): Variant {
  return {
    name: `MatMulNBits b${bits} blk${block} acc${acc}`,
    what: `com.microsoft MatMulNBits, ${bits}-bit symmetric blocks of ${block} along K, accuracy_level ${acc}${acc === 4 ? " (int8 compute)" : ""}, bias input`,
    build: (w, bias, K, N) => {
      const { b, scales, blocks } = quantBlocks(w, K, N, bits, block);
      return {
        graph: {
          inputs: [],
          inits: [
            init("b", "uint8", [N, blocks, (block * bits) / 8], b),
            init("scales", "float", [N, blocks], scales),
            biasInit(bias),
          ],
          nodes: [
            node(
              "MatMulNBits",
              ["x", "b", "scales", "", "", "bias"],
              ["y"],
              {
                K: int(K),
                N: int(N),
                bits: int(bits),
                block_size: int(block),
                accuracy_level: int(acc),
              },
              MS,
            ),
          ],
        },
      };
    },
  };
}

const VARIANTS: Variant[] = [
  {
    name: "fp32 MatMul+Add",
    what: "fp32 MatMul + Add, W an initializer (pre-packed by onnxruntime)",
    build: (w, bias, K, N) => ({
      graph: {
        inputs: [],
        inits: [init("w", "float", [K, N], w), biasInit(bias)],
        nodes: [node("MatMul", ["x", "w"], ["xw"]), node("Add", ["xw", "bias"], ["y"])],
      },
    }),
  },
  {
    name: "fp32 MatMul+Add, W fed",
    what: "fp32 MatMul + Add, W fed as a graph input each run (the engine today)",
    build: (w, bias, K, N) => ({
      graph: {
        inputs: [{ name: "w", dtype: "float", shape: [K, N] }],
        inits: [biasInit(bias)],
        nodes: [node("MatMul", ["x", "w"], ["xw"]), node("Add", ["xw", "bias"], ["y"])],
      },
      feeds: { w: new ort.Tensor("float32", w, [K, N]) },
    }),
  },
  {
    name: "fp32 MatMul+Add, no prepack",
    what: "fp32 MatMul + Add, W an initializer, session.disable_prepacking = 1",
    noPrepack: true,
    build: (w, bias, K, N) => ({
      graph: {
        inputs: [],
        inits: [init("w", "float", [K, N], w), biasInit(bias)],
        nodes: [node("MatMul", ["x", "w"], ["xw"]), node("Add", ["xw", "bias"], ["y"])],
      },
    }),
  },
  {
    name: "DQL+MatMulInteger (unfused)",
    what: "DynamicQuantizeLinear + MatMulInteger (u8 x s8, per-column W scale) + Cast + Mul + Add, graph optimization 'basic' (no fusion)",
    level: "basic",
    build: (w, bias, K, N) => ({ graph: matMulIntegerGraph(w, bias, K, N) }),
  },
  {
    name: "DQL+MatMulInteger (level all)",
    what: "the same graph at optimization level 'all' (onnxruntime may fuse it into DynamicQuantizeMatMul)",
    build: (w, bias, K, N) => ({ graph: matMulIntegerGraph(w, bias, K, N) }),
  },
  {
    name: "DynamicQuantizeMatMul per-col",
    what: "com.microsoft DynamicQuantizeMatMul, s8 W with per-column scales, bias input",
    build: (w, bias, K, N) => {
      const { q, scale } = quantInt8(w, K, N, true);
      return {
        graph: {
          inputs: [],
          inits: [init("wq", "int8", [K, N], q), init("ws", "float", [N], scale), biasInit(bias)],
          nodes: [node("DynamicQuantizeMatMul", ["x", "wq", "ws", "", "bias"], ["y"], {}, MS)],
        },
      };
    },
  },
  {
    name: "DynamicQuantizeMatMul per-col, no prepack",
    what: "the same, session.disable_prepacking = 1",
    noPrepack: true,
    build: (w, bias, K, N) => {
      const { q, scale } = quantInt8(w, K, N, true);
      return {
        graph: {
          inputs: [],
          inits: [init("wq", "int8", [K, N], q), init("ws", "float", [N], scale), biasInit(bias)],
          nodes: [node("DynamicQuantizeMatMul", ["x", "wq", "ws", "", "bias"], ["y"], {}, MS)],
        },
      };
    },
  },
  {
    name: "DynamicQuantizeMatMul per-tensor",
    what: "com.microsoft DynamicQuantizeMatMul, s8 W with one scale, bias input",
    build: (w, bias, K, N) => {
      const { q, scale } = quantInt8(w, K, N, false);
      return {
        graph: {
          inputs: [],
          inits: [init("wq", "int8", [K, N], q), init("ws", "float", [1], scale), biasInit(bias)],
          nodes: [node("DynamicQuantizeMatMul", ["x", "wq", "ws", "", "bias"], ["y"], {}, MS)],
        },
      };
    },
  },
  {
    name: "DQL+MatMulIntegerToFloat",
    what: "DynamicQuantizeLinear + com.microsoft MatMulIntegerToFloat (u8 x s8, per-column W scale, bias input)",
    build: (w, bias, K, N) => {
      const { q, scale } = quantInt8(w, K, N, true);
      return {
        graph: {
          inputs: [],
          inits: [init("wq", "int8", [K, N], q), init("ws", "float", [N], scale), biasInit(bias)],
          nodes: [
            node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            node("MatMulIntegerToFloat", ["xq", "wq", "xs", "ws", "xz", "", "bias"], ["y"], {}, MS),
          ],
        },
      };
    },
  },
  nbits(8, 32, 4),
  nbits(8, 64, 4),
  nbits(8, 128, 4),
  nbits(4, 32, 4),
  nbits(4, 64, 4),
  nbits(4, 128, 4),
  nbits(4, 32, 0),
];

/**
 * The backward need `dX = dY W^T` through a frozen layer: the same kernels with the
 * transposed weight as their B (a quantized copy of W^T), against fp32 MatMul on W^T.
 * Bias-free. The variants below take the ALREADY TRANSPOSED matrix (`[N, K]` -> `[K, N]`).
 */
const BACKWARD = new Set([
  "fp32 MatMul+Add",
  "DynamicQuantizeMatMul per-col",
  "DQL+MatMulIntegerToFloat",
  "MatMulNBits b8 blk32 acc4",
  "MatMulNBits b8 blk128 acc4",
  "MatMulNBits b4 blk32 acc4",
]);

// ---- running ----

interface Row {
  arch: string;
  pass: "forward" | "backward";
  K: number;
  N: number;
  tokens: number;
  variant: string;
  threads: number;
  medianMs?: number;
  minMs?: number;
  maxMs?: number;
  gflops?: number;
  speedupVsFp32?: number;
  maxRelErr?: number;
  meanRelErr?: number;
  error?: string;
}

async function runVariant(
  v: Variant,
  w: Float32Array,
  bias: Float32Array,
  x: Float32Array,
  M: number,
  K: number,
  N: number,
  threads: number,
  repeats: number,
): Promise<{ y: Float32Array; ms: number[] }> {
  const { graph, feeds = {} } = v.build(w, bias, K, N);
  const session = await ort.InferenceSession.create(model(graph, K, N), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: v.level ?? "all",
    ...(v.noPrepack ? { extra: { session: { disable_prepacking: "1" } } } : {}),
  });
  const xt = new ort.Tensor("float32", x, [M, K]);
  let y = new Float32Array(0);
  const ms: number[] = [];
  try {
    // Two warm-up runs (thread pool start, first-run allocations), then the timed ones.
    for (let i = 0; i < repeats + 2; i++) {
      const t0 = performance.now();
      const out = await session.run({ x: xt, ...feeds });
      const t = performance.now() - t0;
      if (i >= 2) ms.push(t);
      y = out.y!.data as Float32Array;
    }
  } finally {
    await session.release();
  }
  return { y, ms };
}

function relErrors(y: Float32Array, ref: Float32Array): { max: number; mean: number } {
  let maxDiff = 0;
  let maxRef = 0;
  let sumDiff = 0;
  let sumRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(y[i]! - ref[i]!);
    maxDiff = Math.max(maxDiff, d);
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
    sumDiff += d;
    sumRef += Math.abs(ref[i]!);
  }
  return { max: maxDiff / maxRef, mean: sumDiff / sumRef };
}

async function main(): Promise<void> {
  const { values: o } = parseArgs({
    options: {
      threads: { type: "string", default: "1" },
      tokens: { type: "string", default: String(16 * 300) },
      arch: { type: "string", default: "35m,150m,650m" },
      repeats: { type: "string", default: "5" },
      "outlier-scale": { type: "string", default: "8" },
      only: { type: "string" },
      "no-backward": { type: "boolean", default: false },
      runtime: { type: "string", default: "node" },
      json: { type: "string" },
    },
  });
  if (o.runtime !== "node" && o.runtime !== "web")
    throw new Error(`--runtime expects node or web, got "${o.runtime}"`);
  ort = require(o.runtime === "web" ? "onnxruntime-web" : "onnxruntime-node");
  if (o.runtime === "web") ort.env.wasm.numThreads = Number(o.threads);
  const threads = Number(o.threads);
  const M = Number(o.tokens);
  const repeats = Number(o.repeats);
  const outlier = Number(o["outlier-scale"]);
  const only = o.only?.split(",").map((s) => s.trim());
  const variants = VARIANTS.filter((v) => !only || only.some((p) => v.name.startsWith(p)));
  const rows: Row[] = [];
  const log = (r: Row) => {
    rows.push(r);
    const t = r.error
      ? `ERROR ${r.error}`
      : `${r.medianMs!.toFixed(1)} ms (${r.minMs!.toFixed(1)}..${r.maxMs!.toFixed(1)}) x${r.speedupVsFp32?.toFixed(2)} err max ${r.maxRelErr?.toExponential(2)} mean ${r.meanRelErr?.toExponential(2)}`;
    process.stderr.write(`${r.arch} ${r.pass} ${r.K}->${r.N} ${threads}thr ${r.variant}: ${t}\n`);
  };
  for (const arch of o.arch!.split(",")) {
    for (const s of shapesOf(arch)) {
      const rng = new SeededRandom(s.K * 7 + s.N);
      const w = gaussian(rng, s.K * s.N, 0.02);
      const bias = gaussian(rng, s.N, 0.02);
      const passes: ["forward" | "backward", number, number, Float32Array, Float32Array][] = [
        ["forward", s.K, s.N, w, bias],
      ];
      // Backward: dY [M, N] (gradient-like, no outliers) times W^T [N, K].
      if (!o["no-backward"])
        passes.push(["backward", s.N, s.K, transpose(w, s.K, s.N), new Float32Array(s.K)]);
      for (const [pass, K, N, wp, bp] of passes) {
        const x = pass === "forward" ? activations(rng, M, K, outlier) : gaussian(rng, M * K, 1e-3);
        let ref: Float32Array | undefined;
        let refMs: number | undefined;
        const vs = pass === "forward" ? variants : variants.filter((v) => BACKWARD.has(v.name));
        // fp32 first: the reference output and time.
        const fp32 = VARIANTS[0]!;
        for (const v of [fp32, ...vs.filter((v) => v !== fp32)]) {
          const base = { arch, pass, K, N, tokens: M, variant: v.name, threads };
          try {
            const { y, ms } = await runVariant(v, wp, bp, x, M, K, N, threads, repeats);
            const med = median(ms);
            if (v === fp32) {
              ref = y;
              refMs = med;
            }
            const e = relErrors(y, ref!);
            log({
              ...base,
              medianMs: med,
              minMs: Math.min(...ms),
              maxMs: Math.max(...ms),
              gflops: (2 * M * K * N) / (med * 1e6),
              speedupVsFp32: refMs! / med,
              maxRelErr: e.max,
              meanRelErr: e.mean,
            });
          } catch (e) {
            log({ ...base, error: (e as Error).message.split("\n")[0]!.slice(0, 300) });
          }
        }
      }
    }
  }
  if (o.json) {
    writeFileSync(
      o.json,
      `${JSON.stringify(
        {
          preliminary: "shared, busy machine: timings are noisy; re-run on a quiet machine",
          date: new Date().toISOString(),
          cpu: os.cpus()[0]?.model,
          cores: os.cpus().length,
          loadAverage: os.loadavg(),
          runtime: o.runtime,
          onnxruntime: (ort.env as { versions?: Record<string, string> }).versions,
          threads,
          tokens: M,
          repeats,
          outlierScale: outlier,
          variants: VARIANTS.map((v) => ({ name: v.name, what: v.what })),
          rows,
        },
        null,
        2,
      )}\n`,
    );
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
