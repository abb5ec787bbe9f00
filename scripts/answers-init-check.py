#!/usr/bin/env python3
"""Checks that train-answers.py's --init-gguf reads a GGUF as llama.cpp runs it: the PyTorch model built from the
GGUF's dequantized weights gives the same next-token logits as llama.cpp (node-llama-cpp) for a held-out prompt.

    python3 scripts/answers-init-check.py MODEL.gguf [--kind cross-chunk] [--tolerance 0.05] [--f32-copy PATH]

Prints the largest absolute logit difference and both top-5s; exits 1 if they differ beyond the tolerance or the
argmax differs. Needs PyTorch (the CPU one will do) and the repository's node_modules.

On a Q5_1 file llama.cpp's CPU matmuls round the activations to 8 bits (q8_1) before the dot product, which moves
logits of ~14 by up to ~0.2 while PyTorch multiplies in float32: that is llama.cpp's rounding, not the import.
--f32-copy PATH first writes the same weights dequantized to F32 (metadata copied as is) and compares on that copy,
where llama.cpp computes in float32 too and the logits must agree to float rounding.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("train_answers", os.path.join(here, "train-answers.py"))
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)


def write_f32_copy(src, dst):
    gguf = train.import_gguf_py()
    from gguf.quants import dequantize
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, reader.fields["general.architecture"].contents())
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue  # the reader's own header fields, the one the writer adds itself, and the one that changes
        sub_type = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(name, field.contents(), field.types[0], sub_type)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for t in reader.tensors:
        data = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(tuple(int(n) for n in reversed(t.shape)))
        writer.add_tensor(t.name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--kind", default="cross-chunk")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--f32-copy", default=None)
    args = ap.parse_args()
    if args.f32_copy:
        write_f32_copy(args.model, args.f32_copy)
        args.model = args.f32_copy
    ref = json.loads(subprocess.run(["npx", "tsx", os.path.join(here, "answers-llama-logits.ts"), args.model, "--kind", args.kind],
                                    check=True, capture_output=True, text=True, cwd=os.path.join(here, "..")).stdout)
    weights, vocab_ids = train.load_gguf(args.model)
    model = train.Llama(train.SHAPE, len(vocab_ids))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
    model.eval()
    remap = {int(t): i for i, t in enumerate(vocab_ids)}
    ids = torch.tensor([[remap[t] for t in ref["tokens"]]])
    with torch.no_grad():
        hidden = model.hidden(ids)
        compact = model.logits_at(hidden, torch.tensor([ids.shape[1] - 1]))[0].double().numpy()
    ours = np.zeros(len(ref["logits"]))
    ours[vocab_ids] = compact  # rows answers-gguf.py wrote as zeros give a logit of exactly 0 in llama.cpp too
    theirs = np.asarray(ref["logits"])
    diff = np.abs(ours - theirs)
    top = lambda x: [(int(i), round(float(x[i]), 3)) for i in np.argsort(-x)[:5]]
    print(json.dumps({"question": ref["question"], "target": ref["target"], "prompt_tokens": len(ref["tokens"]),
                      "max_abs_diff": round(float(diff.max()), 5), "mean_abs_diff": round(float(diff.mean()), 6),
                      "top5_pytorch": top(ours), "top5_llama_cpp": top(theirs), "answer_first_token": ref["answer"][0]}))
    if diff.max() > args.tolerance or np.argmax(ours) != np.argmax(theirs):
        sys.exit("the PyTorch import and llama.cpp disagree")


if __name__ == "__main__":
    main()
