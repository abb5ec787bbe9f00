#!/usr/bin/env python3
"""Trains Weft's answer model (a small llama) on the answer corpus, on one GPU, within a wall-clock budget.

    python3 scripts/train-answers.py DATA_DIR OUT_DIR --seconds 540 [--seed 1] [--resume CKPT_DIR | --init-gguf MODEL.gguf]

DATA_DIR holds what test/fixtures/answer-tokens.ts writes (tokens.u16, index.i32, meta.json, and with --extra answer.u8;
any but meta.json may be .xz): prompts in Weft's own format, tokenized by llama.cpp. With answer.u8 a row may hold several
questions after its sources (each answer, citation and end of text flagged there), all weighted as answers. The model trains with full attention on the whole prompt; the loss is
next-token cross-entropy on the answer (and its citation and end-of-text), plus a lighter weight on the prompt's own
tokens (0.3 falling to 0.1), which teaches the copying (induction) circuits early. The vocabulary is compacted to the tokens the corpus
uses; scripts/answers-gguf.py expands it back to the tokenizer's 32000 rows.

Throughput (the first run was slow, 6 steps/s of 128 prompts padded to the longest): the whole token stream and the
index live on the GPU, so a batch is one gather there; the host only draws row numbers and cuts them into batches of
similar length (sorted within a pool) that hold about --tokens tokens each, so padding stays small. Positions that
carry a loss are computed on the host from the lengths alone and sent pinned and non-blocking; the output projection
and the cross-entropy run on those positions only. fp32 master weights, bf16 autocast, fused AdamW, the learning rate
warms up and then follows a cosine over the remaining wall-clock budget, and a curriculum samples from a prefix of the
file (which runs from 2-4 chunks to 4-8) that grows to the whole set by --curriculum of the budget. The host never
waits for the GPU except to log every --log-every steps. Evaluation (greedy exact match of answer, citation and end
of text, which teacher forcing gives exactly) runs every --eval-every seconds, and the checkpoint is written from a
copy by a background thread.

--init-gguf starts from the weights of a GGUF that scripts/answers-gguf.py wrote (the committed model travels with the
checkout, where a checkpoint would not fit beside the data): its matrices are dequantized with gguf-py (a `gguf`
package directory beside this script, or the llama.cpp source's), its vocabulary is the embedding's non-zero rows.

OUT_DIR gets train.log, and ckpt.json with its parts (fp16 weights as .npz, split for the transfer limit) after each
evaluation, so a run that is cut short still leaves its last checkpoint.
"""
import argparse
import hashlib
import io
import json
import lzma
import math
import os
import sys
import threading
import time
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPE = dict(layers=8, embd=512, heads=8, kv_heads=4, ff=1024, rope_base=10000.0, rms_eps=1e-5, context=1024)


