"""Reference fixtures for the three problem types (src/train/task.ts) from torch,
transformers, peft, sklearn and scipy.

    .venv/bin/python test/reference/make_task_fixtures.py [out_dir]

Default out_dir: test/fixtures/tasks. Writes:
  losses.json      CrossEntropyLoss(weight), BCEWithLogitsLoss(pos_weight) and MSELoss
                   on fixed logits: the loss and its gradient w.r.t. the logits
  metrics.json     multi-class (sklearn accuracy, macro F1 over all classes, MCC,
                   confusion matrix, per-class precision/recall/F1), multi-label as the
                   DeepLoc-2.0 evaluation computes it (sklearn subset accuracy, Jaccard
                   average="samples", micro/macro F1, MCC per label) and regression
                   (sklearn RMSE, MAE; scipy pearsonr, spearmanr with ties)
  <task>/          for multiclass, multilabel, regression: a tiny random ESM-2
                   EsmForSequenceClassification with problem_type, num_labels and
                   id2label set (base/), a PEFT LoRA adapter before training
                   (adapter-initial/, B randomised) and after two optimizer steps of
                   HF-Trainer-style training with the task's weighted loss
                   (adapter-step2/), and expected.json (micro-batches, LoRA logits,
                   transformers' own loss on the first micro-batch, per-step losses,
                   grad norms and learning rates)
  masked-lm/       a tiny random EsmForMaskedLM (no classifier, as the Hub's ESM-2
                   checkpoints): the base the end-to-end task tests fine-tune from

Deterministic (seeded, CPU, float32).
"""

import json
import math
import os
import sys

import numpy as np
import peft
import scipy
import sklearn
import torch
import transformers
from peft import LoraConfig, TaskType, get_peft_model
from scipy import stats
from sklearn import metrics as skm
from torch import nn
from transformers import EsmConfig, EsmForSequenceClassification, get_linear_schedule_with_warmup

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join("test", "fixtures", "tasks")
GENERATOR = (
    f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
    f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}"
)


def clean(x):
    if isinstance(x, torch.Tensor):
        return clean(x.detach().cpu().numpy())
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (np.floating, float)):
        f = float(x)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Infinity" if f > 0 else "-Infinity"
        return f
    if isinstance(x, np.integer):
        return int(x)
    return x


def write(name, obj):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(clean(obj), f, separators=(",", ":"))
        f.write("\n")


def flat(t):
    return t.detach().reshape(-1).tolist()


# ---------------------------------------------------------------- losses
def losses():
    g = torch.Generator().manual_seed(5)
    cases = []

    def case(name, kind, logits, targets, weight=None):
        x = logits.clone().requires_grad_(True)
        if kind == "cross_entropy":
            w = None if weight is None else torch.tensor(weight)
            loss = nn.CrossEntropyLoss(weight=w)(x, torch.tensor(targets, dtype=torch.long))
        elif kind == "bce":
            pw = None if weight is None else torch.tensor(weight)
            loss = nn.BCEWithLogitsLoss(pos_weight=pw)(x, torch.tensor(targets, dtype=torch.float32))
        else:
            t = torch.tensor(targets, dtype=torch.float32)
            # transformers: MSE on squeezed [N] for one output, on [N, C] otherwise.
            loss = nn.MSELoss()(x.squeeze(), t.squeeze()) if x.shape[1] == 1 else nn.MSELoss()(x, t)
        loss.backward()
        cases.append({"name": name, "kind": kind, "shape": list(logits.shape), "logits": flat(logits),
                      "targets": np.asarray(targets).reshape(-1).tolist(), "weight": weight,
                      "loss": float(loss.detach()), "grad": flat(x.grad)})

    z4 = torch.randn(9, 4, generator=g) * 2
    y4 = [0, 3, 1, 2, 2, 0, 3, 3, 1]
    case("4 classes", "cross_entropy", z4, y4)
    case("4 classes, balanced weights", "cross_entropy", z4, y4, [9 / 8, 9 / 8, 9 / 8, 9 / 12])

    z5 = torch.randn(6, 5, generator=g) * 3
    y5 = (torch.rand(6, 5, generator=g) < 0.35).float()
    case("multi-label", "bce", z5, y5.tolist())
    case("multi-label, pos_weight", "bce", z5, y5.tolist(), [0.5, 2.0, 3.0, 1.0, 7.5])
    big = z5.clone()
    big[0, 0], big[1, 1], big[2, 2], big[3, 3] = 95.0, -120.0, 40.0, -35.0
    case("multi-label, large logits", "bce", big, y5.tolist(), [0.5, 2.0, 3.0, 1.0, 7.5])
    soft = torch.rand(6, 5, generator=g)
    case("soft targets, pos_weight", "bce", z5, soft.tolist(), [1.5, 1.0, 0.25, 4.0, 2.0])

    case("regression, one target", "mse", torch.randn(7, 1, generator=g) * 4,
         (torch.randn(7, 1, generator=g) * 10 + 50).tolist())
    case("regression, three targets", "mse", torch.randn(5, 3, generator=g),
         torch.randn(5, 3, generator=g).tolist())
    write("losses.json", {"generator": GENERATOR, "cases": cases})


