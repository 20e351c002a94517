"""Independent check of the labels `esmkit prepare` wrote for a task: reads the source
CSV with pandas and our train/test Parquet with pandas (and `datasets`), and compares
every kept row's `label` with the CSV's label columns as stats.json's task describes
them (class ids in id2label order, 0/1 vectors, or targets).

    python check_prepared_task.py CSV OUT_DIR

Prints {"rows", "mismatches", "label_dtype", "datasets_label"}.
"""

import json
import sys

import numpy as np
import pandas as pd
from datasets import Dataset


def class_id(value, names):
    """The documented mapping: integer classes 0..k-1 are their own ids (names LABEL_i);
    otherwise the id is the position of the class's text among the sorted names, numbers
    written in their shortest form ("1.0" is class "1")."""
    try:
        f = float(value)
        value = str(int(f)) if f.is_integer() else repr(f)
    except ValueError:
        pass
    if names[0] == "LABEL_0":
        return int(value)
    return names.index(value)


def main(csv_path, out_dir):
    stats = json.load(open(f"{out_dir}/stats.json"))
    task = stats["task"]
    src = pd.read_csv(csv_path, keep_default_na=False, dtype=str).set_index("ACC")
    both = pd.concat([pd.read_parquet(f"{out_dir}/{s}.parquet") for s in ("train", "test")])
    names = task["labels"]
    mismatches = []
    for acc, label in zip(both["id"], both["label"]):
        cells = [src.loc[acc, c] for c in task["columns"]]
        if task["problemType"] == "single_label_classification":
            expected = class_id(cells[0].strip(), names)
            ok = int(label) == expected
        else:
            expected = [float(c) for c in cells]
            got = np.atleast_1d(np.asarray(label, dtype=np.float64)).tolist()
            ok = got == expected
        if not ok:
            mismatches.append([acc, str(label), str(cells)])
    ds = Dataset.from_parquet(f"{out_dir}/train.parquet")
    print(json.dumps({
        "rows": int(len(both)),
        "mismatches": mismatches[:5],
        "mismatch_count": len(mismatches),
        "label_dtype": str(both["label"].dtype),
        "datasets_label": str(ds.features["label"]),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
