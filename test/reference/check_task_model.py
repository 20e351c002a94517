"""Load a model directory saved by esmkit with transformers' AutoModelForSequenceClassification
and report what transformers makes of it: the head's config and, for a JSON batch
(input_ids, attention_mask, labels), the logits and transformers' own loss (which it
chooses from config.problem_type).

    python check_task_model.py MODEL_DIR BATCH_JSON

Prints {"problem_type", "num_labels", "id2label", "label2id", "logits", "loss"}.
"""

import json
import sys

import torch
from transformers import AutoModelForSequenceClassification


def main(model_dir, batch_file):
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
    print(json.dumps({
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
