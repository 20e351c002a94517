"""Independent check of `esmkit prepare` output with pandas + transformers.

Reads the source CSV with pandas, applies the documented filter (lengths
MIN..MAX residues, label 0/1), tokenizes with Hugging Face EsmTokenizer, reads our
train/test Parquet files with pandas.read_parquet, and prints a JSON report of
what matched. The Node test asserts on the report.

    python check_prepared.py CSV OUT_DIR VOCAB_DIR [MIN MAX TOKEN_MAX LABEL]
"""

import json
import sys

import pandas as pd
from transformers import EsmTokenizer


def main(csv_path, out_dir, vocab_dir, lo="100", hi="512", token_max="512", label="Membrane"):
    lo, hi, token_max = int(lo), int(hi), int(token_max)
    src = pd.read_csv(csv_path)
    src = src[src["Sequence"].str.len().between(lo, hi)]
    tok = EsmTokenizer.from_pretrained(vocab_dir)
    train = pd.read_parquet(f"{out_dir}/train.parquet")
    test = pd.read_parquet(f"{out_dir}/test.parquet")
    both = pd.concat([train, test])
    expected = src.set_index("ACC")
    got = both.set_index("id")
    same_ids = sorted(expected.index) == sorted(got.index)
    labels_match = bool((expected.loc[got.index, label].astype(int) == got["label"]).all()) if same_ids else False
    seq_match = bool((expected.loc[got.index, "Sequence"] == got["sequence"]).all()) if same_ids else False
    ids_mismatch = 0
    for seq, ids, mask in zip(both["sequence"], both["input_ids"], both["attention_mask"]):
        enc = tok(seq, truncation=True, max_length=token_max)
        if list(ids) != enc["input_ids"] or list(mask) != enc["attention_mask"]:
            ids_mismatch += 1
    report = {
        "expected_rows": int(len(src)),
        "expected_positive": int(src[label].astype(int).sum()),
        "train_rows": int(len(train)),
        "test_rows": int(len(test)),
        "overlap": int(len(set(train["id"]) & set(test["id"]))),
        "same_ids": same_ids,
        "labels_match": labels_match,
        "sequences_match": seq_match,
        "input_ids_mismatches": ids_mismatch,
        "dtypes": {c: str(t) for c, t in train.dtypes.items()},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
