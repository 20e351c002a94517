"""Draws the 50 DeepLoc proteins of the export equivalence test (test/export/) from the
bundled sample: 47 evenly spaced by length among those of 50..1,022 residues, and the
3 shortest above 1,022 (up to 1,100), which esmkit and transformers.js must truncate
the same way. Deterministic; rerun to regenerate test/fixtures/export/deeploc-50.fasta.

    .venv/bin/python test/reference/make_export_sample.py
"""

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

data = pd.read_csv(ROOT / "data" / "deeploc-sample.csv")
data["length"] = data["Sequence"].str.len()
data = data.sort_values(["length", "ACC"], kind="stable").reset_index(drop=True)
fits = data[(data["length"] >= 50) & (data["length"] <= 1022)].reset_index(drop=True)
picks = [round(i * (len(fits) - 1) / 46) for i in range(47)]
chosen = pd.concat(
    [fits.iloc[picks], data[(data["length"] > 1022) & (data["length"] <= 1100)].head(3)]
)
assert len(chosen) == 50 and chosen["ACC"].is_unique
out = ROOT / "test" / "fixtures" / "export" / "deeploc-50.fasta"
with out.open("w") as f:
    for row in chosen.itertuples():
        f.write(f">{row.ACC} membrane={int(row.Membrane)} length={row.length}\n")
        seq = row.Sequence
        for i in range(0, len(seq), 60):
            f.write(seq[i : i + 60] + "\n")
print(f"wrote {out.relative_to(ROOT)}: {len(chosen)} proteins, {chosen['length'].min()}-{chosen['length'].max()} residues")
