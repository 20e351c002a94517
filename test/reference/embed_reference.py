"""Reference embeddings from Hugging Face `transformers` EsmModel (pinned in requirements.txt).

What `esmkit embed` must reproduce: for each protein, run alone (no padding) through
`EsmModel.from_pretrained(DIR)(..., output_hidden_states=True)`, take
`hidden_states[layer]` and
- mean: average over the residue tokens, positions 1 .. n-2 (no <cls>, no <eos>);
- cls: position 0;
- per residue: the rows of positions 1 .. n-2.
Sequences longer than max_length - 2 residues are cut by the tokenizer
(`truncation=True, max_length=...`), as esmkit does.

It also records what transformers 5.23 returns as hidden_states[num_layers]: after the
final LayerNorm (`emb_layer_norm_after`), equal to `last_hidden_state` (the
`capture_outputs` decorator replaces the last layer's raw output with it), and not
the last layer's output before that LayerNorm.

    # committed fixtures for the tiny test models (test/fixtures/embed/)
    python embed_reference.py fixtures

    # the same numbers for any model directory, as JSON on stdout (the 8M test)
    python embed_reference.py embed DIR SEQUENCES_JSON [--max-length N] [--layers 0,6]
"""

import argparse
import json
import os
import sys

import torch
import transformers
from transformers import EsmModel, EsmTokenizer

transformers.logging.set_verbosity_error()

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
VOCAB = os.path.join(FIXTURES, "tokenizer", "vocab.txt")

# Ids and residues (already normalised: uppercase, vocabulary letters only). Lengths 1 to
# 61, every letter of the vocabulary, and one protein past the fixtures' max_length.
SEQUENCES = [
    ["P1", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"],
    ["single", "W"],
    ["P3", "ACDEFGHIKLMNPQRSTVWYXBUZO"],
    ["gaps", "MKV.-LLAG"],
    ["long", "MSTNPKPQRKTKRNTNRRPQDVKFPGGGQIVGGVYLLPRRGPRLGVRATRKTSERSQPRGRR"],
    ["P6", "GSHMSLFDFFKNKGSAA"],
    ["P7", "MAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAK"],
    ["P8", "QQ"],
]
# Tokens incl. <cls>/<eos> for the committed fixtures: "long" (61 residues) and "P7" (42)
# are truncated to 38 residues.
FIXTURE_MAX_LENGTH = 40


def tokenizer():
    return EsmTokenizer(VOCAB)


@torch.no_grad()
def reference(model_dir, sequences, max_length, layers=None, per_residue_layers=()):
    tok = tokenizer()
    model = EsmModel.from_pretrained(model_dir, add_pooling_layer=False)
    model.eval()
    n = model.config.num_hidden_layers
    layers = list(range(n + 1)) if layers is None else layers
    out = {
        "num_layers": n,
        "hidden_size": model.config.hidden_size,
        "max_length": max_length,
        "ids": [],
        "lengths": [],
        "embedded_residues": [],
        "mean": {str(l): [] for l in layers},
        "cls": {str(l): [] for l in layers},
        "per_residue": {str(l): [] for l in per_residue_layers},
        "last_equals_last_hidden_state": True,
        "last_is_final_norm_of_last_layer": True,
        "last_differs_from_last_layer_output": True,
    }
    for seq_id, seq in sequences:
        enc = tok(seq, truncation=True, max_length=max_length, return_tensors="pt")
        res = model(**enc, output_hidden_states=True)
        hs = res.hidden_states
        assert len(hs) == n + 1, f"{len(hs)} hidden states for {n} layers"
        out["last_equals_last_hidden_state"] &= bool(torch.equal(hs[n], res.last_hidden_state))
        # hs[n] is emb_layer_norm_after(output of the last layer), not that output itself.
        pre = model.encoder.layer[n - 1](hs[n - 1], position_embeddings=rotary(model, hs[n - 1]))
        pre = pre[0] if isinstance(pre, tuple) else pre
        normed = model.encoder.emb_layer_norm_after(pre)
        out["last_is_final_norm_of_last_layer"] &= bool(torch.allclose(normed, hs[n], atol=1e-6))
        out["last_differs_from_last_layer_output"] &= not bool(torch.allclose(pre, hs[n], atol=1e-3))
        t = enc["input_ids"].shape[1]
        out["ids"].append(seq_id)
        out["lengths"].append(len(seq))
        out["embedded_residues"].append(t - 2)
        for l in layers:
            h = hs[l][0]  # [tokens, hidden]
            out["mean"][str(l)].append(rounded(h[1 : t - 1].mean(0)))
            out["cls"][str(l)].append(rounded(h[0]))
        for l in per_residue_layers:
            out["per_residue"][str(l)].append(rounded(hs[l][0][1 : t - 1]))
    return out


def rounded(t):
    """7 decimals: 5e-8 of rounding, far below the 1e-4 tolerance, and half the bytes."""
    return torch.round(t.double(), decimals=7).tolist()


def rotary(model, h):
    pos = torch.arange(h.shape[1]).unsqueeze(0)
    return model.rotary_embeddings(h, pos)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def generator():
    return f"transformers {transformers.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}"


def cmd_fixtures(_a):
    out_dir = os.path.join(FIXTURES, "embed")
    os.makedirs(out_dir, exist_ok=True)
    for name in ("tiny", "odd"):
        model_dir = os.path.join(FIXTURES, "model", name)
        n = EsmModel.from_pretrained(model_dir).config.num_hidden_layers
        # Per-residue rows for the last hidden state (tiny) and a middle one (odd).
        per = (n,) if name == "tiny" else (1,)
        ref = reference(model_dir, SEQUENCES, FIXTURE_MAX_LENGTH, per_residue_layers=per)
        ref["model"] = f"test/fixtures/model/{name}"
        ref["sequences"] = SEQUENCES
        ref["generator"] = generator()
        write_json(os.path.join(out_dir, f"{name}.json"), ref)
        print(f"wrote {name}.json ({n} layers)")


def cmd_embed(a):
    with open(a.sequences) as f:
        sequences = json.load(f)
    layers = [int(x) for x in a.layers.split(",")] if a.layers else None
    per = [int(x) for x in a.per_residue.split(",")] if a.per_residue else ()
    ref = reference(a.dir, sequences, a.max_length, layers, per)
    ref["generator"] = generator()
    print(json.dumps(ref))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures", help="write test/fixtures/embed/{tiny,odd}.json")
    f.set_defaults(fn=cmd_fixtures)
    e = sub.add_parser("embed", help="reference embeddings of [[id, sequence], ...] as JSON")
    e.add_argument("dir")
    e.add_argument("sequences", help="JSON file: [[id, sequence], ...]")
    e.add_argument("--max-length", type=int, default=1024)
    e.add_argument("--layers", help="comma-separated hidden state numbers (default: all)")
    e.add_argument("--per-residue", help="comma-separated layers to give per-residue rows for")
    e.set_defaults(fn=cmd_embed)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
