#!/usr/bin/env python3
"""Trains Weft's answer model (a small llama) on the answer corpus, on one GPU, within a wall-clock budget.

    python3 scripts/train-answers.py DATA_DIR OUT_DIR --seconds 480 [--seed 1] [--resume CKPT_DIR]

DATA_DIR holds what test/fixtures/answer-tokens.ts writes (tokens.u16 or tokens.u16.xz, index.i32, meta.json): prompts
in Weft's own format, tokenized by llama.cpp. The model trains with full attention on the whole prompt; the loss is
next-token cross-entropy on the answer (and its citation and end-of-text), plus a lighter weight on the prompt's own
tokens, which teaches the copying (induction) circuits early. Recipe: fp32 master weights, bf16 autocast, AdamW, a
learning-rate schedule over wall-clock time (so the run ends inside one device call), and a curriculum from two to
four chunks per prompt up to eight (the file is in that order). The vocabulary is compacted to the tokens the corpus
uses; scripts/answers-gguf.py expands it back to the tokenizer's 32000 rows.

OUT_DIR gets train.log, and ckpt.json with ckpt.partN (fp16 weights as .npz, split for the transfer limit) after each
evaluation, so a run that is cut short still leaves its last checkpoint.
"""
import argparse
import hashlib
import io
import json
import lzma
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPE = dict(layers=8, embd=512, heads=8, kv_heads=4, ff=1024, rope_base=10000.0, rms_eps=1e-5, context=1024)


