/**
 * Principal component analysis for plotting embeddings in 2-D (or any few dimensions):
 * centre the vectors, then find the top eigenvectors of their covariance by power
 * iteration with deflation. Plain float64 JavaScript, deterministic (a fixed start
 * vector), fine for the thousands of vectors a notebook plots; each component's sign is
 * fixed so that its largest coordinate is positive (as sklearn's svd_flip does).
 */
import { ConfigError } from "../errors";

export interface PcaResult {
  /** One row of `components` coordinates per input vector. */
  points: number[][];
  /** Unit vectors, one per component, in input space. */
  components: number[][];
  /** Variance along each component. */
  variance: number[];
  /** Each component's share of the total variance. */
  explainedRatio: number[];
}

/** Project `vectors` (n x d) onto their top `components` principal components. */
export function pca(
  vectors: readonly ArrayLike<number>[],
  options: { components?: number; iterations?: number } = {},
): PcaResult {
  const n = vectors.length;
  const k = options.components ?? 2;
  const d = vectors[0]?.length ?? 0;
  if (n < 2 || d < 1) {
    throw new ConfigError(`pca needs at least 2 vectors of at least 1 value; got ${n} x ${d}`, {
      n,
      d,
    });
  }
  if (!(Number.isInteger(k) && k >= 1 && k <= d)) {
    throw new ConfigError(`pca components must be an integer in 1..${d}; got ${k}`, {
      components: k,
    });
  }
  const mean = new Float64Array(d);
  for (const v of vectors) {
    if (v.length !== d) {
      throw new ConfigError(`pca vectors must have one length; got ${v.length} and ${d}`, { d });
    }
    for (let j = 0; j < d; j++) mean[j]! += v[j]! / n;
  }
  const x = vectors.map((v) => Float64Array.from({ length: d }, (_, j) => v[j]! - mean[j]!));
  // Covariance C = X^T X / (n - 1), d x d.
  const cov = Array.from({ length: d }, () => new Float64Array(d));
  for (const row of x) {
    for (let a = 0; a < d; a++) {
      const ra = row[a]!;
      if (ra === 0) continue;
      const ca = cov[a]!;
      for (let b = 0; b < d; b++) ca[b]! += ra * row[b]!;
    }
  }
  let total = 0;
  for (let a = 0; a < d; a++) {
    for (let b = 0; b < d; b++) cov[a]![b]! /= n - 1;
    total += cov[a]![a]!;
  }
  const components: number[][] = [];
  const variance: number[] = [];
  const iterations = options.iterations ?? 500;
  for (let c = 0; c < k; c++) {
    // A start vector no eigenvector is likely to be orthogonal to.
    let v = Float64Array.from({ length: d }, (_, j) => 1 + ((j * 7919 + c * 104729) % 97) / 97);
    let lambda = 0;
    for (let it = 0; it < iterations; it++) {
      const w = new Float64Array(d);
      for (let a = 0; a < d; a++) {
        let s = 0;
        const ca = cov[a]!;
        for (let b = 0; b < d; b++) s += ca[b]! * v[b]!;
        w[a] = s;
      }
      const norm = Math.hypot(...w);
      if (norm === 0) break;
      for (let a = 0; a < d; a++) w[a]! /= norm;
      const delta = w.reduce((s, wa, a) => s + Math.abs(wa - v[a]!), 0);
      v = w;
      lambda = norm;
      if (delta < 1e-12) break;
    }
    let big = 0;
    for (let a = 1; a < d; a++) if (Math.abs(v[a]!) > Math.abs(v[big]!)) big = a;
    if (v[big]! < 0) for (let a = 0; a < d; a++) v[a] = -v[a]!;
    components.push(Array.from(v));
    variance.push(lambda);
    // Deflate: C -= lambda v v^T.
    for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) cov[a]![b]! -= lambda * v[a]! * v[b]!;
  }
  const points = x.map((row) =>
    components.map((comp) => comp.reduce((s, ca, a) => s + ca * row[a]!, 0)),
  );
  return {
    points,
    components,
    variance,
    explainedRatio: variance.map((v) => (total > 0 ? v / total : 0)),
  };
}