def rope_table(context, head_dim, base, device):
    # ggml's "normal" RoPE (llama.cpp's LLM_ARCH_LLAMA): adjacent pairs (x[2i], x[2i+1]) rotate by pos * base^(-2i/d),
    # i.e. the pair as a complex number times exp(i * angle).
    inv = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(context, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x, rot):
    # x: (B, H, T, D); rot: (T, D/2) complex64
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(xc * rot).flatten(-2).type_as(x)


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
        if hasattr(F, "rms_norm"):
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
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

    def forward(self, x, rot):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.attn_q(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.attn_k(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.attn_v(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        q, k = apply_rope(q, rot), apply_rope(k, rot)
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
        self.rot = None

    def hidden(self, ids):
        T = ids.shape[1]
        if self.rot is None or self.rot.device != ids.device:
            self.rot = rope_table(self.s["context"], self.s["embd"] // self.s["heads"], self.s["rope_base"], ids.device)
        rot = self.rot[:T]
        x = self.token_embd(ids)
        for block in self.blocks:
            x = block(x, rot)
        return self.output_norm(x)

    def logits_at(self, hidden, flat_positions):
        # Tied output: the logits are the final state against the token embeddings (no output.weight in the GGUF).
        return hidden.reshape(-1, hidden.shape[-1])[flat_positions] @ self.token_embd.weight.t()


def load_data(data_dir):
    meta = json.load(open(os.path.join(data_dir, "meta.json")))
    path = os.path.join(data_dir, "tokens.u16")
    raw = open(path, "rb").read() if os.path.exists(path) else lzma.decompress(open(path + ".xz", "rb").read())
    tokens = np.frombuffer(raw, dtype="<u2")
    path = os.path.join(data_dir, "index.i32")
    raw = open(path, "rb").read() if os.path.exists(path) else lzma.decompress(open(path + ".xz", "rb").read())
    index = np.frombuffer(raw, dtype="<i4").reshape(-1, 6).astype(np.int64)
    # answer.u8 (--extra data): 1 for every token the answer loss predicts, so a row may hold several answers.
    path = os.path.join(data_dir, "answer.u8")
    flags = None
    if os.path.exists(path) or os.path.exists(path + ".xz"):
        raw = open(path, "rb").read() if os.path.exists(path) else lzma.decompress(open(path + ".xz", "rb").read())
        flags = np.frombuffer(raw, dtype=np.uint8)
        assert len(flags) == len(tokens), "answer.u8 and tokens.u16 differ in length"
    return meta, tokens, index, flags


def checkpoint_bytes(state, vocab_ids):
    arrays = {name: t.float().numpy().astype(np.float16) for name, t in state.items()}
    arrays["vocab_ids"] = np.asarray(vocab_ids, dtype=np.int32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_checkpoint(data, out_dir, step, note, generation):
    # Two generations of parts take turns (ckptA.part*, ckptB.part*), and ckpt.json is replaced last: a run killed
    # while writing still leaves the previous checkpoint whole. At most 8 files: 2 x 3 parts, ckpt.json, train.log.
    part = 15 * 1024 * 1024
    prefix = "ckptA" if generation % 2 == 0 else "ckptB"
    parts = []
    for i in range(0, len(data), part):
        name = f"{prefix}.part{i // part}"
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data[i:i + part])
        parts.append(name)
    with open(os.path.join(out_dir, "ckpt.json.tmp"), "w") as f:
        json.dump({"parts": parts, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "step": step,
                   "shape": SHAPE, "note": note}, f)
    os.replace(os.path.join(out_dir, "ckpt.json.tmp"), os.path.join(out_dir, "ckpt.json"))


def load_checkpoint(ckpt_dir):
    info = json.load(open(os.path.join(ckpt_dir, "ckpt.json")))
    data = b"".join(open(os.path.join(ckpt_dir, p), "rb").read() for p in info["parts"])
    assert hashlib.sha256(data).hexdigest() == info["sha256"], "checkpoint checksum mismatch"
    arrays = dict(np.load(io.BytesIO(data)))
    return info, arrays


def import_gguf_py():
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (here, os.path.join(here, "..", "node_modules", "node-llama-cpp", "llama", "llama.cpp", "gguf-py")):
        if os.path.isdir(os.path.join(candidate, "gguf")) and candidate not in sys.path:
            sys.path.insert(0, candidate)
    try:
        import yaml  # noqa: F401
    except ImportError:
        # gguf/__init__ imports its model-card reader, which needs PyYAML; the GPU machine's Python may lack it and
        # nothing can be installed there. Only the reader and the dequantizer are used here.
        sys.modules["yaml"] = types.ModuleType("yaml")
    import gguf
    return gguf


def load_gguf(path):
    """Weights of a GGUF written by scripts/answers-gguf.py, as this script's state-dict names (float32 numpy), and the
    token ids whose embedding rows are in use (answers-gguf.py writes the others as zeros). Its matrices are stored
    unpermuted (RoPE on adjacent pairs, as here) and the output is tied (no output.weight), so they load as they are."""
    gguf = import_gguf_py()
    from gguf.quants import dequantize
    reader = gguf.GGUFReader(path)

    def field(key):
        return reader.fields[key].contents()

    stored = dict(layers=field("llama.block_count"), embd=field("llama.embedding_length"), heads=field("llama.attention.head_count"),
                  kv_heads=field("llama.attention.head_count_kv"), ff=field("llama.feed_forward_length"),
                  rope_base=field("llama.rope.freq_base"), rms_eps=field("llama.attention.layer_norm_rms_epsilon"))
    for key, value in stored.items():
        assert abs(SHAPE[key] - value) <= 1e-6 * abs(value), f"{path}: {key} is {value}, the model here has {SHAPE[key]}"
    weights = {}
    for t in reader.tensors:
        name = t.name
        if name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            name = f"blocks.{layer}.{rest}"
        weights[name] = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(tuple(int(n) for n in reversed(t.shape)))
    assert "output.weight" not in weights, f"{path} has an untied output; this model ties it to token_embd"
    emb = weights.pop("token_embd.weight")
    vocab_ids = np.flatnonzero(np.abs(emb).sum(1) > 0)
    weights["token_embd.weight"] = emb[vocab_ids]
    return weights, vocab_ids


class Batches:
    """Draws rows from the curriculum prefix, sorts a pool of them by length and cuts it into batches of about
    `tokens` padded tokens each (rounded up to a multiple of 16 positions), in shuffled order."""

    def __init__(self, rows, tokens, pool, rng):
        self.rows, self.tokens, self.pool, self.rng = rows, tokens, pool, rng
        self.queue = []

    def next(self, hi):
        if not self.queue:
            picked = self.rows[self.rng.integers(0, hi, size=self.pool)]
            picked = picked[np.argsort(picked[:, 1], kind="stable")]
            batches, start = [], 0
            while start < len(picked):
                # rows are sorted by length: the batch's padded length is its last row's
                n = 1
                while start + n < len(picked) and (n + 1) * int(picked[start + n, 1]) <= self.tokens:
                    n += 1
                batches.append(picked[start:start + n])
                start += n
            self.queue = [batches[i] for i in self.rng.permutation(len(batches))]
        return self.queue.pop()


def loss_positions(rows, T, prompt_weight, flags=None):
    """Flat positions (row * T + t) whose next token carries a loss, their weights, and which are answer tokens.
    Position t predicts token t + 1: prompt tokens after BOS (weight prompt_weight), then answer, citation, EOS (1).
    With flags (answer.u8), the answer tokens are those flagged: a row may hold several questions and answers."""
    lengths, answer_start = rows[:, 1], rows[:, 2]
    counts = lengths - 1
    row_of = np.repeat(np.arange(len(rows)), counts)
    t = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    if flags is None:
        is_answer = t >= np.repeat(answer_start - 1, counts)
    else:
        is_answer = flags[rows[row_of, 0] + t + 1] == 1
    weight = np.where(is_answer, 1.0, prompt_weight).astype(np.float32)
    return row_of * T + t, weight, is_answer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=540, help="wall-clock budget from the start of the script")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=65536, help="padded tokens per batch")
    ap.add_argument("--pool", type=int, default=4096, help="rows sorted by length together")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=0.05, help="the cosine's floor, as a fraction of --lr")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--curriculum", type=float, default=0.6, help="fraction of the budget after which all rows are drawn")
    ap.add_argument("--prompt-weight", type=float, default=0.3, help="loss weight of the prompt's tokens at the start")
    ap.add_argument("--prompt-weight-end", type=float, default=0.1, help="... falling linearly to this at the end")
    ap.add_argument("--eval-every", type=float, default=60)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (a CPU profile)")
    ap.add_argument("--shape", default=None, help="JSON overriding SHAPE's fields (a CPU profile's tiny model)")
    ap.add_argument("--resume", default=None)
    ap.add_argument("--init-gguf", default=None, help="start from a GGUF's weights (scripts/answers-gguf.py's output)")
    ap.add_argument("--profile", action="store_true", help="time the host's and the model's parts of a step")
    args = ap.parse_args()
    if args.shape:
        SHAPE.update(json.loads(args.shape))
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
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        log(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    meta, tokens, index, answer_flags = load_data(args.data)

    resumed = None
    assert not (args.resume and args.init_gguf), "--resume and --init-gguf both name the starting weights"
    if args.resume or args.init_gguf:
        if args.resume:
            info, resumed = load_checkpoint(args.resume)
            vocab_ids = resumed.pop("vocab_ids").astype(np.int64)
            log("resume from step", info["step"], info.get("note"))
        else:
            resumed, vocab_ids = load_gguf(args.init_gguf)
            log(f"initialised from {args.init_gguf} ({len(vocab_ids)} embedding rows in use)")
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
    remap = np.full(meta["vocabSize"], -1, dtype=np.int32)
    remap[vocab_ids] = np.arange(len(vocab_ids))
    compact = remap[tokens]
    assert (compact >= 0).all(), "a token outside the checkpoint's vocabulary"
    # The whole stream on the device (about 4 bytes a token), and one spare position so a gather never runs off it.
    stream = torch.from_numpy(np.concatenate([compact, np.zeros(1, np.int32)]).astype(np.int64)).to(dev)

    assert meta["dropped"] == 0, "examples were dropped: the train/eval boundary in the index is unknown"
    train_rows = index[index[:, 5] == 0]
    n_train = meta["train"]
    train_rows, eval_train_rows = train_rows[:n_train], train_rows[n_train:]
    held_rows = index[index[:, 5] == 1]
    if answer_flags is not None:
        log(f"answer flags: {int(answer_flags.sum())} answer tokens, {meta.get('extras', 0)} extra questions")
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
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if cuda else {}))

    def to_dev(array):
        t = torch.from_numpy(np.ascontiguousarray(array))
        return t.pin_memory().to(dev, non_blocking=True) if cuda else t

    def batch_of(rows, prompt_weight=args.prompt_weight):
        """ids (B, T) gathered on the device; flat loss positions, their targets, weights and answer flags."""
        T = int(rows[:, 1].max())
        T = (T + 15) // 16 * 16
        positions, weight, is_answer = loss_positions(rows, T, prompt_weight, answer_flags)
        starts = to_dev(rows[:, 0])
        lengths = to_dev(rows[:, 1])
        pos = torch.arange(T, device=dev)
        gather = torch.where(pos[None, :] < lengths[:, None], starts[:, None] + pos[None, :], len(compact))
        ids = stream[gather]
        positions = to_dev(positions)
        targets = ids.view(-1)[positions + 1]
        return ids, positions, targets, to_dev(weight), to_dev(is_answer), float(weight.sum())

    @torch.no_grad()
    def evaluate(rows, tag):
        model.eval()
        res = {}
        for kind in range(3):
            kr = rows[rows[:, 3] == kind]
            hits = 0
            for i in range(0, len(kr), 100):
                part = kr[i:i + 100]
                ids, positions, targets, _w, is_answer, _ws = batch_of(part)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                    pred = model.logits_at(model.hidden(ids), positions).argmax(-1)
                wrong = ((pred != targets) & is_answer).float()
                row_of = torch.div(positions, ids.shape[1], rounding_mode="floor")
                per_row = torch.zeros(len(part), device=dev).index_add_(0, row_of, wrong)
                hits += int((per_row == 0).sum())
            res[meta["kinds"][kind]] = round(100 * hits / max(1, len(kr)), 1)
        model.train()
        log(f"eval {tag}: answer exact match (greedy) {res}")
        return res

    writer = {"thread": None, "generation": 0}

    def save(step, note):
        # The copy to the host is quick; packing and writing 40 MB runs beside the training.
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if writer["thread"] is not None:
            writer["thread"].join()
        generation = writer["generation"]
        thread = threading.Thread(target=lambda: write_checkpoint(checkpoint_bytes(state, vocab_ids), args.out, step, note, generation))
        thread.start()
        writer["thread"], writer["generation"] = thread, generation + 1

    batches = Batches(train_rows, args.tokens, args.pool, rng)
    budget = args.seconds - (time.time() - started)
    train_start = time.time()
    warmup = args.warmup if resumed is None else 50
    step, next_eval = 0, args.eval_every
    loss_sum = torch.zeros(2, device=dev)
    logged_rows, seen_tokens, real_tokens, last_log = 0, 0, 0, time.time()
    prof = {"host": 0.0, "model": 0.0}
    while True:
        elapsed = time.time() - train_start
        progress = elapsed / budget
        if progress >= 1 or (args.max_steps and step >= args.max_steps):
            break
        # Curriculum: the file runs from 2-4 chunks to 4-8; draw from a prefix that grows to the whole set.
        grown = min(1.0, 0.15 + 0.85 * progress / args.curriculum)
        hi = len(train_rows) if resumed is not None else max(args.pool, int(len(train_rows) * grown))
        decay_progress = min(1.0, max(0.0, progress))
        lr = args.lr * min(1.0, (step + 1) / warmup) * (args.min_lr + (1 - args.min_lr) * 0.5 * (1 + math.cos(math.pi * decay_progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.time()
        rows = batches.next(hi)
        # The prompt's tokens teach copying early; later the answer's share of the loss grows.
        prompt_weight = args.prompt_weight + (args.prompt_weight_end - args.prompt_weight) * decay_progress
        ids, positions, targets, weight, is_answer, weight_sum = batch_of(rows, prompt_weight)
        t1 = time.time()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model.logits_at(model.hidden(ids), positions)
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
        loss = (ce * weight).sum() / weight_sum
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            loss_sum += torch.stack([loss.detach() * len(rows), (ce.detach() * is_answer).sum() / is_answer.sum() * len(rows)])
        if args.profile and cuda:
            torch.cuda.synchronize()
        prof["host"] += t1 - t0
        prof["model"] += time.time() - t1
        step += 1
        seen_tokens += ids.numel()
        real_tokens += int(rows[:, 1].sum())
        logged_rows += len(rows)
        if step % args.log_every == 0:
            l, a = (loss_sum / logged_rows).tolist()
            now = time.time()
            log(f"step {step} t={now - started:.0f}s lr={lr:.2e} loss={l:.3f} answer_ce={a:.3f} rows/batch={len(rows)} "
                f"T={ids.shape[1]} pad={1 - real_tokens / max(1, seen_tokens):.2f} tok/s={real_tokens / (now - last_log):.0f} "
                f"steps/s={args.log_every / (now - last_log):.2f} prefix={hi} host={prof['host']:.1f}s model={prof['model']:.1f}s")
            loss_sum.zero_()
            logged_rows, seen_tokens, real_tokens, last_log = 0, 0, 0, now
        if time.time() - train_start >= next_eval:
            next_eval += args.eval_every
            evaluate(held_rows, f"held-out step {step} t={time.time() - started:.0f}s")
            save(step, f"t={time.time() - started:.0f}s")
    evaluate(held_rows, f"held-out final step {step}")
    evaluate(eval_train_rows, f"train-split final step {step}")
    save(step, f"final t={time.time() - started:.0f}s")
    writer["thread"].join()
    # What a device call returns is at most 64 MiB: two generations of ~40 MB do not both fit, and the transfer may cut
    # the final one (2026-12-04). Once ckpt.json names the final generation, the other one goes.
    final_prefix = json.load(open(os.path.join(args.out, "ckpt.json")))["parts"][0].split(".")[0]
    for name in os.listdir(args.out):
        if name.startswith("ckpt") and ".part" in name and not name.startswith(final_prefix + "."):
            os.remove(os.path.join(args.out, name))
    log(f"done: {step} steps in {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
