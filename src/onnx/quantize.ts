/**
 * int8 weights for ONNX graphs: symmetric per-output-channel quantization of a Linear
 * weight and the ops that multiply float activations by it, with the activations
 * quantized on the fly (dynamic quantization, as onnxruntime's `quantize_dynamic`
 * emits it): DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by the two scales.
 * Every op is in the standard ONNX domain, so the same graph runs on onnxruntime-node
 * and on onnxruntime-web's wasm build; onnxruntime fuses the chain into one kernel.
 *
 * Weights use 7 bits by default (`reduceRange`, values in [-64, 64]): x86 CPUs without
 * VNNI multiply uint8 x int8 pairs with VPMADDUBSW, whose int16 sums saturate above
 * 32767; with |w| <= 64, 255 * 64 * 2 = 32640 cannot. This is what onnxruntime
 * recommends for such CPUs and what the public ESM-2 conversions used.
 */

import type { GraphBuilder } from "./graph";
import { DType } from "./proto";

export interface QuantizeOptions {
  /** Quantize to [-64, 64] instead of [-127, 127] (default true; see the file comment). */
  reduceRange?: boolean;
}

export interface Int8Weight {
  /** `[in, out]` row-major, the layout of the float weight. */
  values: Int8Array;
  /** One scale per output column: `w ~= values * scales[col]`. */
  scales: Float32Array;
  rows: number;
  cols: number;
}

/** Quantizes a `[rows, cols]` weight (`y = x W`) per output column. */
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
  const scales = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) scales[c] = Math.max(scales[c]!, Math.abs(w[r * cols + c]!));
  }
  // An all-zero column keeps scale 1 (its values quantize to 0 either way).
  for (let c = 0; c < cols; c++) scales[c] = scales[c]! > 0 ? scales[c]! / qmax : 1;
  const values = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const q = Math.round(w[r * cols + c]! / scales[c]!);
      values[r * cols + c] = Math.max(-qmax, Math.min(qmax, q));
    }
  }
  return { values, scales, rows, cols };
}

/** The float weight an int8 one stands for (for error checks and tests). */
export function dequantizeInt8(q: Int8Weight): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  for (let i = 0; i < out.length; i++) out[i] = q.values[i]! * q.scales[i % q.cols]!;
  return out;
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

/** Input names of a quantized Linear's weight and scales, by module name. */
export function int8WeightName(module: string): string {
  return `${module}.weight_int8`;
}

export function int8ScaleName(module: string): string {
  return `${module}.weight_scale`;
}
