"""Reference fixtures for src/train (AdamW, schedule, clipping, loss, class weights, metrics).

Usage (from the repo root):
    .venv/bin/python test/reference/make_train_fixtures.py [out_dir]
Default out_dir: test/fixtures/train. Writes adamw.json, schedule.json, decay_names.json,
cross_entropy.json, class_weights.json, metrics.json. Deterministic: rerunning must give
byte-identical files (the generator is seeded and torch runs on CPU in float32).

Ground truth comes from the libraries themselves where they are installed (torch AdamW,
clip_grad_norm_, CrossEntropyLoss, transformers' get_linear_schedule_with_warmup and the
Trainer's decay rule). sklearn is not part of the reference stack, so class weights and
metrics are computed here with numpy in the textbook way (and cross-checked two ways).
Non-finite floats are written as the strings "Infinity", "-Infinity", "NaN" (JSON has none).
"""

import json
import math
import os
import sys

import numpy as np
import torch
from torch import nn
from transformers import EsmConfig, EsmForSequenceClassification
from transformers.optimization import get_linear_schedule_with_warmup
from transformers.trainer import Trainer

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join("test", "fixtures", "train")


def clean(x):
    """Recursively turn numpy/torch values into JSON-safe Python values."""
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
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def write(name, obj):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(clean(obj), f, separators=(",", ":"))
        f.write("\n")


def flat(t):
    return t.detach().reshape(-1).tolist()


# ---------------------------------------------------------------- decay rule (HF Trainer)
def decay_names():
    """Which parameters the HF Trainer gives weight decay, on real ESM names (plain and PEFT)."""
    torch.manual_seed(0)
    cfg = EsmConfig(
        vocab_size=33,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        pad_token_id=1,
        mask_token_id=32,
        position_embedding_type="rotary",
        token_dropout=True,
        num_labels=2,
    )
    model = EsmForSequenceClassification(cfg)
    cases = []
    names = [n for n, _ in model.named_parameters()]
    decay = set(Trainer.get_decay_parameter_names(None, model))
    cases += [{"name": n, "decay": n in decay} for n in names]
    try:
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(
            model,
            LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=4, target_modules=["query", "value"]),
        )
        pnames = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        pdecay = set(Trainer.get_decay_parameter_names(None, peft_model))
        cases += [{"name": n, "decay": n in pdecay} for n in pnames]
    except ImportError:
        pass
    write("decay_names.json", {"cases": cases})
    return decay


# ---------------------------------------------------------------- schedule
def schedule():
    cases = []
    for warmup, total in [(2, 6), (0, 5), (3, 3), (1, 10), (5, 4)]:
        p = nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1e-3)
        sched = get_linear_schedule_with_warmup(opt, warmup, total)
        lrs = []
        for _ in range(total + 2):
            lrs.append(opt.param_groups[0]["lr"])  # lr used by the next optimizer.step()
            opt.step()
            sched.step()
        cases.append({"lr": 1e-3, "warmupSteps": warmup, "totalSteps": total, "lrs": lrs})
    write("schedule.json", {"cases": cases})


