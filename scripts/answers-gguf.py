#!/usr/bin/env python3
"""Writes Weft's answer model as a GGUF file (llama architecture), with the gguf-py of node-llama-cpp's llama.cpp source.

    python3 scripts/answers-gguf.py CKPT_DIR VOCAB_GGUF OUT.gguf [--type q8_0|f16]

CKPT_DIR is what scripts/train-answers.py leaves (ckpt.json and its parts, checked against the sha256). VOCAB_GGUF is
the tokenizer the corpus was tokenized with (models/ggml-vocab-llama-spm.gguf of the llama.cpp source); its
tokenizer fields are copied as they are. The training vocabulary was compacted to the tokens the corpus uses: the
embedding is expanded back to the tokenizer's rows, the unused ones zero. The output projection is tied to the
embedding (no output.weight: llama.cpp then uses token_embd). Weights are written unpermuted: the training code
applies RoPE to adjacent pairs, as llama.cpp does for this architecture.
"""
import argparse
import hashlib
import io
import json
import os
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("GGUF_PY", os.path.join(here, "..", "node_modules", "node-llama-cpp", "llama", "llama.cpp", "gguf-py")))
import gguf  # noqa: E402
from gguf.quants import quantize  # noqa: E402


def load_checkpoint(ckpt_dir):
    info = json.load(open(os.path.join(ckpt_dir, "ckpt.json")))
    data = b"".join(open(os.path.join(ckpt_dir, p), "rb").read() for p in info["parts"])
    if hashlib.sha256(data).hexdigest() != info["sha256"]:
        sys.exit(f"{ckpt_dir}: checkpoint parts do not match their sha256")
    return info, dict(np.load(io.BytesIO(data)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("vocab")
    ap.add_argument("out")
    ap.add_argument("--type", choices=["q5_1", "q8_0", "f16"], default="q5_1")
    ap.add_argument("--name", default="weft-answers")
    args = ap.parse_args()

    info, w = load_checkpoint(args.ckpt)
    shape = info["shape"]
    vocab_reader = gguf.GGUFReader(args.vocab)
    fields = vocab_reader.fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    n_vocab = len(tokens)
    hd = shape["embd"] // shape["heads"]
    matrix_type = {"q5_1": gguf.GGMLQuantizationType.Q5_1, "q8_0": gguf.GGMLQuantizationType.Q8_0, "f16": gguf.GGMLQuantizationType.F16}[args.type]

    writer = gguf.GGUFWriter(args.out, "llama")
    writer.add_name(args.name)
    writer.add_context_length(shape["context"])
    writer.add_embedding_length(shape["embd"])
    writer.add_block_count(shape["layers"])
    writer.add_feed_forward_length(shape["ff"])
    writer.add_head_count(shape["heads"])
    writer.add_head_count_kv(shape["kv_heads"])
    writer.add_layer_norm_rms_eps(shape["rms_eps"])
    writer.add_rope_freq_base(shape["rope_base"])
    writer.add_rope_dimension_count(hd)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type({"q5_1": gguf.LlamaFileType.MOSTLY_Q5_1, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "f16": gguf.LlamaFileType.MOSTLY_F16}[args.type])
    writer.add_tokenizer_model(fields["tokenizer.ggml.model"].contents())
    if "tokenizer.ggml.pre" in fields:
        writer.add_tokenizer_pre(fields["tokenizer.ggml.pre"].contents())
    writer.add_token_list(tokens)
    writer.add_token_scores(fields["tokenizer.ggml.scores"].contents())
    writer.add_token_types(fields["tokenizer.ggml.token_type"].contents())
    for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                     ("unknown_token_id", writer.add_unk_token_id), ("add_bos_token", writer.add_add_bos_token),
                     ("add_eos_token", writer.add_add_eos_token)):
        if f"tokenizer.ggml.{key}" in fields:
            add(fields[f"tokenizer.ggml.{key}"].contents())

    vocab_ids = w.pop("vocab_ids")
    embd = np.zeros((n_vocab, shape["embd"]), dtype=np.float32)
    embd[vocab_ids] = w.pop("token_embd.weight").astype(np.float32)

    def matrix(name, arr):
        arr = np.ascontiguousarray(arr.astype(np.float32))
        data = quantize(arr, matrix_type)
        writer.add_tensor(name, data, raw_dtype=matrix_type)

    matrix("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", w.pop("output_norm.weight").astype(np.float32))
    for i in range(shape["layers"]):
        p = f"blocks.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", w.pop(p + "attn_norm.weight").astype(np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", w.pop(p + "ffn_norm.weight").astype(np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            matrix(f"blk.{i}.{name}.weight", w.pop(p + name + ".weight"))
    if w:
        sys.exit(f"weights left unwritten: {sorted(w)}")

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = open(args.out, "rb").read()
    print(json.dumps({"out": args.out, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "step": info["step"],
                      "note": info.get("note")}))


if __name__ == "__main__":
    main()
