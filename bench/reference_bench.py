"""PyTorch side of the side-by-side benchmark (see bench/run.ts).

torch (CPU) + transformers + peft as installed from PyPI, doing the same work as
bench/esmkit-side.ts on the same weights (a Hugging Face directory and a PEFT adapter
written by esmkit) and the same token ids (a JSON file written by the runner):

    python bench/reference_bench.py KIND --json PARAMS [--threads N]
    python bench/reference_bench.py batch --json '{"cases": [{"id": ..., "kind": ..., "params": {...}}]}'

KIND is train | infer | infer_var | memory | prepare | versions | batch; PARAMS is JSON text or
@FILE. Each result is one stdout line `@@BENCH {json}` (with "id" in batch mode); a case
that fails reports {"error": "..."} and the others still run. Imports and model loading
are outside every timed region; `prepare` times read_csv .. to_parquet, file read included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import traceback

MARK = "@@BENCH "
LR = 5e-5
MAX_GRAD_NORM = 1.0


def emit(obj: dict) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine so far (all cores, /proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherCores:
    """CPU other processes took during a `with` block (machine busy time minus ours, per
    wall second: 0.5 = half a core), to tell a noisy measurement from a slow one."""

    def __enter__(self):
        self.busy, self.cpu, self.wall = machine_busy_seconds(), os.times(), time.perf_counter()
        self.value = None
        return self

    def __exit__(self, *exc):
        busy, cpu, wall = machine_busy_seconds(), os.times(), time.perf_counter() - self.wall
        if self.busy is not None and busy is not None and wall > 0:
            own = (cpu.user - self.cpu.user) + (cpu.system - self.cpu.system)
            self.value = round(max(0.0, (busy - self.busy - own) / wall), 2)
        return False


def load_params(text: str) -> dict:
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            return json.load(f)
    return json.loads(text)


def read_ids(path: str):
    import torch

    with open(path, encoding="utf-8") as f:
        ids = json.load(f)
    input_ids = torch.tensor(ids["inputIds"], dtype=torch.long)
    return ids, input_ids, torch.ones_like(input_ids), torch.tensor(ids["labels"], dtype=torch.long)


def versions() -> dict:
    import numpy
    import pandas
    import peft
    import pyarrow
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "torchThreads": torch.get_num_threads(),
        "torchInteropThreads": torch.get_num_interop_threads(),
        "mklAvailable": torch.backends.mkl.is_available(),
        "mkldnnAvailable": torch.backends.mkldnn.is_available(),
    }


def load_classifier(model_dir: str):
    from transformers import EsmForSequenceClassification

    model = EsmForSequenceClassification.from_pretrained(model_dir)
    return model


def trainer(p: dict):
    """Model, optimizer and one full optimizer step (as HF Trainer: forward+backward per
    micro-batch with the loss divided by their number, clip_grad_norm_, AdamW, zero_grad)."""
    import torch
    from peft import PeftModel

    base = load_classifier(p["modelDir"])
    if p.get("checkpointing"):
        # Non-reentrant: gradients reach the LoRA weights although the inputs need none.
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = PeftModel.from_pretrained(base, p["adapterDir"], is_trainable=True)
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    ids, input_ids, mask, labels = read_ids(p["ids"])
    micro = min(int(p.get("microBatch") or ids["batch"]), ids["batch"])
    chunks = [
        (input_ids[i : i + micro], mask[i : i + micro], labels[i : i + micro])
        for i in range(0, ids["batch"], micro)
    ]

    def step() -> float:
        total = 0.0
        for x, m, y in chunks:
            loss = model(input_ids=x, attention_mask=m, labels=y).loss / len(chunks)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    info = {
        "batch": ids["batch"],
        "length": ids["length"],
        "microBatch": micro,
        "checkpointing": bool(p.get("checkpointing")),
        "trainableParameters": sum(q.numel() for q in params),
        "attnImplementation": getattr(base.config, "_attn_implementation", None),
    }
    return step, info


def case_train(p: dict) -> dict:
    step, info = trainer(p)
    for _ in range(int(p["warmup"])):
        step()
    seconds = []
    loss = float("nan")
    with OtherCores() as other:
        for _ in range(int(p["repeats"])):
            t0 = time.perf_counter()
            loss = step()
            seconds.append(time.perf_counter() - t0)
    s = statistics.median(seconds)
    return {
        **info,
        "stepSeconds": seconds,
        "medianStepSeconds": s,
        "tokensPerSecond": info["batch"] * info["length"] / s,
        "loss": loss,
        "otherCores": other.value,
    }


def case_infer(p: dict) -> dict:
    import torch

    model = load_classifier(p["modelDir"])
    model.eval()
    ids, input_ids, mask, _ = read_ids(p["ids"])
    seconds = []
    with torch.inference_mode():
        for _ in range(int(p["warmup"])):
            model(input_ids=input_ids, attention_mask=mask).logits.numpy()
        with OtherCores() as other:
            for _ in range(int(p["repeats"])):
                t0 = time.perf_counter()
                model(input_ids=input_ids, attention_mask=mask).logits.numpy()
                seconds.append(time.perf_counter() - t0)
    s = statistics.median(seconds)
    return {
        "batch": ids["batch"],
        "length": ids["length"],
        "attnImplementation": getattr(model.config, "_attn_implementation", None),
        "batchSeconds": seconds,
        "latencyMs": s * 1000,
        "sequencesPerSecond": ids["batch"] / s,
        "tokensPerSecond": ids["batch"] * ids["length"] / s,
        "otherCores": other.value,
    }


def case_infer_var(p: dict) -> dict:
    """Variable-length proteins (bench/esmkit-side.ts ProteinsFile) in batches of
    `batch` consecutive ones, each padded to its longest member (input order), as the
    seed workflow's predictor does. With `hidden` ({mode: .npz}) it also checks another
    engine's last hidden states (esm.cpp) against this model's, protein by protein,
    unpadded."""
    import numpy as np
    import torch

    model = load_classifier(p["modelDir"])
    model.eval()
    with open(p["proteins"], encoding="utf-8") as f:
        spec = json.load(f)
    seqs, b, pad = spec["sequences"], int(spec["batch"]), int(spec["padId"])
    batches = []
    for i in range(0, len(seqs), b):
        part = seqs[i : i + b]
        length = max(len(s) for s in part)
        ids = torch.full((len(part), length), pad, dtype=torch.long)
        mask = torch.zeros((len(part), length), dtype=torch.long)
        for r, s in enumerate(part):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        batches.append((ids, mask))
    out: dict = {}
    with torch.inference_mode():
        for mode, file in (p.get("hidden") or {}).items():
            if not file or not os.path.exists(file):
                continue
            theirs = np.load(file)
            max_abs, max_ref = 0.0, 0.0
            for k in sorted(theirs.files, key=lambda k: int(k[1:])):
                ids = torch.tensor(seqs[int(k[1:])], dtype=torch.long)[None]
                ours = model.esm(input_ids=ids).last_hidden_state[0].numpy()
                max_abs = max(max_abs, float(np.abs(ours - theirs[k]).max()))
                max_ref = max(max_ref, float(np.abs(ours).max()))
            out[f"{mode}HiddenMaxAbsDiff"] = max_abs
            out[f"{mode}HiddenMaxAbs"] = max_ref
            out[f"{mode}HiddenProteins"] = len(theirs.files)
        for ids, mask in batches[: int(p["warmup"])]:
            model(input_ids=ids, attention_mask=mask).logits.numpy()
        seconds = []
        with OtherCores() as other:
            for _ in range(int(p["repeats"])):
                t0 = time.perf_counter()
                for ids, mask in batches:
                    model(input_ids=ids, attention_mask=mask).logits.numpy()
                seconds.append(time.perf_counter() - t0)
    s = statistics.median(seconds)
    real = sum(len(x) for x in seqs)
    return {
        **out,
        "proteins": len(seqs),
        "batch": b,
        "realTokens": real,
        "computedTokens": int(sum(ids.numel() for ids, _ in batches)),
        "attnImplementation": getattr(model.config, "_attn_implementation", None),
        "passSeconds": seconds,
        "medianPassSeconds": s,
        "sequencesPerSecond": len(seqs) / s,
        "tokensPerSecond": real / s,
        "otherCores": other.value,
    }


def allocator_peak(prof) -> tuple[int, int] | None:
    """Peak and final bytes allocated above the start of a profile, from the CPU
    allocator's alloc (+) / free (-) events in time order; None if not recorded."""
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except Exception:  # private API: degrade to the RSS figure
        return None
    if not events:
        return None
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak, cur


