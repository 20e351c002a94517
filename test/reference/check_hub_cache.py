"""Load a model and its tokenizer offline from a Hugging Face cache that esmkit filled,
as a Python user sharing the cache would (HF_HOME and HF_HUB_OFFLINE=1 come from the
environment), and report what huggingface_hub's own cache scan sees:

    HF_HOME=... HF_HUB_OFFLINE=1 python check_hub_cache.py REPO_ID SEQUENCES_JSON

Prints {"tokenizer", "input_ids", "logits", "cache": [{repo_id, files, refs}], "warnings"}.
"""

import json
import sys

import torch
from huggingface_hub import scan_cache_dir
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main(repo_id, sequences_file):
    sequences = json.load(open(sequences_file))
    tokenizer = AutoTokenizer.from_pretrained(repo_id)
    model = AutoModelForSequenceClassification.from_pretrained(repo_id).eval()
    enc = tokenizer(sequences, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    info = scan_cache_dir()
    cache = [{"repo_id": r.repo_id,
              "files": sorted(f.file_name for rev in r.revisions for f in rev.files),
              "refs": sorted(r.refs)} for r in info.repos]
    print(json.dumps({"tokenizer": type(tokenizer).__name__, "input_ids": enc["input_ids"].tolist(),
                      "logits": logits.tolist(), "cache": cache,
                      "warnings": [str(w) for w in info.warnings]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
