"""Committed ESM-2 parity fixtures from Hugging Face `transformers` (pinned in requirements.txt).

Writes test/fixtures/model/:
- tiny/: 2 layers, hidden 32, 4 heads (head dim 8), 2 labels, saved by `save_pretrained`
  (the pinned transformers' own layout), batch of 4 with padding, <mask> and unknowns;
- odd/: 3 layers, hidden 48, 4 heads (head dim 12), 3 named labels, the facebook/esm2_*
  hub layout sharded in two files with model.safetensors.index.json, odd lengths
  (an empty sequence, one residue, 7, 13, 28);
- dtypes.safetensors + dtypes.json: F16/BF16/F32 tensors (and an I64 one) with their
  float32 values, for the safetensors reader.

Each model directory holds config.json, the weights, the tokenizer files, inputs.json
(sequences and the exact input_ids/attention_mask Python's tokenizer produced) and
expected.json (last_hidden_state, logits, mlm_logits, pooled_mean, pooled_cls). Rerun
after a pin bump and review the diff:

    .venv/bin/python test/reference/make_model_fixtures.py
"""

import json
import os
import shutil

import torch
from safetensors.torch import save_file

from esm_reference import DEFAULT_SEQUENCES, build, esm_config

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "model")

ODD_SEQUENCES = ["", "W", "MK<mask>TAYI", "GSHMJKLVQ<mask>EF", "MKTAYIAKQRQISFVKSHFSRQLEERLG"]


def dtype_fixture():
    values = [0.0, -0.0, 1.0, -2.5, 1 / 3, 65504.0, 6.0e-8, 1.0e-5, 3.0e38, float("inf"), float("-inf")]
    base = torch.tensor(values, dtype=torch.float32)
    tensors = {
        "f32": base.clone(),
        "f16": base.clamp(-65504, 65504).half(),
        "bf16": base.bfloat16(),
        "f16_matrix": torch.arange(6, dtype=torch.float16).reshape(2, 3) / 4,
        "i64": torch.arange(4, dtype=torch.int64),
    }
    tensors["f16"][-2:] = torch.tensor([float("inf"), float("-inf")], dtype=torch.float16)
    save_file(tensors, os.path.join(OUT, "dtypes.safetensors"), metadata={"format": "pt"})

    def as_json(t):
        return [v if v == v and abs(v) != float("inf") else str(v) for v in t.float().flatten().tolist()]

    expected = {k: {"shape": list(v.shape), "values": as_json(v)} for k, v in tensors.items() if k != "i64"}
    with open(os.path.join(OUT, "dtypes.json"), "w") as f:
        json.dump(expected, f, indent=1)


def main():
    for name in ("tiny", "odd"):
        shutil.rmtree(os.path.join(OUT, name), ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    build(
        os.path.join(OUT, "tiny"),
        esm_config(layers=2, hidden=32, heads=4, num_labels=2),
        seed=1,
        sequences=DEFAULT_SEQUENCES,
        layout="save_pretrained",
        description="tiny: 2 layers, hidden 32, 4 heads",
    )
    build(
        os.path.join(OUT, "odd"),
        esm_config(layers=3, hidden=48, heads=4, id2label=["cytoplasm", "membrane", "secreted"]),
        seed=2,
        sequences=ODD_SEQUENCES,
        layout="hub",
        shards=2,
        description="odd: 3 layers, hidden 48, 4 heads (head dim 12), hub layout in 2 shards",
    )
    dtype_fixture()
    total = 0
    for root, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
