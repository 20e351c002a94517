/**
 * tfjs-core's CommonJS build (what `require("@tensorflow/tfjs-core")` loads in Node)
 * registers kernels but no gradient functions, so `tf.grad` fails ("gradient function
 * not found for RealDiv"). The union package `@tensorflow/tfjs` registers all of
 * them with the same tfjs-core instance; loading it once is enough. It does not
 * change the active backend.
 */
let registered = false;

export function ensureGradients(): void {
  if (registered) return;
  require("@tensorflow/tfjs");
  registered = true;
}
