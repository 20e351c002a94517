"""ESM-2 reference computations with Hugging Face `transformers` (pinned in requirements.txt).

Used by make_model_fixtures.py (committed fixtures) and by the TypeScript tests at test
time (the 8M-architecture parity run and the save-then-load round trip):

    # random-weight checkpoint + tokenized batch + expected outputs into DIR
    python esm_reference.py build DIR --preset esm2_t6_8M_UR50D --seed 0
    python esm_reference.py build DIR --layers 2 --hidden 32 --heads 4 --layout hub --shards 2

    # load DIR with EsmForSequenceClassification and print logits (+ loading info) as JSON
    python esm_reference.py logits DIR INPUTS_JSON

Checkpoints written by `build` hold the union of what EsmForSequenceClassification and
EsmForMaskedLM save: `esm.*`, `classifier.*` and `lm_head.*` with a tied decoder, so one
directory yields hidden states, classification logits and masked-LM logits. Two layouts:

- "save_pretrained": what the pinned transformers writes (legacy `LayerNorm.gamma/beta`
  names and one wildcard `esm.encoder.layer.*...rotary_embeddings.inv_freq` key),
- "hub": what the facebook/esm2_* repositories hold (`LayerNorm.weight/bias`, a per-layer
  `inv_freq`, int64 `position_ids`, `contact_head.*`, an explicit tied
  `lm_head.decoder.weight`), optionally sharded with `model.safetensors.index.json`.

Expected outputs always come from reloading the written directory with
`from_pretrained`, so they are what Python users get from the same files.
"""

import argparse
import json
import os
import sys

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import EsmConfig, EsmForMaskedLM, EsmForSequenceClassification, EsmTokenizer

transformers.logging.set_verbosity_error()

VOCAB = (
    "<cls> <pad> <eos> <unk> L A G V S E R T I D P K Q N F Y M H W C X B U Z O . - "
    "<null_1> <mask>"
).split()

# (layers, hidden, heads) of the published ESM-2 checkpoints.
PRESETS = {
    "esm2_t6_8M_UR50D": (6, 320, 20),
    "esm2_t12_35M_UR50D": (12, 480, 20),
    "esm2_t30_150M_UR50D": (30, 640, 20),
    "esm2_t33_650M_UR50D": (33, 1280, 20),
    "esm2_t36_3B_UR50D": (36, 2560, 40),
    "esm2_t48_15B_UR50D": (48, 5120, 40),
}

# A batch with padding, different lengths, <mask> tokens and unknown characters
# ("J", "*", lowercase): the tokenizer maps each run of unknown characters to one <unk>.
DEFAULT_SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
    "MKT<mask>YIAKJJQR",
    "ACDEFGHIKLMNPQRSTVWYXBUZO",
    "mkT*AY<mask><mask>L",
]


def esm_config(layers, hidden, heads, num_labels=2, id2label=None):
    kwargs = {}
    if id2label is not None:
        kwargs["id2label"] = {i: name for i, name in enumerate(id2label)}
        kwargs["label2id"] = {name: i for i, name in enumerate(id2label)}
    else:
        kwargs["num_labels"] = num_labels
    return EsmConfig(
        vocab_size=33,
        mask_token_id=32,
        pad_token_id=1,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=1026,
        layer_norm_eps=1e-5,
        position_embedding_type="rotary",
        emb_layer_norm_before=False,
        token_dropout=True,
        **kwargs,
    )


@torch.no_grad()
def randomize(module, generator):
    """Non-trivial values everywhere (HF init leaves biases 0 and LayerNorms 1/0,
    which would hide mistakes in bias or affine handling)."""
    for name, p in module.named_parameters():
        r = torch.randn(p.shape, generator=generator)
        if "LayerNorm" in name or "layer_norm" in name:
            p.copy_(1 + 0.1 * r if name.endswith("weight") else 0.1 * r)
        elif name.endswith("bias"):
            p.copy_(0.1 * r)
        elif "embeddings" in name:
            # std 0.3 keeps the tied masked-LM logits in the range real ESM-2 gives (|x| < ~25)
            p.copy_(0.3 * r)
        elif p.dim() == 2:
            p.copy_(r / p.shape[1] ** 0.5)
        else:
            p.copy_(r)


def tokenize(sequences):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tokenizer", "vocab.txt")
    tok = EsmTokenizer(path) if os.path.exists(path) else None
    if tok is None or tok.all_tokens != VOCAB:
        raise SystemExit(f"expected the ESM-2 vocabulary at {path}")
    enc = tok(sequences, padding=True)
    return tok, enc["input_ids"], enc["attention_mask"]


