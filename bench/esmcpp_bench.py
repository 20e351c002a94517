"""esm.cpp side of the side-by-side benchmark (see bench/run.ts, cases deeploc-*).

Runs in its own virtualenv (bench/setup-esmcpp.sh: esm-cpp pins numpy < 2):

    .venv-esmcpp/bin/python bench/esmcpp_bench.py --json PARAMS

PARAMS (JSON text or @FILE): modelDir (a Hugging Face EsmForSequenceClassification
directory written by esmkit), work (a directory for the converted weights), proteins (a
JSON file: {"batch": B, "sequences": [[ids...], ...]}), warmup (batches), repeats (passes
over all proteins), parity (how many proteins' last hidden states to save), hiddenOut
(a .npz path prefix). One stdout line `@@BENCH {json}`.

esm.cpp's facts, as read from the installed package (esm-cpp 0.2.1):
- `Model.load_from_safetensors(path)` reads the Hub's EsmForMaskedLM key names: it needs
  every layer's `esm.encoder.layer.N.attention.self.rotary_embeddings.inv_freq` and the LM
  head (`lm_head.dense.*`, `lm_head.layer_norm.*`, `lm_head.bias`); a file without either
  fails with "safetensors: missing tensor <name>". The decoder is tied to the word
  embeddings: `lm_head.decoder.weight` is not needed (present, it is ignored). The
  classifier head of a sequence-classification directory is not read: we drop it and add
  an LM head drawn from a fixed seed, which esm.cpp computes after the encoder (33
  outputs per token).
- `forward_scheduled([ids, ...])` runs a list of variable-length sequences as packed
  forwards (sequences back to back along the token axis, per-sequence attention), split
  into length buckets when max(L) / mean(L) > 1.2; returns per-sequence logits
  `[L, 33]` in input order. `forward_with_hidden_states(ids)` returns (logits, hidden
  states), the last one after the final LayerNorm (Hugging Face's last_hidden_state).
- `quantize_weights()` turns every encoder Linear into per-channel symmetric int8 with
  int8 activations (W8A8); the LM head stays fp32.
- Threads: a process-wide pool sized from ESM_NUM_THREADS at the first load (default:
  the physical cores); OMP_NUM_THREADS does not change it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback

MARK = "@@BENCH "


def emit(obj: dict) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def load_params(text: str) -> dict:
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            return json.load(f)
    return json.loads(text)


def machine_busy_seconds() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def convert(model_dir: str, out: str) -> str:
    """esm.cpp's safetensors from a Hugging Face directory written by esmkit: the same
    encoder tensors, inv_freq added where missing, the classifier dropped, an LM head
    added (seed 0; it only follows the encoder)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    path = os.path.join(out, "esmcpp.safetensors")
    source = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(source):
        return path  # converted by an earlier thread count of the same run
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    h, heads, layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    hd = h // heads
    src = load_file(source)
    t = {k: v for k, v in src.items() if not k.startswith("classifier.")}
    inv_freq = (1.0 / (10000.0 ** (np.arange(0, hd, 2, dtype=np.float32) / hd))).astype(np.float32)
    for i in range(layers):
        t.setdefault(f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq", inv_freq)
    rng = np.random.default_rng(0)
    t["lm_head.dense.weight"] = (rng.standard_normal((h, h)) * 0.02).astype(np.float32)
    t["lm_head.dense.bias"] = np.zeros(h, np.float32)
    t["lm_head.layer_norm.weight"] = np.ones(h, np.float32)
    t["lm_head.layer_norm.bias"] = np.zeros(h, np.float32)
    t["lm_head.bias"] = np.zeros(cfg["vocab_size"], np.float32)
    os.makedirs(out, exist_ok=True)
    save_file(t, path)
    return path


def run(p: dict) -> dict:
    import esm_cpp
    import numpy as np

    path = convert(p["modelDir"], p["work"])
    t0 = time.perf_counter()
    model = esm_cpp.Model.load_from_safetensors(path)
    load_s = time.perf_counter() - t0
    with open(p["proteins"], encoding="utf-8") as f:
        spec = json.load(f)
    seqs = [np.asarray(s, dtype=np.int32) for s in spec["sequences"]]
    b = int(spec["batch"])
    batches = [seqs[i : i + b] for i in range(0, len(seqs), b)]
    real_tokens = int(sum(len(s) for s in seqs))
    out: dict = {
        "version": esm_cpp.__version__,
        "isa": esm_cpp.current_isa(),
        "threads": int(esm_cpp.Model.num_threads),
        "esmNumThreads": os.environ.get("ESM_NUM_THREADS"),
        "loadSeconds": load_s,
        "proteins": len(seqs),
        "batch": b,
        "realTokens": real_tokens,
    }
    modes = list(p.get("modes", ["fp32", "int8"]))
    if modes not in (["fp32", "int8"], ["int8"]):
        raise ValueError(f"modes: expected [fp32, int8] or [int8], got {modes}")
    for mode in modes:
        if mode == "int8":
            model.quantize_weights()
        if p.get("hiddenOut") and int(p.get("parity", 0)) > 0:
            hidden = {
                f"h{i}": model.forward_with_hidden_states(seqs[i])[1][-1].astype(np.float32)
                for i in range(min(int(p["parity"]), len(seqs)))
            }
            file = f"{p['hiddenOut']}-{mode}.npz"
            np.savez(file, **hidden)
            out[f"{mode}Hidden"] = os.path.basename(file)
        for batch in batches[: int(p["warmup"])]:
            model.forward_scheduled(batch)
        seconds, cpu = [], []
        busy0, wall0 = machine_busy_seconds(), time.perf_counter()
        own0 = os.times()
        for _ in range(int(p["repeats"])):
            c0, w0 = os.times(), time.perf_counter()
            for batch in batches:
                model.forward_scheduled(batch)
            w = time.perf_counter() - w0
            c1 = os.times()
            seconds.append(w)
            cpu.append((c1.user - c0.user + c1.system - c0.system) / w)
        busy1, wall = machine_busy_seconds(), time.perf_counter() - wall0
        own1 = os.times()
        other = None
        if busy0 is not None and busy1 is not None and wall > 0:
            own = (own1.user - own0.user) + (own1.system - own0.system)
            other = round(max(0.0, (busy1 - busy0 - own) / wall), 2)
        s = statistics.median(seconds)
        out[mode] = {
            "passSeconds": seconds,
            "medianPassSeconds": s,
            "sequencesPerSecond": len(seqs) / s,
            "tokensPerSecond": real_tokens / s,
            # Cores this process kept busy while timed: tells whether the pool really ran
            # ESM_NUM_THREADS threads.
            "cpuPerWall": [round(x, 2) for x in cpu],
            "otherCores": other,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="parameters: JSON text or @FILE")
    args = ap.parse_args()
    try:
        result = run(load_params(args.json))
    except Exception as e:  # a failed case is a result, not a crash
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    emit(result)


if __name__ == "__main__":
    main()
