/**
 * Matmul-heavy ops with hand-written gradients that avoid the transposed matmul forms.
 *
 * tfjs's matMul gradient computes `dy x B^T` and `A^T x dy` with `matMul(.., true)`
 * flags. On the wasm backend those transposed forms run 15-20x slower than
 * transposing first and multiplying plainly (see the runtime facts in the spec), and
 * they made a LoRA training step spend 95 % of its time in BatchMatMul. The forward
 * passes are unchanged; the backward passes materialise the transposes. Weight
 * gradients of frozen weights (LoRA's base) are skipped: the tape never uses them.
 */
import * as tf from "@tensorflow/tfjs-core";

/** tf.customGrad's parameter type (its variadic signature does not fit named parameters). */
type GradFn = Parameters<typeof tf.customGrad>[0];

function t2(x: tf.Tensor): tf.Tensor2D {
  return tf.transpose(x) as tf.Tensor2D;
}

/** Swap the last two axes of a rank-4 tensor. */
function t4(x: tf.Tensor): tf.Tensor4D {
  return tf.transpose(x, [0, 1, 3, 2]) as tf.Tensor4D;
}

/**
 * `x W + b` for `x [N, in]`, `W [in, out]`, `b [out]`. With `weightTrainable` false only
 * the input gets a gradient.
 */
export function dense(
  x: tf.Tensor2D,
  w: tf.Tensor2D,
  b: tf.Tensor1D | null,
  weightTrainable: boolean,
): tf.Tensor2D {
  if (!weightTrainable) {
    // Frozen (LoRA's base): W and b are closed over instead of being op inputs, so the
    // tape computes no weight-sized gradient for them at all.
    const f = tf.customGrad(((xi: tf.Tensor, save: tf.GradSaveFunc) => {
      save([]);
      return {
        value: tf.fused.matMul({ a: xi as tf.Tensor2D, b: w, bias: b ?? undefined }),
        gradFunc: (dy: tf.Tensor) => [tf.matMul(dy as tf.Tensor2D, t2(w))], // [N, out] x [out, in]
      };
    }) as unknown as GradFn);
    return f(x) as tf.Tensor2D;
  }
  if (b) {
    const f = tf.customGrad(((
      xi: tf.Tensor,
      wi: tf.Tensor,
      bi: tf.Tensor,
      save: tf.GradSaveFunc,
    ) => {
      save([xi, wi]);
      return {
        value: tf.fused.matMul({ a: xi as tf.Tensor2D, b: wi as tf.Tensor2D, bias: bi }),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
          const dx = tf.matMul(dy as tf.Tensor2D, t2(ws)); // [N, out] x [out, in]
          const dw = tf.matMul(t2(xs), dy as tf.Tensor2D); // [in, N] x [N, out]
          return [dx, dw, tf.sum(dy, 0)];
        },
      };
    }) as unknown as GradFn);
    return f(x, w, b) as tf.Tensor2D;
  }
  return matMul2d(x, w, true);
}

/** `a b` for 2-D tensors; `bTrainable` false skips b's gradient. */
export function matMul2d(a: tf.Tensor2D, b: tf.Tensor2D, bTrainable = true): tf.Tensor2D {
  const f = tf.customGrad(((ai: tf.Tensor, bi: tf.Tensor, save: tf.GradSaveFunc) => {
    save([ai, bi]);
    return {
      value: tf.matMul(ai as tf.Tensor2D, bi as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [as, bs] = saved as [tf.Tensor2D, tf.Tensor2D];
        const da = tf.matMul(dy as tf.Tensor2D, t2(bs));
        const db = bTrainable ? tf.matMul(t2(as), dy as tf.Tensor2D) : tf.zerosLike(bs);
        return [da, db];
      },
    };
  }) as unknown as GradFn);
  return f(a, b) as tf.Tensor2D;
}

/**
 * `softmax(q kT + mask) v` with `q, v [B, nh, L, hd]`, `kT [B, nh, hd, L]`, `mask`
 * broadcastable to `[B, nh, L, L]`. Backward (P = the softmax):
 *   dV = P^T dC;  dP = dC V^T;  dS = P * (dP - rowsum(dP * P));  dQ = dS K;  dKT = Q^T dS.
 */
export function attention(
  q: tf.Tensor4D,
  kT: tf.Tensor4D,
  v: tf.Tensor4D,
  mask: tf.Tensor4D,
): tf.Tensor4D {
  const f = tf.customGrad(((
    qi: tf.Tensor,
    ki: tf.Tensor,
    vi: tf.Tensor,
    mi: tf.Tensor,
    save: tf.GradSaveFunc,
  ) => {
    const p = tf.softmax(tf.add(tf.matMul(qi as tf.Tensor4D, ki as tf.Tensor4D), mi)); // [B, nh, L, L]
    save([qi, ki, vi, p]);
    return {
      value: tf.matMul(p as tf.Tensor4D, vi as tf.Tensor4D), // [B, nh, L, hd]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qs, ks, vs, ps] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
        const dC = dy as tf.Tensor4D;
        const dV = tf.matMul(t4(ps), dC); // [B, nh, L, hd]
        const dP = tf.matMul(dC, t4(vs)); // [B, nh, L, L]
        const dS = tf.mul(ps, tf.sub(dP, tf.sum(tf.mul(dP, ps), -1, true))) as tf.Tensor4D;
        const dQ = tf.matMul(dS, t4(ks)); // [B, nh, L, hd]
        const dKT = tf.matMul(t4(qs), dS); // [B, nh, hd, L]
        return [dQ, dKT, dV, tf.zerosLike(mi)];
      },
    };
  }) as unknown as GradFn);
  return f(q, kT, v, mask) as tf.Tensor4D;
}

/** True while a gradient tape is recording (inside tf.grads / variableGrads). */
export function recordingGradients(): boolean {
  const state = (tf.engine() as unknown as { state: { gradientDepth: number } }).state;
  return state.gradientDepth > 0;
}
