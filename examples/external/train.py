"""A trainer of your own, run as a study's trials: a GPT on the bytes of text files, in PyTorch.

It imports nothing of scaling_orchestrator: it honours the trainer contract only (README,
"Bring your own trainer"). As a command (examples/external.yaml):

    python train.py --trial $SCALING_TRIAL --metrics $SCALING_METRICS \
        --checkpoint-dir $SCALING_CHECKPOINT_DIR

and as a function (examples/external-python.yaml: `function: "external.train:train"`), train(ctx).

The trial JSON gives the shape, the tokens, the recipe (lr, warmup, cosine/wsd/constant decay,
weight decay, clipping, seed), the evaluation points and the corpus's text files; the bytes of
the files are the tokens (vocab 256), the last val_fraction of the files the validation text.
Every log_every_steps it appends a curve line {"tokens", "step", "train_loss", "lr"} to the
metrics file. At each evaluation it saves model, optimizer and the evaluations reported so far
(atomically: a temporary file, then rename), THEN appends {"tokens", "val_loss", ...}; started
with a save in the checkpoint directory it repeats the saved lines (the kept save can be
newer than the last line the store read; rows are upserted) and resumes from it, with a save in
$SCALING_START_FROM (a branch) it continues its trunk. Batches are drawn from a generator seeded
by (seed, step), so a resumed run sees the batches an uninterrupted one would.
"""

import argparse
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d: int, heads: int, d_ff: int):
        super().__init__()
        self.ln1, self.ln2, self.heads = nn.LayerNorm(d), nn.LayerNorm(d), heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(self.ln1(x)).split(d, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """GPT-2 layout, tied embeddings: the parameter count the planner's gpt2 block formula gives."""

    def __init__(self, s: dict):
        super().__init__()
        self.tok = nn.Embedding(s["vocab_size"], s["d_model"])
        self.pos = nn.Embedding(s["seq_len"], s["d_model"])
        self.blocks = nn.ModuleList(Block(s["d_model"], s["n_head"], s["d_ff"]) for _ in range(s["n_layer"]))
        self.ln = nn.LayerNorm(s["d_model"])
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        x = self.tok(idx) + self.pos(torch.arange(idx.size(1)))
        for block in self.blocks:
            x = block(x)
        logits = self.ln(x) @ self.tok.weight.T
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def load_bytes(data: dict):
    """(train, val) byte tensors: the corpus files in order, the last val_fraction of them held out."""
    files = data["files"]
    if not files:
        raise SystemExit(f"corpus {data['corpus']!r}: no text files listed in the trial JSON")
    cut = len(files) - max(1, round(len(files) * data["val_fraction"]))

    def read(some):
        return torch.frombuffer(bytearray(b"\n".join(open(f, "rb").read() for f in some)), dtype=torch.uint8)

    return read(files[:cut]).long(), read(files[cut:]).long()


def lr_at(step: int, steps: int, r: dict) -> float:
    warmup = max(1, round(r["warmup_fraction"] * steps))
    if step < warmup:
        return r["lr"] * (step + 1) / warmup
    low = r["lr"] * r["min_lr_ratio"]
    if r["schedule"] == "constant":
        return r["lr"]
    if r["schedule"] == "wsd":
        start = steps - round(r["decay_fraction"] * steps)
        return r["lr"] if step < start else r["lr"] + (low - r["lr"]) * (step - start + 1) / (steps - start)
    return low + 0.5 * (r["lr"] - low) * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def run(trial: dict, checkpoint_dir: str, report, start_from: str = "", resume_dir: str = "") -> None:
    s, r, seq = trial["shape"], trial["recipe"], trial["shape"]["seq_len"]
    torch.manual_seed(r["seed"])
    torch.set_num_threads(max(1, r["threads"]))
    train, val = load_bytes(trial["data"])
    model = GPT(s)
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], betas=(r["beta1"], r["beta2"]),
                            weight_decay=r["weight_decay"])
    rows, steps = trial["batch_tokens"] // seq, trial["steps"]
    saved = os.path.join(checkpoint_dir, "state.pt")
    resume = saved if os.path.exists(saved) else os.path.join(resume_dir, "state.pt") if resume_dir else ""
    source = resume or (os.path.join(start_from, "state.pt") if start_from else "")
    step, reported = 0, []
    if source:
        state = torch.load(source)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        if resume:  # not a branch's trunk: repeat what this run reported
            reported = state["reported"]
            for line in reported:
                report(**line)
    evals, losses = set(trial["eval_at_tokens"]), []
    while step < steps:
        g = torch.Generator().manual_seed(r["seed"] * 1_000_003 + step)
        at = torch.randint(len(train) - seq - 1, (rows,), generator=g)
        x = torch.stack([train[i:i + seq] for i in at])
        y = torch.stack([train[i + 1:i + seq + 1] for i in at])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, r)
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if r["grad_clip"]:
            nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % trial["log_every_steps"] == 0:  # a point of the training curve (no val_loss)
            report(tokens=step * trial["batch_tokens"], step=step, train_loss=losses[-1],
                   lr=opt.param_groups[0]["lr"])
        if step * trial["batch_tokens"] in evals or step == steps:
            val_loss = evaluate(model, val, seq, r["eval_tokens"])
            line = dict(tokens=step * trial["batch_tokens"], step=step, val_loss=val_loss,
                        train_loss=sum(losses) / len(losses), lr=opt.param_groups[0]["lr"],
                        val_bpb=val_loss / math.log(2), params=sum(p.numel() for p in model.parameters()))
            reported.append(line)
            tmp = saved + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "reported": reported}, tmp)
            os.replace(tmp, saved)  # save, then report
            report(**line)
            losses = []


@torch.no_grad()
def evaluate(model, val, seq: int, eval_tokens: int) -> float:
    n = min(eval_tokens, len(val) - 1) // seq
    x, y = val[: n * seq].view(n, seq), val[1: n * seq + 1].view(n, seq)
    return sum(model(x[i:i + 16], y[i:i + 16]).item() * len(x[i:i + 16]) for i in range(0, n, 16)) / n


def train(ctx) -> None:
    """The function backend's entry: the same loop, reporting through ctx."""
    run(ctx.trial, ctx.checkpoint_dir, ctx.report, start_from=ctx.start_from or "",
        resume_dir=ctx.resume_dir or "")


def main() -> None:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trial", default=env("SCALING_TRIAL"))
    p.add_argument("--metrics", default=env("SCALING_METRICS"))
    p.add_argument("--checkpoint-dir", default=env("SCALING_CHECKPOINT_DIR"))
    p.add_argument("--start-from", default=env("SCALING_START_FROM", ""))
    a = p.parse_args()
    os.makedirs(a.checkpoint_dir, exist_ok=True)

    def report(**metrics):
        with open(a.metrics, "a") as f:
            f.write(json.dumps(metrics) + "\n")

    run(json.load(open(a.trial)), a.checkpoint_dir, report, start_from=a.start_from)


if __name__ == "__main__":
    main()
