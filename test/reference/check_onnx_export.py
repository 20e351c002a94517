"""Checks an `esmkit export` folder with the Python reference stack: the ONNX file passes
`onnx.checker`, Python's `onnxruntime` runs it on ids from Hugging Face's EsmTokenizer
(loaded from the export folder, truncating to its max length), and the result is
compared with transformers' PyTorch model loaded from the original model directory.

    python check_onnx_export.py EXPORT_DIR MODEL_DIR SEQUENCES_JSON [EXPORT_DIR ...]

(one or more triples, so one Python start checks several exports). Prints a JSON list,
one object per triple: per ONNX file, the max |difference| in probabilities (or hidden
states for feature-extraction) against PyTorch, label agreement and the input/output
names and types the file declares.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from transformers import AutoTokenizer, EsmForSequenceClassification, EsmModel


def check(export_dir: Path, model_dir: Path, sequences_file: Path) -> dict:
    manifest = json.loads((export_dir / "esmkit-export.json").read_text())
    sequences = json.loads(sequences_file.read_text())
    task = manifest["task"]
    tok = AutoTokenizer.from_pretrained(str(export_dir))
    torch.manual_seed(0)
    if task == "text-classification":
        model = EsmForSequenceClassification.from_pretrained(str(model_dir)).eval()
    else:
        model = EsmModel.from_pretrained(str(model_dir), add_pooling_layer=False).eval()

    out = {"task": task, "sequences": len(sequences), "tokenizer": type(tok).__name__, "files": {}}
    names = ["model.onnx"] + (["model_quantized.onnx"] if "q8" in manifest["dtypes"] else [])
    for name in names:
        path = export_dir / "onnx" / name
        onnx.checker.check_model(str(path), full_check=True)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        result = {
            "inputs": [[i.name, i.type, i.shape] for i in session.get_inputs()],
            "outputs": [[o.name, o.type, o.shape] for o in session.get_outputs()],
            "max_abs_diff": 0.0,
            "agree": 0,
        }
        for i in range(0, len(sequences), 4):
            batch = sequences[i : i + 4]
            enc = tok(
                batch,
                padding=True,
                truncation=True,
                max_length=manifest["maxLength"],
                return_tensors="np",
            )
            feeds = {
                "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64),
            }
            (got,) = session.run([manifest["output"]], feeds)
            with torch.no_grad():
                t = model(
                    input_ids=torch.from_numpy(feeds["input_ids"]),
                    attention_mask=torch.from_numpy(feeds["attention_mask"]),
                )
            if task == "text-classification":
                want = torch.softmax(t.logits, -1).numpy()
                got = torch.softmax(torch.from_numpy(got), -1).numpy()
                result["agree"] += int((want.argmax(-1) == got.argmax(-1)).sum())
            else:
                want = t.last_hidden_state.numpy()
                # Compare real positions only: padded ones are not defined by either model.
                m = feeds["attention_mask"][..., None].astype(bool)
                want, got = np.where(m, want, 0), np.where(m, got, 0)
            result["max_abs_diff"] = max(result["max_abs_diff"], float(np.abs(want - got).max()))
        out["files"][name] = result
    return out


def main() -> None:
    args = [Path(a) for a in sys.argv[1:]]
    if not args or len(args) % 3:
        sys.exit("usage: check_onnx_export.py EXPORT_DIR MODEL_DIR SEQUENCES_JSON [...]")
    print(json.dumps([check(*args[i : i + 3]) for i in range(0, len(args), 3)]))


if __name__ == "__main__":
    main()