def rope_tables(positions, head_dim, base, device):
    # ggml's "normal" RoPE (llama.cpp's LLM_ARCH_LLAMA): adjacent pairs (x[2i], x[2i+1]) rotate by pos * base^(-2i/d).
    inv = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = positions[:, None].float() * inv[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    # x: (B, H, T, D); cos/sin: (T, D/2)
    x2 = x.float().unflatten(-1, (-1, 2))
    a, b = x2[..., 0], x2[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    return out.type_as(x)


def attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # Older PyTorch (a CPU check of this script): the same causal attention written out.
    T = q.shape[-2]
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return (scores.softmax(-1) @ v.float()).type_as(q)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        d, hd = s["embd"], s["embd"] // s["heads"]
        self.heads, self.kv_heads, self.hd = s["heads"], s["kv_heads"], hd
        self.attn_norm = RMSNorm(d, s["rms_eps"])
        self.attn_q = nn.Linear(d, s["heads"] * hd, bias=False)
        self.attn_k = nn.Linear(d, s["kv_heads"] * hd, bias=False)
        self.attn_v = nn.Linear(d, s["kv_heads"] * hd, bias=False)
        self.attn_output = nn.Linear(s["heads"] * hd, d, bias=False)
        self.ffn_norm = RMSNorm(d, s["rms_eps"])
        self.ffn_gate = nn.Linear(d, s["ff"], bias=False)
        self.ffn_up = nn.Linear(d, s["ff"], bias=False)
        self.ffn_down = nn.Linear(s["ff"], d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.attn_q(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.attn_k(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.attn_v(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        a = attention(q, k, v)
        x = x + self.attn_output(a.transpose(1, 2).reshape(B, T, -1))
        h = self.ffn_norm(x)
        return x + self.ffn_down(F.silu(self.ffn_gate(h)) * self.ffn_up(h))


class Llama(nn.Module):
    def __init__(self, s, vocab):
        super().__init__()
        self.s = s
        self.token_embd = nn.Embedding(vocab, s["embd"])
        self.blocks = nn.ModuleList(Block(s) for _ in range(s["layers"]))
        self.output_norm = RMSNorm(s["embd"], s["rms_eps"])
        nn.init.normal_(self.token_embd.weight, std=0.02)
        for block in self.blocks:
            for lin in (block.attn_q, block.attn_k, block.attn_v, block.ffn_gate, block.ffn_up):
                nn.init.normal_(lin.weight, std=0.02)
            for lin in (block.attn_output, block.ffn_down):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * s["layers"]))

    def forward(self, ids):
        T = ids.shape[1]
        cos, sin = rope_tables(torch.arange(T, device=ids.device), self.s["embd"] // self.s["heads"], self.s["rope_base"], ids.device)
        x = self.token_embd(ids)
        for block in self.blocks:
            x = block(x, cos, sin)
        # Tied output: the logits are the final state against the token embeddings (no output.weight in the GGUF).
        return self.output_norm(x) @ self.token_embd.weight.t()


def load_data(data_dir):
    meta = json.load(open(os.path.join(data_dir, "meta.json")))
    path = os.path.join(data_dir, "tokens.u16")
    raw = open(path, "rb").read() if os.path.exists(path) else lzma.decompress(open(path + ".xz", "rb").read())
    tokens = np.frombuffer(raw, dtype="<u2").astype(np.int64)
    index = np.fromfile(os.path.join(data_dir, "index.i32"), dtype="<i4").reshape(-1, 6)
    return meta, tokens, index


def save_checkpoint(model, vocab_ids, out_dir, step, note):
    arrays = {name: p.detach().float().cpu().numpy().astype(np.float16) for name, p in model.state_dict().items()}
    arrays["vocab_ids"] = np.asarray(vocab_ids, dtype=np.int32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    part = 15 * 1024 * 1024
    parts = []
    for i in range(0, len(data), part):
        name = f"ckpt.part{i // part}"
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data[i:i + part])
        parts.append(name)
    with open(os.path.join(out_dir, "ckpt.json"), "w") as f:
        json.dump({"parts": parts, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "step": step,
                   "shape": SHAPE, "note": note}, f)


def load_checkpoint(ckpt_dir):
    info = json.load(open(os.path.join(ckpt_dir, "ckpt.json")))
    data = b"".join(open(os.path.join(ckpt_dir, p), "rb").read() for p in info["parts"])
    assert hashlib.sha256(data).hexdigest() == info["sha256"], "checkpoint checksum mismatch"
    arrays = dict(np.load(io.BytesIO(data)))
    return info, arrays


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=480)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--prompt-weight", type=float, default=0.3)
    ap.add_argument("--eval-every", type=float, default=60)
    ap.add_argument("--resume", default=None)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log_file = open(os.path.join(args.out, "train.log"), "a")

    def log(*parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    started = time.time()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    meta, tokens, index = load_data(args.data)

    resumed = None
    if args.resume:
        info, resumed = load_checkpoint(args.resume)
        vocab_ids = resumed.pop("vocab_ids").astype(np.int64)
        log("resume from step", info["step"], info.get("note"))
        # Tokens this corpus uses that the checkpoint's did not: new embedding rows, initialised as at the start.
        extra = np.setdiff1d(np.unique(tokens), vocab_ids)
        if len(extra):
            emb = resumed["token_embd.weight"]
            grown = np.random.default_rng(args.seed).normal(0, 0.02, (len(extra), emb.shape[1])).astype(emb.dtype)
            resumed["token_embd.weight"] = np.concatenate([emb, grown])
            vocab_ids = np.concatenate([vocab_ids, extra])
            log(f"vocabulary grown by {len(extra)} tokens")
    else:
        vocab_ids = np.unique(tokens)
    remap = np.full(meta["vocabSize"], -1, dtype=np.int64)
    remap[vocab_ids] = np.arange(len(vocab_ids))
    compact = remap[tokens]
    assert (compact >= 0).all(), "a token outside the checkpoint's vocabulary"

    assert meta["dropped"] == 0, "examples were dropped: the train/eval boundary in the index is unknown"
    train_rows = index[index[:, 5] == 0]
    n_train = meta["train"]
    train_rows, eval_train_rows = train_rows[:n_train], train_rows[n_train:]
    held_rows = index[index[:, 5] == 1]
    log(f"data: {len(train_rows)} train, {len(held_rows)} held-out, {len(vocab_ids)} tokens in use, "
        f"{len(tokens)} tokens, mean length {index[:, 1].mean():.0f}, load {time.time() - started:.1f}s")

    model = Llama(SHAPE, len(vocab_ids)).to(dev)
    if resumed is not None:
        model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in resumed.items()})
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {SHAPE}, {n_params / 1e6:.2f}M parameters ({len(vocab_ids)}-row embedding)")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if dev.type == "cuda" else {}))

    def batch_of(rows):
        T = int(rows[:, 1].max())
        ids = np.zeros((len(rows), T), dtype=np.int64)
        weight = np.zeros((len(rows), T), dtype=np.float32)
        answer = np.zeros((len(rows), T), dtype=bool)
        for i, (off, length, ans, *_rest) in enumerate(rows):
            ids[i, :length] = compact[off:off + length]
            # target at position t is token t+1: prompt tokens after BOS, then the answer tokens
            weight[i, :ans - 1] = args.prompt_weight
            weight[i, ans - 1:length - 1] = 1.0
            answer[i, ans - 1:length - 1] = True
        return (torch.from_numpy(ids).to(dev, non_blocking=True), torch.from_numpy(weight).to(dev, non_blocking=True),
                torch.from_numpy(answer).to(dev, non_blocking=True))

    @torch.no_grad()
    def evaluate(rows, tag):
        model.eval()
        res = {}
        for kind in range(3):
            kr = rows[rows[:, 3] == kind]
            hits = 0
            for i in range(0, len(kr), 100):
                ids, _w, answer = batch_of(kr[i:i + 100])
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    logits = model(ids)
                pred = logits.argmax(-1)
                ok = (pred[:, :-1] == ids[:, 1:]) | ~answer[:, :-1]
                hits += int(ok.all(dim=1).sum())
            res[meta["kinds"][kind]] = round(100 * hits / max(1, len(kr)), 1)
        model.train()
        log(f"eval {tag}: answer exact match (teacher-forced) {res}")
        return res

    budget = args.seconds - (time.time() - started)
    train_start = time.time()
    warmup = 200 if resumed is None else 50
    step, next_eval, losses = 0, args.eval_every, []
    while True:
        elapsed = time.time() - train_start
        progress = elapsed / budget
        if progress >= 1:
            break
        # Curriculum: the file runs from 2-4 chunks to 4-8; sample from a prefix that grows to the whole set.
        hi = len(train_rows) if resumed is not None else max(args.batch, int(len(train_rows) * min(1.0, 0.15 + 1.3 * progress)))
        rows = train_rows[rng.integers(0, hi, size=args.batch)]
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, weight, answer = batch_of(rows)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            logits = model(ids)
        ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        ce = ce.view(ids.shape[0], -1)
        w = weight[:, :-1]
        loss = (ce * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            ans = answer[:, :-1]
            losses.append((loss.item(), float((ce * ans).sum() / ans.sum())))
        if step % 200 == 0:
            l, a = np.mean([x[0] for x in losses[-4:]]), np.mean([x[1] for x in losses[-4:]])
            log(f"step {step} t={time.time() - started:.0f}s lr={lr:.2e} loss={l:.3f} answer_ce={a:.3f} chunks<= {int(rows[:, 4].max())}")
        if time.time() - train_start >= next_eval:
            next_eval += args.eval_every
            evaluate(held_rows, f"held-out step {step}")
            save_checkpoint(model, vocab_ids, args.out, step, f"t={time.time() - started:.0f}s")
    evaluate(held_rows, f"held-out final step {step}")
    evaluate(eval_train_rows, f"train-split final step {step}")
    save_checkpoint(model, vocab_ids, args.out, step, f"final t={time.time() - started:.0f}s")
    log(f"done: {step} steps in {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