def build_checkpoint(out_dir, config, seed, layout="save_pretrained", shards=1):
    """Random-weight checkpoint in `out_dir` (see the module docstring for layouts)."""
    g = torch.Generator().manual_seed(seed)
    seq = EsmForSequenceClassification(config)
    randomize(seq, g)
    # Checkpoints carry fp16-rounded inv_freq from training: mimic it, so a loader that
    # recomputes instead of reading the checkpoint is caught.
    inv = seq.esm.rotary_embeddings.inv_freq
    inv.copy_(inv.half().float())
    mlm = EsmForMaskedLM(config)
    randomize(mlm.lm_head, g)
    lm_head = {f"lm_head.{k}": v.detach().clone() for k, v in mlm.lm_head.state_dict().items()}
    del lm_head["lm_head.decoder.weight"]  # tied to the word embeddings
    os.makedirs(out_dir, exist_ok=True)

    if layout == "save_pretrained":
        if shards != 1:
            raise SystemExit("--shards needs --layout hub")
        seq.save_pretrained(out_dir)
        path = os.path.join(out_dir, "model.safetensors")
        with safe_open(path, "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        tensors.update(lm_head)
        save_file(tensors, path, metadata={"format": "pt"})
    elif layout == "hub":
        seq.config.save_pretrained(out_dir)
        tensors = {}
        for k, v in seq.state_dict().items():
            if k == "esm.rotary_embeddings.inv_freq":
                for i in range(config.num_hidden_layers):
                    tensors[f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = v.clone()
            else:
                tensors[k] = v.detach().clone()
        tensors["esm.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
        tensors.update(lm_head)
        tensors["lm_head.decoder.weight"] = tensors["esm.embeddings.word_embeddings.weight"].clone()
        write_shards(tensors, out_dir, shards)
    else:
        raise SystemExit(f"unknown layout {layout!r}")
    tok = EsmTokenizer(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tokenizer", "vocab.txt"))
    tok.save_pretrained(out_dir)


def write_shards(tensors, out_dir, shards):
    keys = sorted(tensors)
    if shards == 1:
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        return
    per = -(-len(keys) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: tensors[k] for k in keys[s * per : (s + 1) * per]}
        save_file(part, os.path.join(out_dir, name), metadata={"format": "pt"})
        for k, v in part.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def load(cls, ckpt_dir):
    model, info = cls.from_pretrained(ckpt_dir, output_loading_info=True)
    model.eval()
    return model, {k: sorted(v) for k, v in info.items()}


@torch.no_grad()
def reference_outputs(ckpt_dir, input_ids, attention_mask):
    ids = torch.tensor(input_ids)
    mask = torch.tensor(attention_mask)
    seq, seq_info = load(EsmForSequenceClassification, ckpt_dir)
    mlm, mlm_info = load(EsmForMaskedLM, ckpt_dir)
    for name, info in (("EsmForSequenceClassification", seq_info), ("EsmForMaskedLM", mlm_info)):
        missing = [k for k in info["missing_keys"] if not k.startswith("esm.contact_head.")]
        if missing or info["mismatched_keys"]:
            raise SystemExit(f"{name} did not load {ckpt_dir} cleanly: {info}")
    hidden = seq.esm(ids, attention_mask=mask).last_hidden_state
    hidden_mlm = mlm.esm(ids, attention_mask=mask).last_hidden_state
    assert torch.equal(hidden, hidden_mlm), "the two heads saw different encoder weights"
    logits = seq(ids, attention_mask=mask).logits
    mlm_logits = mlm(ids, attention_mask=mask).logits
    m = mask[..., None].float()
    pooled_mean = (hidden * m).sum(1) / m.sum(1)
    return {
        "last_hidden_state": hidden.tolist(),
        "logits": logits.tolist(),
        "mlm_logits": mlm_logits.tolist(),
        "pooled_mean": pooled_mean.tolist(),
        "pooled_cls": hidden[:, 0].tolist(),
    }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def build(out_dir, config, seed, sequences, layout="save_pretrained", shards=1, description=""):
    build_checkpoint(out_dir, config, seed, layout, shards)
    _, input_ids, attention_mask = tokenize(sequences)
    write_json(
        os.path.join(out_dir, "inputs.json"),
        {"sequences": sequences, "input_ids": input_ids, "attention_mask": attention_mask},
    )
    expected = reference_outputs(out_dir, input_ids, attention_mask)
    expected["generator"] = (
        f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"python {sys.version.split()[0]}; {description or layout}, seed {seed}"
    )
    write_json(os.path.join(out_dir, "expected.json"), expected)


def cmd_build(a):
    if a.preset:
        layers, hidden, heads = PRESETS[a.preset]
    else:
        layers, hidden, heads = a.layers, a.hidden, a.heads
    config = esm_config(layers, hidden, heads, num_labels=a.num_labels)
    sequences = json.loads(a.sequences) if a.sequences else DEFAULT_SEQUENCES
    build(a.out, config, a.seed, sequences, a.layout, a.shards, a.preset or "custom")
    print(json.dumps({"out": a.out}))


@torch.no_grad()
def cmd_logits(a):
    with open(a.inputs) as f:
        inputs = json.load(f)
    model, info = load(EsmForSequenceClassification, a.dir)
    logits = model(torch.tensor(inputs["input_ids"]), attention_mask=torch.tensor(inputs["attention_mask"])).logits
    print(json.dumps({"logits": logits.tolist(), "loading_info": info, "config": model.config.to_diff_dict()}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="random checkpoint + inputs.json + expected.json")
    b.add_argument("out")
    b.add_argument("--preset", choices=sorted(PRESETS))
    b.add_argument("--layers", type=int, default=2)
    b.add_argument("--hidden", type=int, default=32)
    b.add_argument("--heads", type=int, default=4)
    b.add_argument("--num-labels", type=int, default=2)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--layout", choices=["save_pretrained", "hub"], default="save_pretrained")
    b.add_argument("--shards", type=int, default=1)
    b.add_argument("--sequences", help="JSON list of sequences (default: a mixed batch)")
    b.set_defaults(fn=cmd_build)
    lg = sub.add_parser("logits", help="EsmForSequenceClassification logits for DIR as JSON")
    lg.add_argument("dir")
    lg.add_argument("inputs", help="JSON file with input_ids and attention_mask")
    lg.set_defaults(fn=cmd_logits)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
