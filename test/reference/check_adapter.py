"""Load a base checkpoint + a PEFT adapter directory with PeftModel.from_pretrained and
print the classification logits for a JSON batch (input_ids, attention_mask) as JSON.

    python check_adapter.py BASE_DIR ADAPTER_DIR BATCH_JSON [--keys]

With --keys it prints {"logits", "missing", "unexpected"}: the adapter file's keys
compared with those PEFT itself would save for the loaded model (so a tensor PEFT
silently drops on load shows up as unexpected).
"""

import json
import sys

import torch
from peft import PeftModel
from peft.utils import get_peft_model_state_dict, load_peft_weights
from transformers import EsmForSequenceClassification


def main(base_dir, adapter_dir, batch_file, *flags):
    batch = json.load(open(batch_file))
    base = EsmForSequenceClassification.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(batch["input_ids"]),
                       attention_mask=torch.tensor(batch["attention_mask"])).logits
    if "--keys" not in flags:
        print(json.dumps(logits.tolist()))
        return
    in_file = set(load_peft_weights(adapter_dir).keys())
    expected = set(get_peft_model_state_dict(model).keys())
    print(json.dumps({"logits": logits.tolist(), "missing": sorted(expected - in_file),
                      "unexpected": sorted(in_file - expected)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
