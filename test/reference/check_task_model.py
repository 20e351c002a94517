"""Load a model directory saved by esmkit with transformers' AutoModelForSequenceClassification
and report what transformers makes of it: the head's config and, for a JSON batch
(input_ids, attention_mask, labels), the logits and transformers' own loss (which it
chooses from config.problem_type).

    python check_task_model.py MODEL_DIR BATCH_JSON [BASE_DIR ADAPTER_DIR]

Prints {"problem_type", "num_labels", "id2label", "label2id", "logits", "loss"}. With
BASE_DIR and ADAPTER_DIR it also loads the base (a checkpoint without the task's head,
given MODEL_DIR's num_labels, id2label and problem_type, as a PEFT user would) with
PeftModel.from_pretrained(ADAPTER_DIR) and adds {"peft_logits", "peft_missing",
"peft_unexpected"}: the adapter file's keys against those PEFT would save.
"""

import json
import sys

import torch
from transformers import AutoModelForSequenceClassification


def peft_check(model_dir, base_dir, adapter_dir, batch):
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    cfg = AutoModelForSequenceClassification.from_pretrained(model_dir).config
    base = AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=cfg.num_labels, id2label=cfg.id2label, label2id=cfg.label2id,
        problem_type=cfg.problem_type)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(batch["input_ids"]),
                       attention_mask=torch.tensor(batch["attention_mask"])).logits
    in_file = set(load_peft_weights(adapter_dir).keys())
    expected = set(get_peft_model_state_dict(model).keys())
    return {"peft_logits": logits.tolist(), "peft_missing": sorted(expected - in_file),
            "peft_unexpected": sorted(in_file - expected)}


def main(model_dir, batch_file, base_dir=None, adapter_dir=None):
    batch = json.load(open(batch_file))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    cfg = model.config
    labels = torch.tensor(batch["labels"])
    if cfg.problem_type == "single_label_classification":
        labels = labels.long()
    else:
        labels = labels.float()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(batch["input_ids"]),
                    attention_mask=torch.tensor(batch["attention_mask"]), labels=labels)
    extra = peft_check(model_dir, base_dir, adapter_dir, batch) if adapter_dir else {}
    print(json.dumps({
        **extra,
        "architecture": type(model).__name__,
        "problem_type": cfg.problem_type,
        "num_labels": cfg.num_labels,
        "id2label": {str(k): v for k, v in cfg.id2label.items()},
        "label2id": cfg.label2id,
        "logits": out.logits.tolist(),
        "loss": float(out.loss),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