def case_memory(p: dict) -> dict:
    """Peak activation memory: CPU-allocator bytes alive above the pre-step level during one
    full training step (torch.profiler profile_memory events), the analogue of tf.profile's
    peakBytes minus the bytes alive before. The profiled step is the warm-up; the time is
    the median of `repeats` unprofiled steps. Max RSS of the process is reported beside it."""
    from torch.profiler import ProfilerActivity, profile

    step, info = trainer(p)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    profiled = time.perf_counter() - t0
    peak = allocator_peak(prof)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds = []
    with OtherCores() as other:
        for _ in range(int(p["repeats"])):
            t1 = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - t1)
    out = {
        **info,
        "method": "torch.profiler profile_memory: peak of the running sum of CPU allocator"
        " events over one step",
        "activationBytes": peak[0] if peak else None,
        "endBytes": peak[1] if peak else None,
        "maxRssBeforeBytes": rss_before,
        "maxRssAfterBytes": rss_after,
        "profiledStepSeconds": profiled,
        "stepSeconds": seconds,
        "medianStepSeconds": statistics.median(seconds) if seconds else profiled,
        "otherCores": other.value,
    }
    if peak is None:
        out["activationBytes"] = max(0, rss_after - rss_before)
        out["method"] = "max RSS increase over the profiled step (allocator events unavailable)"
    return out


