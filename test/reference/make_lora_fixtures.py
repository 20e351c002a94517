"""LoRA (PEFT) and weighted-trainer parity fixtures from the reference stack.

Builds a tiny random ESM-2 sequence classifier with `transformers`, wraps it with
`peft` LoRA (SEQ_CLS: the classifier is trained fully), and records:
  base/                  the base checkpoint (save_pretrained)
  adapter-initial/       the PEFT adapter before training (B randomised so it matters)
  adapter-step2/         the adapter after two optimizer steps, HF Trainer semantics:
                         gradient accumulation 2, class-weighted cross-entropy,
                         AdamW with decay on weights only, linear warmup, clipping
  expected.json          inputs, LoRA forward logits, losses, grad norms, lrs
  adapter-dense/         PEFT adapters whose targets also name modules inside
  adapter-out-proj/      modules_to_save (`dense`, `out_proj`): PEFT puts no LoRA on
                         classifier.dense / classifier.out_proj and saves them whole
  expected-targets.json  their inputs, logits and the LoRA modules PEFT adapted

    .venv/bin/python test/reference/make_lora_fixtures.py
"""

import json
import os
import re

import peft
import torch
import transformers
from peft import LoraConfig, TaskType, get_peft_model
from torch import nn
from transformers import EsmConfig, EsmForSequenceClassification, get_linear_schedule_with_warmup

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "lora")

LR = 5e-3
WEIGHT_DECAY = 0.01
ACCUMULATION = 2
WARMUP = 1
TOTAL_STEPS = 4
MAX_NORM = 1.0
CLASS_WEIGHTS = [0.7, 1.8]


def decay_names(model):
    """HF Trainer.get_decay_parameter_names, for the trainable parameters."""
    norm_modules = {n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    forbidden = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    out = []
    for name, _ in model.named_parameters():
        module = name.rsplit(".", 1)[0]
        if module in norm_modules or any(re.search(p, name.lower()) for p in forbidden):
            continue
        out.append(name)
    return set(out)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    cfg = EsmConfig(
        vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=1026, layer_norm_eps=1e-5,
        pad_token_id=1, mask_token_id=32, token_dropout=True, position_embedding_type="rotary",
        emb_layer_norm_before=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        num_labels=2,
    )
    base = EsmForSequenceClassification(cfg).eval()
    base.save_pretrained(os.path.join(OUT, "base"))

    lcfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, lora_dropout=0.0,
                      target_modules=["query", "key", "value"], bias="none")
    model = get_peft_model(base, lcfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    model.save_pretrained(os.path.join(OUT, "adapter-initial"))

    g = torch.Generator().manual_seed(1)
    micro = []
    for _ in range(4):  # 2 optimizer steps x accumulation 2, batch 3, padded
        lengths = torch.randint(5, 12, (3,), generator=g).tolist()
        L = max(lengths)
        ids = torch.full((3, L), 1, dtype=torch.long)
        mask = torch.zeros((3, L), dtype=torch.long)
        for r, n in enumerate(lengths):
            ids[r, 0] = 0
            ids[r, 1:n - 1] = torch.randint(4, 24, (n - 2,), generator=g)
            ids[r, n - 1] = 2
            mask[r, :n] = 1
        labels = torch.randint(0, 2, (3,), generator=g)
        micro.append((ids, mask, labels))

    model.eval()
    with torch.no_grad():
        logits0 = model(input_ids=micro[0][0], attention_mask=micro[0][1]).logits

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = decay_names(model)
    groups = [
        {"params": [p for n, p in trainable if n in decay], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, WARMUP, TOTAL_STEPS)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(CLASS_WEIGHTS))
    model.train()
    steps = []
    for s in range(2):
        losses = []
        for k in range(ACCUMULATION):
            ids, mask, labels = micro[s * ACCUMULATION + k]
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = loss_fn(logits, labels) / ACCUMULATION
            loss.backward()
            losses.append(loss.item() * ACCUMULATION)
        lr = sched.get_last_lr()[0]
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in trainable], MAX_NORM).item()
        opt.step()
        sched.step()
        opt.zero_grad()
        steps.append({"lr": lr, "grad_norm": norm, "losses": losses})
    model.save_pretrained(os.path.join(OUT, "adapter-step2"))

    expected = {
        "generator": f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}",
        "config": {"lr": LR, "weight_decay": WEIGHT_DECAY, "accumulation": ACCUMULATION, "warmup": WARMUP,
                   "total_steps": TOTAL_STEPS, "max_norm": MAX_NORM, "class_weights": CLASS_WEIGHTS},
        "micro_batches": [{"input_ids": i.tolist(), "attention_mask": m.tolist(), "labels": l.tolist()}
                          for i, m, l in micro],
        "lora_logits": logits0.tolist(),
        "steps": steps,
        "decay": sorted(decay),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print("wrote", OUT, [s["grad_norm"] for s in steps])


TARGETED = {"adapter-dense": ["query", "value", "dense"], "adapter-out-proj": ["query", "out_proj"]}


def targeted():
    """Adapters whose targets reach into modules_to_save, with their logits."""
    g = torch.Generator().manual_seed(2)
    lengths = [9, 6, 12]
    ids = torch.full((3, 12), 1, dtype=torch.long)
    mask = torch.zeros((3, 12), dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, 0] = 0
        ids[r, 1:n - 1] = torch.randint(4, 24, (n - 2,), generator=g)
        ids[r, n - 1] = 2
        mask[r, :n] = 1
    out = {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "adapters": {}}
    for name, targets in TARGETED.items():
        base = EsmForSequenceClassification.from_pretrained(os.path.join(OUT, "base")).eval()
        base.name_or_path = base.config._name_or_path = ""  # no machine path in the fixtures
        model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=2, lora_alpha=4,
                                                lora_dropout=0.0, target_modules=targets))
        with torch.no_grad():  # make every saved tensor matter: LoRA B and the classifier copy
            for pname, p in model.named_parameters():
                if "lora_B" in pname or "modules_to_save" in pname:
                    p.add_(torch.randn(p.shape, generator=g) * 0.1)
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        model.save_pretrained(os.path.join(OUT, name))
        lora_modules = sorted({k.split(".lora_A.")[0].removeprefix("base_model.model.")
                               for k in model.state_dict() if ".lora_A." in k})
        out["adapters"][name] = {"targets": targets, "lora_modules": lora_modules, "logits": logits.tolist()}
    out["generator"] = f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}"
    with open(os.path.join(OUT, "expected-targets.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", list(TARGETED))


if __name__ == "__main__":
    main()
    targeted()
