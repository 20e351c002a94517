/**
 * int8 weights for ONNX graphs: symmetric per-output-channel quantization of a Linear
 * weight, and the ops that multiply float activations by it with the activations
 * quantized on the fly (dynamic quantization). One quantizer serves both users:
 *
 * - the export (src/export/) writes what onnxruntime's `quantize_dynamic` emits,
 *   DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by the two scales
 *   (`int8MatMul`), standard-domain ops that onnxruntime-node and onnxruntime-web's wasm
 *   build both run;
 * - the onnx engine (src/onnx/engine.ts, `--quantize int8`) uses onnxruntime's fused
 *   com.microsoft DynamicQuantizeMatMul (`int8DynamicMatMul`), the fastest int8 kernel
 *   measured on this project's CPUs (bench/results/issue-13/int8-kernels.md), for the
 *   forward pass and for the backward pass through a frozen layer (`int8BackwardMatMul`).
 *
 * Weights use 7 bits (`reduceRange`, values in [-64, 64]) where the CPU may need it: x86
 * CPUs without VNNI multiply uint8 x int8 pairs with VPMADDUBSW, whose int16 sums
 * saturate above 32767; with |w| <= 64, 255 * 64 * 2 = 32640 cannot. This is what
 * onnxruntime recommends for such CPUs and what the public ESM-2 conversions used. The
 * export, whose files run anywhere, always uses 7 bits; the engine, which runs here,
 * uses all 8 bits when this CPU has VNNI (`int8RangeHere`).
 */
import { readFileSync } from "node:fs";
import { arch } from "node:os";
import { ConfigError } from "../errors";
import { type GraphBuilder, MS_DOMAIN } from "./graph";
import { DType } from "./proto";

/** How the frozen base's Linear weights are held by the onnx engine (see this file). */
export const QUANTIZE_CHOICES = ["none", "int8"] as const;
export type Quantize = (typeof QUANTIZE_CHOICES)[number];

export function parseQuantize(value: string, origin: string): Quantize {
  if ((QUANTIZE_CHOICES as readonly string[]).includes(value)) return value as Quantize;
  throw new ConfigError(
    `Unknown quantize "${value}" (${origin}); expected one of: ${QUANTIZE_CHOICES.join(", ")}`,
    { value },
  );
}

export interface QuantizeOptions {
  /** Quantize to [-64, 64] instead of [-127, 127] (default true; see the file comment). */
  reduceRange?: boolean;
  /**
   * Which axis holds the output channels, one scale each: 1 (default) for a `[in, out]`
   * weight (`y = x W`, esmkit's layout), 0 for a `[out, in]` one (Hugging Face's).
   */
  channelAxis?: 0 | 1;
}

export interface Int8Weight {
  /** `[rows, cols]` row-major, the layout of the float weight. */
  values: Int8Array;
  /** One scale per output channel: `w ~= values * scales[channel]`. */
  scales: Float32Array;
  rows: number;
  cols: number;
  /** The axis of the channels (see QuantizeOptions); 1 when absent. */
  channelAxis?: 0 | 1;
}

/** Quantizes a `[rows, cols]` weight per output channel (columns by default). */
export function quantizeInt8(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  options: QuantizeOptions = {},
): Int8Weight {
  if (w.length !== rows * cols) {
    throw new Error(`quantizeInt8: ${w.length} values do not make [${rows}, ${cols}]`);
  }
  const qmax = (options.reduceRange ?? true) ? 64 : 127;
  const axis = options.channelAxis ?? 1;
  const channel = axis === 1 ? (_r: number, c: number) => c : (r: number, _c: number) => r;
  const scales = new Float32Array(axis === 1 ? cols : rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const k = channel(r, c);
      scales[k] = Math.max(scales[k]!, Math.abs(w[r * cols + c]!));
    }
  }
  // An all-zero channel keeps scale 1 (its values quantize to 0 either way).
  for (let k = 0; k < scales.length; k++) scales[k] = scales[k]! > 0 ? scales[k]! / qmax : 1;
  const values = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const q = Math.round(w[r * cols + c]! / scales[channel(r, c)]!);
      values[r * cols + c] = Math.max(-qmax, Math.min(qmax, q));
    }
  }
  return { values, scales, rows, cols, channelAxis: axis };
}

