"""Load a base checkpoint + a PEFT adapter directory with PeftModel.from_pretrained and
print the classification logits for a JSON batch (input_ids, attention_mask) as JSON.

    python check_adapter.py BASE_DIR ADAPTER_DIR BATCH_JSON
"""

import json
import sys

import torch
from peft import PeftModel
from transformers import EsmForSequenceClassification


def main(base_dir, adapter_dir, batch_file):
    batch = json.load(open(batch_file))
    base = EsmForSequenceClassification.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(batch["input_ids"]),
                       attention_mask=torch.tensor(batch["attention_mask"])).logits
    print(json.dumps(logits.tolist()))


if __name__ == "__main__":
    main(*sys.argv[1:])