# ---------------------------------------------------------------- metrics
def multiclass_case(name, y, p, k):
    labels = list(range(k))
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        y, p, labels=labels, average=None, zero_division=0)
    return {"name": name, "numClasses": k, "labels": y, "preds": p,
            "accuracy": skm.accuracy_score(y, p),
            "macroF1": skm.f1_score(y, p, labels=labels, average="macro", zero_division=0),
            "mcc": skm.matthews_corrcoef(y, p),
            "confusionMatrix": skm.confusion_matrix(y, p, labels=labels),
            "precision": prec, "recall": rec, "f1": f1, "support": support}


def multilabel_case(name, y, probs, threshold):
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    p = (probs >= threshold).astype(np.int64)
    prec, rec, f1, _ = skm.precision_recall_fscore_support(y, p, average=None, zero_division=0)
    return {"name": name, "targets": y, "probabilities": probs, "threshold": threshold,
            "subsetAccuracy": skm.accuracy_score(y, p),
            "jaccard": skm.jaccard_score(y, p, average="samples", zero_division=0),
            "microF1": skm.f1_score(y, p, average="micro", zero_division=0),
            "macroF1": skm.f1_score(y, p, average="macro", zero_division=0),
            "mcc": [skm.matthews_corrcoef(y[:, c], p[:, c]) for c in range(y.shape[1])],
            "precision": prec, "recall": rec, "f1": f1}


