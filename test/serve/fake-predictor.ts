/**
 * A deterministic stand-in for ESM-2: class probabilities are a softmax of a few
 * composition features, so every sequence gets its own answer and a batch answers
 * exactly what its sequences answer alone. It records every call (to count batches)
 * and can be slowed down, held until released, or made to fail.
 */
import type { ClassProbabilities, Predictor } from "../../src/serve/predictor";

export interface FakeOptions {
  labels?: string[];
  maxLength?: number;
  /** Each predict() call takes this long. */
  delayMs?: number;
}

const HYDROPHOBIC = new Set("AILMFVWC");
const CHARGED = new Set("DEKRH");

export function fakeProbabilities(sequence: string, classes: number): number[] {
  let h = 0;
  let c = 0;
  for (const ch of sequence) {
    if (HYDROPHOBIC.has(ch)) h++;
    if (CHARGED.has(ch)) c++;
  }
  const n = sequence.length;
  const features = [h / n, c / n, Math.log(n) / 5, (sequence.charCodeAt(0) - 64) / 26];
  const logits = Array.from({ length: classes }, (_, k) =>
    features.reduce((sum, f, j) => sum + f * Math.sin(1 + 3 * k + j) * 4, 0),
  );
  const max = Math.max(...logits);
  const exp = logits.map((l) => Math.exp(l - max));
  const total = exp.reduce((a, b) => a + b, 0);
  return exp.map((e) => e / total);
}

export class FakePredictor implements Predictor {
  readonly labels: string[];
  readonly maxLength: number;
  delayMs: number;
  /** Every batch received, in order. */
  readonly calls: string[][] = [];
  /** When set, the next calls fail with it. */
  failWith: Error | undefined;
  private held: Promise<void> | undefined;
  private releaseHeld: (() => void) | undefined;

  constructor(options: FakeOptions = {}) {
    this.labels = options.labels ?? ["0", "1"];
    this.maxLength = options.maxLength ?? 1024;
    this.delayMs = options.delayMs ?? 0;
  }

  /** Calls from now on wait until release(). */
  hold(): void {
    this.held = new Promise((resolve) => {
      this.releaseHeld = resolve;
    });
  }

  release(): void {
    this.releaseHeld?.();
    this.held = undefined;
  }

  async predict(sequences: string[]): Promise<ClassProbabilities[]> {
    this.calls.push([...sequences]);
    if (this.held) await this.held;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failWith) throw this.failWith;
    return sequences.map((s) => ({
      labels: [...this.labels],
      probabilities: fakeProbabilities(s, this.labels.length),
    }));
  }
}