/** The float weight an int8 one stands for (for error checks and tests). */
export function dequantizeInt8(q: Int8Weight): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  const byRow = q.channelAxis === 0;
  for (let i = 0; i < out.length; i++) {
    out[i] = q.values[i]! * q.scales[byRow ? Math.floor(i / q.cols) : i % q.cols]!;
  }
  return out;
}

/** `[rows, cols]` int8 values -> `[cols, rows]`. */
export function transposeInt8(values: Int8Array, rows: number, cols: number): Int8Array {
  const out = new Int8Array(values.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c]!;
  }
  return out;
}

let rangeHere: { reduceRange: boolean; reason: string } | undefined;

/**
 * Whether int8 weights must use 7 bits on this CPU (see the file comment): x86 without
 * VNNI (no `avx512_vnni` or `avx_vnni` flag in /proc/cpuinfo, or no /proc/cpuinfo to
 * tell) yes; x86 with VNNI and other architectures (ARM's int8 dot products do not
 * saturate) no. `ESMKIT_INT8_REDUCE_RANGE=1|0` overrides.
 */
export function int8RangeHere(): { reduceRange: boolean; reason: string } {
  const env = process.env.ESMKIT_INT8_REDUCE_RANGE;
  if (env === "1" || env === "0") {
    return { reduceRange: env === "1", reason: `ESMKIT_INT8_REDUCE_RANGE=${env}` };
  }
  if (rangeHere) return rangeHere;
  const a = arch();
  if (a !== "x64" && a !== "ia32") {
    rangeHere = { reduceRange: false, reason: `${a} CPU` };
    return rangeHere;
  }
  let flags = "";
  try {
    flags = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    // not Linux: assume the worst
  }
  const vnni = /\b(avx512_vnni|avx_vnni)\b/.exec(flags);
  rangeHere = vnni
    ? { reduceRange: false, reason: `x86 CPU with ${vnni[1]}: 8-bit weights` }
    : { reduceRange: true, reason: "x86 CPU without VNNI: 7-bit weights (no int16 saturation)" };
  return rangeHere;
}

/**
 * `x [N, in]` float times an int8 weight `wq [in, out]` with `scales [out]`: the
 * activations are quantized per tensor to uint8 at run time. Returns `[N, out]` float.
 */
export function int8MatMul(g: GraphBuilder, x: string, wq: string, scales: string): string {
  const [xq, xScale, xZero] = g.opN("DynamicQuantizeLinear", [x], 3);
  const acc = g.op("MatMulInteger", [xq!, wq, xZero!]); // int32 [N, out]
  const scale = g.op("Mul", [xScale!, scales]); // [out]
  return g.op("Mul", [g.op("Cast", [acc], { to: DType.float }), scale]);
}

/**
 * `x [N, in]` float times an int8 weight `wq [in, out]` with `scales [out]` and an
 * optional `bias [out]`, as one com.microsoft DynamicQuantizeMatMul: the activations are
 * quantized per tensor to uint8 at run time, accumulated in int32 against the weight and
 * scaled back. Returns `[N, out]` float.
 */
export function int8DynamicMatMul(
  g: GraphBuilder,
  x: string,
  wq: string,
  scales: string,
  bias?: string,
): string {
  const inputs = [x, wq, scales];
  if (bias) inputs.push("", bias);
  return g.op("DynamicQuantizeMatMul", inputs, {}, MS_DOMAIN);
}

/**
 * The input gradient through a frozen int8 Linear, `dx = dy W^T` with `W = Q^T diag(s)`
 * the dequantized forward weight: `dx = (dy * s) Q`, Q the `[out, in]` codes (the
 * transpose of the forward's `[in, out]`) and s the per-output scales. The exact transpose
 * of the forward's weight, run by DynamicQuantizeMatMul with a scale of 1 (dy * s is
 * quantized dynamically as the forward's activations are).
 */
export function int8BackwardMatMul(
  g: GraphBuilder,
  dy: string,
  wqT: string,
  scales: string,
): string {
  return g.op("DynamicQuantizeMatMul", [g.op("Mul", [dy, scales]), wqT, g.f32([1])], {}, MS_DOMAIN);
}

/** Input names of a quantized Linear's weight and scales, by module name. */
export function int8WeightName(module: string): string {
  return `${module}.weight_int8`;
}

/** The `[out, in]` codes of a quantized Linear (the backward pass's weight). */
export function int8WeightTName(module: string): string {
  return `${module}.weight_int8_t`;
}

export function int8ScaleName(module: string): string {
  return `${module}.weight_scale`;
}
