"""Draw the bundled DeepLoc-2.0 sample from the full training/validation CSV.

Stratified by label (Membrane), by whether the length is inside 100..512, and by
homology partition, so the demo and tests see the real class balance, the length
filter at work and every partition. Standard library only; deterministic.

    python3 data/make_sample.py PATH/TO/Swissprot_Train_Validation_dataset.csv
"""

import csv
import random
import sys
from collections import defaultdict

IN_RANGE_ROWS = 1700
OUT_OF_RANGE_ROWS = 250
SEED = 7


def main(src: str, dst: str = "data/deeploc-sample.csv") -> None:
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    col = {name: i for i, name in enumerate(header)}
    strata = defaultdict(list)
    for r in rows:
        n = len(r[col["Sequence"]])
        # Mostly in-range proteins (what the demo trains on), some outside to show the filter.
        in_range = 100 <= n <= 512
        strata[(r[col["Membrane"]], in_range, r[col["Partition"]])].append(r)
    rng = random.Random(SEED)
    totals = defaultdict(int)
    for (_, in_range, _), group in strata.items():
        totals[in_range] += len(group)
    out = []
    for key in sorted(strata):
        group = strata[key]
        target = IN_RANGE_ROWS if key[1] else OUT_OF_RANGE_ROWS
        k = round(target * len(group) / totals[key[1]])
        out.extend(rng.sample(group, min(k, len(group))))
    out.sort(key=lambda r: int(r[0]))
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(out)
    print(f"wrote {len(out)} rows to {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:])
