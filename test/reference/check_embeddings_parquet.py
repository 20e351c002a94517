"""Read an `esmkit embed` Parquet file the way Python users do, and print what they get.

    python check_embeddings_parquet.py FILE

pandas (pyarrow engine) always; Python polars too when it is installed (it is not in
requirements.txt; the output then says so). Prints JSON: the Arrow schema, the pandas
dtypes, the ids, every embedding as a list, per-residue shapes, the file metadata.
"""

import json
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def main():
    path = sys.argv[1]
    pf = pq.ParquetFile(path)
    schema = pq.read_schema(path)
    df = pd.read_parquet(path)
    emb = np.stack(df["embedding"].to_numpy())
    out = {
        "arrow_schema": {f.name: str(f.type) for f in schema},
        "pandas_dtypes": {c: str(t) for c, t in df.dtypes.items()},
        "row_groups": pf.metadata.num_row_groups,
        "rows": len(df),
        "ids": df["id"].tolist(),
        "lengths": df["length"].tolist(),
        "truncated": df["truncated"].tolist(),
        "embedding_dtype": str(emb.dtype),
        "embedding_shape": list(emb.shape),
        "embeddings": emb.tolist(),
        "metadata": {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()},
    }
    if "residue_embeddings" in df:
        mats = [np.stack(cell) for cell in df["residue_embeddings"]]
        out["residue_shapes"] = [list(m.shape) for m in mats]
        out["residue_dtype"] = str(mats[0].dtype)
        out["residues"] = [m.tolist() for m in mats]
    try:
        import polars as pl
    except ImportError:
        out["polars"] = "not installed"
    else:
        p = pl.read_parquet(path)
        out["polars"] = {
            "schema": {k: str(v) for k, v in p.schema.items()},
            "ids": p["id"].to_list(),
            "embeddings": p["embedding"].to_list(),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