# ---------------------------------------------------------------- AdamW + clip + schedule
def adamw():
    """6 optimizer steps, HF-style: clip_grad_norm_(1.0) -> AdamW.step -> scheduler.step."""
    g = torch.Generator().manual_seed(1234)
    shapes = {
        "esm.encoder.layer.0.attention.self.query.weight": (4, 3),
        "esm.encoder.layer.0.attention.self.query.bias": (4,),
        "esm.encoder.layer.0.attention.LayerNorm.weight": (3,),
        "esm.encoder.emb_layer_norm_after.weight": (3,),
        "classifier.out_proj.weight": (2, 3),
    }
    decay = {
        "esm.encoder.layer.0.attention.self.query.weight": True,
        "esm.encoder.layer.0.attention.self.query.bias": False,
        "esm.encoder.layer.0.attention.LayerNorm.weight": False,
        "esm.encoder.emb_layer_norm_after.weight": False,
        "classifier.out_proj.weight": True,
    }
    params = {n: nn.Parameter(torch.randn(s, generator=g) * 0.5) for n, s in shapes.items()}
    initial = {n: {"shape": list(p.shape), "data": flat(p)} for n, p in params.items()}
    lr, wd, warmup, total, max_norm = 1e-3, 0.01, 2, 6, 1.0
    groups = [
        {"params": [params[n] for n in shapes if decay[n]], "weight_decay": wd},
        {"params": [params[n] for n in shapes if not decay[n]], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    # Per-step gradient scales: steps 0, 2, 3 exceed max_norm and are clipped; 1, 4, 5 not.
    scales = [3.0, 0.05, 10.0, 1.5, 0.1, 0.02]
    steps = []
    for k in range(total):
        grads = {n: torch.randn(s, generator=g) * scales[k] for n, s in shapes.items()}
        for n, p in params.items():
            p.grad = grads[n].clone()
        used_lr = opt.param_groups[0]["lr"]
        total_norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        steps.append(
            {
                "grads": {n: flat(v) for n, v in grads.items()},
                "lr": used_lr,
                "totalNorm": float(total_norm),
                "params": {n: flat(p) for n, p in params.items()},
            }
        )
    write(
        "adamw.json",
        {
            "lr": lr,
            "weightDecay": wd,
            "warmupSteps": warmup,
            "totalSteps": total,
            "maxGradNorm": max_norm,
            "decay": decay,
            "initial": initial,
            "steps": steps,
        },
    )


# ---------------------------------------------------------------- cross-entropy
def cross_entropy():
    g = torch.Generator().manual_seed(7)
    cases = []

    def case(name, logits, labels, weight):
        x = logits.clone().requires_grad_(True)
        w = None if weight is None else torch.tensor(weight, dtype=torch.float32)
        loss = nn.CrossEntropyLoss(weight=w)(x, torch.tensor(labels, dtype=torch.long))
        loss.backward()
        cases.append(
            {
                "name": name,
                "shape": list(logits.shape),
                "logits": flat(logits),
                "labels": labels,
                "weight": weight,
                "loss": float(loss.detach()),
                "grad": flat(x.grad),
            }
        )

    logits = torch.randn(7, 3, generator=g) * 2
    labels = [0, 2, 1, 1, 0, 2, 2]
    case("unweighted", logits, labels, None)
    case("unbalanced weights", logits, labels, [0.2, 1.0, 3.5])
    big = logits.clone()
    big[0, 0] = 80.0
    big[3, 2] = -90.0
    big[5] = torch.tensor([60.0, 61.0, -70.0])
    case("large logits", big, labels, [1.5, 0.5, 2.0])
    bl = [0, 0, 0, 0, 0, 1, 1, 0, 0, 1]
    counts = np.bincount(bl, minlength=2)
    balanced = (len(bl) / (2 * counts)).astype(np.float32).tolist()
    case("binary balanced", torch.randn(10, 2, generator=g), bl, balanced)
    case("ignore_index", logits, [0, -100, 1, 1, -100, 2, 2], [0.2, 1.0, 3.5])
    write("cross_entropy.json", {"cases": cases})


# ---------------------------------------------------------------- class weights
def class_weights():
    try:
        from sklearn.utils.class_weight import compute_class_weight  # optional
    except ImportError:
        compute_class_weight = None
    rng = np.random.default_rng(3)
    cases = []
    for labels, k in [
        ([0] * 70 + [1] * 30, 2),
        (rng.integers(0, 3, 41).tolist(), 3),
        ([1, 1, 1, 0], 2),
        ([2, 0, 1, 2, 2, 2, 3, 3], 4),
    ]:
        y = np.asarray(labels)
        counts = np.bincount(y, minlength=k)
        w = len(y) / (k * counts.astype(np.float64))
        source = "formula"
        if compute_class_weight is not None:
            w = compute_class_weight("balanced", classes=np.arange(k), y=y)
            source = "sklearn"
        cases.append({"labels": labels, "numClasses": k, "weights": w.tolist(), "source": source})
    write("class_weights.json", {"cases": cases})


# ---------------------------------------------------------------- metrics (textbook numpy)
def roc_curve(y, s, drop_intermediate=True):
    """sklearn.metrics.roc_curve's algorithm, restated in numpy."""
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    distinct = np.where(np.diff(s))[0]
    idx = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[idx].astype(np.float64)
    fps = 1 + idx - tps
    thr = s[idx].astype(np.float64)
    if drop_intermediate and len(fps) > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    tps, fps, thr = np.r_[0, tps], np.r_[0, fps], np.r_[np.inf, thr]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thr


def auc_rank(y, s):
    """Mann-Whitney U with ties counted as half: an independent route to ROC-AUC."""
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return (gt + 0.5 * eq) / (len(pos) * len(neg))


def confusion(y, p, k):
    m = np.zeros((k, k), dtype=np.int64)
    for a, b in zip(y, p):
        m[a, b] += 1
    return m


def mcc(cm):
    """sklearn's multiclass MCC from the confusion matrix (binary is a special case)."""
    t = cm.sum(axis=1).astype(np.float64)
    pr = cm.sum(axis=0).astype(np.float64)
    c = np.trace(cm).astype(np.float64)
    n = cm.sum().astype(np.float64)
    cov_ytyp = c * n - np.dot(t, pr)
    cov_ypyp = n * n - np.dot(pr, pr)
    cov_ytyt = n * n - np.dot(t, t)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp)


def binary_case(name, y, s, threshold=0.5, preds=None):
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    p = (s >= threshold).astype(np.int64) if preds is None else np.asarray(preds, dtype=np.int64)
    cm = confusion(y, p, 2)
    tn, fp, fn, tp = cm[0, 0], cm[0, 1], cm[1, 0], cm[1, 1]
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else 0.0
    fpr, tpr, thr = roc_curve(y, s)
    fpr_all, tpr_all, thr_all = roc_curve(y, s, drop_intermediate=False)
    auc = float("nan")
    if (y == 1).any() and (y == 0).any():
        auc = float(np.trapezoid(tpr, fpr))
        assert abs(auc - auc_rank(y, s)) < 1e-12, (name, auc, auc_rank(y, s))
        assert abs(auc - float(np.trapezoid(tpr_all, fpr_all))) < 1e-12
    return {
        "name": name,
        "labels": y.tolist(),
        "scores": s.tolist(),
        "preds": p.tolist(),
        "accuracy": float((y == p).mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "mcc": float(mcc(cm)),
        "rocAuc": auc,
        "confusionMatrix": cm.tolist(),
        "roc": {"fpr": fpr, "tpr": tpr, "thresholds": thr},
        "rocAll": {"fpr": fpr_all, "tpr": tpr_all, "thresholds": thr_all},
    }


def metrics():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 40)
    s = np.clip(0.35 * y + rng.random(40) * 0.65, 0, 1)
    binary = [
        binary_case("random", y, s),
        binary_case("ties", y, np.round(s, 1)),
        binary_case("all scores tied", [0, 1, 1, 0, 1], [0.5] * 5),
        binary_case("perfect", [0, 0, 1, 1, 1], [0.1, 0.2, 0.7, 0.8, 0.9]),
        binary_case("inverted", [1, 1, 0, 0], [0.1, 0.2, 0.7, 0.8]),
        binary_case("all positive labels", [1, 1, 1, 1], [0.2, 0.6, 0.9, 0.6]),
        binary_case("all negative labels", [0, 0, 0], [0.2, 0.7, 0.1]),
        binary_case("nothing predicted positive", [0, 1, 0, 1, 1], [0.1, 0.3, 0.2, 0.4, 0.3]),
        binary_case("given preds", [0, 1, 1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1, 0.6, 0.6],
                    preds=[1, 1, 0, 0, 1, 0]),
    ]
    multi = []
    for k, n in [(3, 30), (4, 25)]:
        yt = rng.integers(0, k, n)
        yp = np.where(rng.random(n) < 0.6, yt, rng.integers(0, k, n))
        cm = confusion(yt, yp, k)
        multi.append(
            {
                "numClasses": k,
                "labels": yt.tolist(),
                "preds": yp.tolist(),
                "confusionMatrix": cm.tolist(),
                "accuracy": float((yt == yp).mean()),
                "mcc": float(mcc(cm)),
            }
        )
    write("metrics.json", {"binary": binary, "multiclass": multi})


if __name__ == "__main__":
    torch.set_num_threads(1)
    decay_names()
    schedule()
    adamw()
    cross_entropy()
    class_weights()
    metrics()
    print(f"wrote fixtures to {OUT}")
