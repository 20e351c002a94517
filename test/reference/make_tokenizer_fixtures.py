"""Expected ESM-2 token ids from Hugging Face `transformers`' EsmTokenizer.

Writes test/fixtures/tokenizer/{vocab.txt,cases.json,saved/*}. The vocabulary is the
one published with every facebook/esm2_* checkpoint (33 tokens). Versions are pinned in
requirements.txt; rerun after a pin bump and review the diff:

    .venv/bin/python test/reference/make_tokenizer_fixtures.py
"""

import json
import os
import sys

import transformers
from transformers import EsmTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "tokenizer")

VOCAB = (
    "<cls> <pad> <eos> <unk> L A G V S E R T I D P K Q N F Y M H W C X B U Z O . - "
    "<null_1> <mask>"
).split()

SINGLE = [
    "",
    "M",
    "MKTAYIAKQR",
    "LAGVSERTIDPKQNFYMHWC",
    "XBUZO",
    "MKT.-AY",
    "mktayiak",
    "MKTaYIAK",
    "MKT AYI AK",
    "  MKTAYIAK  ",
    "MKT\tAYI\nAK",
    "MKTJAYIAK",
    "MKTJJJAYIAK",
    "JMKT",
    "MKTJ",
    "J",
    "JJJJ",
    "MKT*",
    "MKT1234AY",
    "MKT-J-AY",
    "MK<mask>TAY",
    "<mask>",
    "<mask><mask>",
    "MK <mask> TAY",
    "<cls>MKT<eos>",
    "MKT<pad>AY",
    "MKT<unk>AY",
    "MK<null_1>T",
    "<MASK>MKT",
    "MK<maskT",
    "MK<mask",
    "MKT>AY",
    "MKTéAY",
    "MKT😀AY",
    "MKTJ AY",
    "MKT J AY",
    "MKT\u00a0AY",
    "MKTa b cAY",
    "ACDEFGHIKLMNPQRSTVWYACDEFGHIKLMNPQRSTVWY",
    "U" * 5,
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWUAYNPSKMIRLVFY",
]

TRUNCATE = [
    ("MKTAYIAKQR", 5),
    ("MKTAYIAKQR", 12),
    ("MKTAYIAKQR", 11),
    ("MKTAYIAKQR", 3),
    ("MKTJJAYIAKQR", 6),
    ("MK<mask>TAYIAKQR", 6),
    ("A" * 600, 512),
    ("M" * 510, 512),
    ("M" * 511, 512),
]

BATCHES = [
    {"sequences": ["MKTAYIAKQR", "MKT", "ACDEFGHIK"], "padding": "longest"},
    {"sequences": ["MKTAYIAKQR", "MKT", "JJ"], "padding": "max_length", "max_length": 16},
    {"sequences": ["MKTAYIAKQRQISFVKSHF", "MKT", "A" * 30], "padding": "longest", "truncation": True, "max_length": 12},
    {"sequences": ["MKTAYIAKQRQISFVKSHF", "MKT"], "padding": "max_length", "truncation": True, "max_length": 8},
    {"sequences": ["mkt", "M<mask>T", ""], "padding": "longest"},
]


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    vocab_path = os.path.join(OUT, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB))
    tok = EsmTokenizer(vocab_path)

    cases = []
    for s in SINGLE:
        enc = tok(s)
        cases.append({"kind": "single", "text": s, "input_ids": enc["input_ids"],
                      "attention_mask": enc["attention_mask"], "tokens": tok.tokenize(s)})
    for s, n in TRUNCATE:
        enc = tok(s, truncation=True, max_length=n)
        cases.append({"kind": "truncate", "text": s, "max_length": n,
                      "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    for b in BATCHES:
        kw = {k: v for k, v in b.items() if k != "sequences"}
        enc = tok(b["sequences"], **kw)
        cases.append({"kind": "batch", "texts": b["sequences"], "options": kw,
                      "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    decode = [[0, 20, 15, 11, 2], [0, 20, 32, 11, 2, 1, 1], [0, 3, 5, 2]]
    for ids in decode:
        cases.append({"kind": "decode", "input_ids": ids,
                      "text": tok.decode(ids), "text_skip_special": tok.decode(ids, skip_special_tokens=True)})

    saved = os.path.join(OUT, "saved")
    tok.save_pretrained(saved)

    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": f"transformers {transformers.__version__} EsmTokenizer",
                   "python": sys.version.split()[0], "cases": cases}, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
