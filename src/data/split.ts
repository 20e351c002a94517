/**
 * Multi-label stratification: Sechidis, Tsoumakas and Vlahavas' iterative
 * stratification ("On the stratification of multi-label data", ECML PKDD 2011), for two
 * folds (train, test). Label by label, rarest first, each row carrying the label goes to
 * the fold that still needs the most of that label (ties: the fold that needs the most
 * rows, then a seeded coin), so every label's positives are shared out in proportion
 * even when it is rare; rows with no label fill the folds up to their sizes last.
 *
 * The test fold's size is near `testSize * n`, not exactly `ceil(testSize * n)` as the
 * random split's: a row moves all its labels at once, so the label quotas pull the
 * sizes a little (DeepLoc's sample at 0.2: 346 test rows of 1,701 instead of 340).
 */
import { SeededRandom } from "../util/random";

/** Row indices of the test fold; `rows` are 0/1 vectors of equal length. */
export function iterativeStratification(
  rows: readonly ArrayLike<number>[],
  testSize: number,
  seed: number,
): Set<number> {
  const n = rows.length;
  const k = rows[0]?.length ?? 0;
  const rng = new SeededRandom(seed);
  const ratios = [1 - testSize, testSize];
  // Rows still needed per fold, and per fold and label.
  const need = ratios.map((r) => r * n);
  const byLabel: number[][] = Array.from({ length: k }, () => []);
  rows.forEach((row, i) => {
    for (let c = 0; c < k; c++) if (row[c] === 1) byLabel[c]!.push(i);
  });
  const needLabel = ratios.map((r) => byLabel.map((members) => r * members.length));
  const fold = new Int8Array(n).fill(-1);
  const remaining = byLabel.map((members) => members.length);

  const assign = (i: number, f: number) => {
    fold[i] = f;
    need[f]! -= 1;
    const row = rows[i]!;
    for (let c = 0; c < k; c++) {
      if (row[c] !== 1) continue;
      needLabel[f]![c]! -= 1;
      remaining[c]! -= 1;
    }
  };
  const pick = (scores: number[], tie: number[]): number => {
    let best = [0];
    for (let f = 1; f < scores.length; f++) {
      if (scores[f]! > scores[best[0]!]!) best = [f];
      else if (scores[f] === scores[best[0]!]) best.push(f);
    }
    if (best.length > 1) {
      const top = Math.max(...best.map((f) => tie[f]!));
      best = best.filter((f) => tie[f] === top);
    }
    return best.length === 1 ? best[0]! : best[rng.int(best.length)]!;
  };

  for (;;) {
    // The rarest label with rows left (ties: the lowest index).
    let label = -1;
    for (let c = 0; c < k; c++) {
      if (remaining[c]! > 0 && (label < 0 || remaining[c]! < remaining[label]!)) label = c;
    }
    if (label < 0) break;
    const members = byLabel[label]!.filter((i) => fold[i] === -1);
    rng.shuffle(members);
    for (const i of members) {
      assign(
        i,
        pick(
          needLabel.map((perLabel) => perLabel[label]!),
          need,
        ),
      );
    }
  }
  const unlabelled: number[] = [];
  for (let i = 0; i < n; i++) if (fold[i] === -1) unlabelled.push(i);
  rng.shuffle(unlabelled);
  for (const i of unlabelled) assign(i, pick(need, need));
  const test = new Set<number>();
  for (let i = 0; i < n; i++) if (fold[i] === 1) test.add(i);
  return test;
}