def regression_case(name, t, p):
    t = np.asarray(t, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    per = []
    for c in range(t.shape[1]):
        per.append({"rmse": math.sqrt(skm.mean_squared_error(t[:, c], p[:, c])),
                    "mae": skm.mean_absolute_error(t[:, c], p[:, c]),
                    "pearson": stats.pearsonr(p[:, c], t[:, c]).statistic,
                    "spearman": stats.spearmanr(p[:, c], t[:, c]).statistic})
    return {"name": name, "targets": t, "predictions": p, "perTarget": per}


def metrics():
    rng = np.random.default_rng(21)
    multiclass = []
    for k, n in [(3, 40), (5, 33)]:
        y = rng.integers(0, k, n)
        p = np.where(rng.random(n) < 0.55, y, rng.integers(0, k, n))
        multiclass.append(multiclass_case(f"{k} classes", y.tolist(), p.tolist(), k))
    # Class 3 never occurs and is never predicted; class 2 is never predicted.
    multiclass.append(multiclass_case("absent classes", [0, 1, 2, 2, 0, 1, 1], [0, 1, 1, 0, 0, 1, 0], 4))

    multilabel = []
    y = (rng.random((30, 6)) < 0.3).astype(np.int64)
    y[0] = 0  # a row with no label
    y[:, 5] = 0  # a label that never occurs
    noisy = np.clip(0.45 * y + rng.random((30, 6)) * 0.6, 0, 1)
    noisy[1] = 0.0  # a row predicted empty
    noisy[0] = 0.0  # empty truth and prediction: Jaccard 0 for the row
    multilabel.append(multilabel_case("noisy", y.tolist(), noisy.round(3).tolist(), 0.5))
    multilabel.append(multilabel_case("threshold 0.3", y.tolist(), noisy.round(3).tolist(), 0.3))
    multilabel.append(multilabel_case("ties at the threshold", [[1, 0], [0, 1], [1, 1]],
                                      [[0.5, 0.5], [0.49, 0.5], [0.5, 0.51]], 0.5))

    regression = []
    t = rng.normal(50, 10, (25, 2))
    p = t + rng.normal(0, 5, (25, 2))
    regression.append(regression_case("two targets", t.round(2).tolist(), p.round(2).tolist()))
    tied_t = np.array([[1.0], [2.0], [2.0], [3.0], [5.0], [5.0], [5.0], [8.0]])
    tied_p = np.array([[1.5], [1.5], [2.5], [4.0], [4.0], [6.0], [4.0], [9.0]])
    regression.append(regression_case("ties", tied_t.tolist(), tied_p.tolist()))
    write("metrics.json", {"generator": GENERATOR, "multiclass": multiclass,
                           "multilabel": multilabel, "regression": regression})


# ---------------------------------------------------------------- models: two training steps per task
LR = 5e-3
WEIGHT_DECAY = 0.01
ACCUMULATION = 2
WARMUP = 1
TOTAL_STEPS = 4
MAX_NORM = 1.0


def decay_names(model):
    """HF Trainer.get_decay_parameter_names, restated (see make_lora_fixtures.py)."""
    import re

    norm_modules = {n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    forbidden = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    out = set()
    for name, _ in model.named_parameters():
        module = name.rsplit(".", 1)[0]
        if module in norm_modules or any(re.search(p, name.lower()) for p in forbidden):
            continue
        out.add(name)
    return out


TASKS = {
    "multiclass": {
        "problem_type": "single_label_classification",
        "labels": ["cytoplasm", "membrane", "nucleus"],
        # The trainer's "balanced" weights of these micro-batches' labels are not needed:
        # any weights test the weighted path.
        "weight": [0.8, 1.7, 1.1],
    },
    "multilabel": {
        "problem_type": "multi_label_classification",
        "labels": ["Cytoplasm", "Nucleus", "Extracellular", "Cell membrane"],
        "weight": [1.5, 0.6, 3.0, 1.0],
    },
    "regression": {
        "problem_type": "regression",
        "labels": ["melting_temperature"],
        "weight": None,
    },
}


def save_adapter(model, path):
    """PEFT's save_pretrained, made byte-stable: target_modules sorted (PEFT keeps a set),
    and without the generated model card."""
    model.save_pretrained(path)
    cfg_file = os.path.join(path, "adapter_config.json")
    cfg = json.load(open(cfg_file))
    cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(cfg_file, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    os.remove(os.path.join(path, "README.md"))


def make_labels(task, g, n):
    k = len(task["labels"])
    if task["problem_type"] == "single_label_classification":
        return torch.randint(0, k, (n,), generator=g)
    if task["problem_type"] == "multi_label_classification":
        return (torch.rand(n, k, generator=g) < 0.4).float()
    return torch.randn(n, k, generator=g) * 3 + 1  # float targets, [n, 1]


def weighted_loss(task, logits, labels):
    w = task["weight"]
    if task["problem_type"] == "single_label_classification":
        return nn.CrossEntropyLoss(weight=torch.tensor(w))(logits, labels)
    if task["problem_type"] == "multi_label_classification":
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w))(logits, labels)
    return nn.MSELoss()(logits.squeeze(), labels.squeeze())


def task_model(name, task, seed):
    out = os.path.join(OUT, name)
    torch.manual_seed(seed)
    k = len(task["labels"])
    cfg = EsmConfig(
        vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=1026, layer_norm_eps=1e-5,
        pad_token_id=1, mask_token_id=32, token_dropout=True, position_embedding_type="rotary",
        emb_layer_norm_before=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        num_labels=k, problem_type=task["problem_type"],
        id2label=dict(enumerate(task["labels"])), label2id={n: i for i, n in enumerate(task["labels"])},
    )
    base = EsmForSequenceClassification(cfg).eval()
    base.save_pretrained(os.path.join(out, "base"))

    model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8,
                                            lora_dropout=0.0, target_modules=["query", "key", "value"]))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_B" in pname:
                p.normal_(0, 0.1)
    save_adapter(model, os.path.join(out, "adapter-initial"))

    g = torch.Generator().manual_seed(seed + 1)
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
        micro.append((ids, mask, make_labels(task, g, 3)))

    model.eval()
    with torch.no_grad():
        first = model(input_ids=micro[0][0], attention_mask=micro[0][1], labels=micro[0][2])
    hf_loss = float(first.loss)  # transformers' own loss for the config's problem_type

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = decay_names(model)
    groups = [
        {"params": [p for n, p in trainable if n in decay], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, WARMUP, TOTAL_STEPS)
    model.train()
    steps = []
    for s in range(2):
        step_losses = []
        for k2 in range(ACCUMULATION):
            ids, mask, labels = micro[s * ACCUMULATION + k2]
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = weighted_loss(task, logits, labels) / ACCUMULATION
            loss.backward()
            step_losses.append(loss.item() * ACCUMULATION)
        lr = sched.get_last_lr()[0]
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in trainable], MAX_NORM).item()
        opt.step()
        sched.step()
        opt.zero_grad()
        steps.append({"lr": lr, "grad_norm": norm, "losses": step_losses})
    save_adapter(model, os.path.join(out, "adapter-step2"))

    write(os.path.join(name, "expected.json"), {
        "generator": GENERATOR,
        "problem_type": task["problem_type"],
        "labels": task["labels"],
        "config": {"lr": LR, "weight_decay": WEIGHT_DECAY, "accumulation": ACCUMULATION,
                   "warmup": WARMUP, "total_steps": TOTAL_STEPS, "max_norm": MAX_NORM,
                   "weight": task["weight"]},
        "micro_batches": [{"input_ids": i.tolist(), "attention_mask": m.tolist(), "labels": l.tolist()}
                          for i, m, l in micro],
        "lora_logits": first.logits,
        "hf_loss": hf_loss,
        "steps": steps,
    })
    print("wrote", out, [round(s["grad_norm"], 6) for s in steps])


def masked_lm():
    from transformers import EsmForMaskedLM

    torch.manual_seed(200)
    cfg = EsmConfig(
        vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=1026, layer_norm_eps=1e-5,
        pad_token_id=1, mask_token_id=32, token_dropout=True, position_embedding_type="rotary",
        emb_layer_norm_before=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    EsmForMaskedLM(cfg).save_pretrained(os.path.join(OUT, "masked-lm"))
    print("wrote", os.path.join(OUT, "masked-lm"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    losses()
    metrics()
    for i, (name, task) in enumerate(TASKS.items()):
        task_model(name, task, 100 + 10 * i)
    masked_lm()