def case_prepare(p: dict) -> dict:
    """The seed workflow: pandas read_csv, length filter 100..512, Membrane label, random
    80/20 split (seed 42), HF EsmTokenizer batch call (truncation, max_length 512),
    Parquet out. Timed end to end, file read and tokenizer load included."""
    import pandas as pd
    from transformers import EsmTokenizer

    os.makedirs(p["out"], exist_ok=True)
    seconds = []
    kept = train_rows = test_rows = read_rows = 0
    with OtherCores() as other:
        for _ in range(int(p["repeats"])):
            t0 = time.perf_counter()
            df = pd.read_csv(p["input"])
            read_rows = len(df)
            lengths = df["Sequence"].str.len()
            df = df[(lengths >= 100) & (lengths <= 512)]
            df = pd.DataFrame(
                {
                    "id": df["ACC"],
                    "sequence": df["Sequence"],
                    "kingdom": df["Kingdom"],
                    "partition": df["Partition"].astype("int32"),
                    "label": df["Membrane"].astype("int64"),
                    "length": df["Sequence"].str.len().astype("int32"),
                }
            ).reset_index(drop=True)
            train = df.sample(frac=0.8, random_state=42)
            test = df.drop(train.index)
            tok = EsmTokenizer.from_pretrained(p["tokenizer"])
            for name, part in (("train", train), ("test", test)):
                enc = tok(part["sequence"].tolist(), truncation=True, max_length=512)
                part = part.assign(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
                part.to_parquet(
                    os.path.join(p["out"], f"{name}.parquet"), compression="snappy", index=False
                )
            seconds.append(time.perf_counter() - t0)
            kept, train_rows, test_rows = len(df), len(train), len(test)
    return {
        "seconds": seconds,
        "medianSeconds": statistics.median(seconds),
        "rowsRead": read_rows,
        "rowsKept": kept,
        "trainRows": train_rows,
        "testRows": test_rows,
        "otherCores": other.value,
    }


CASES = {
    "train": case_train,
    "infer": case_infer,
    "infer_var": case_infer_var,
    "memory": case_memory,
    "prepare": case_prepare,
    "versions": lambda p: versions(),
}


def run_one(kind: str, params: dict) -> dict:
    try:
        return CASES[kind](params)
    except Exception as e:  # a failed case is a result, not a crash
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=[*CASES, "batch"])
    ap.add_argument("--json", default="{}", help="parameters: JSON text or @FILE")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    params = load_params(args.json)
    if args.kind == "batch":
        for c in params["cases"]:
            emit({"id": c["id"], "threads": args.threads, **run_one(c["kind"], c["params"])})
    else:
        emit({"threads": args.threads, **run_one(args.kind, params)})


if __name__ == "__main__":
    main()
