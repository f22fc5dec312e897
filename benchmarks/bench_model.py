"""Training throughput of ``labkit.model.Transformer`` (hooks idle) against a minimal plain GPT.

Why: hooks, configurability and counting must cost nothing in the sweeps of tiny trainings that are
the lab's daily work. The plain GPT below is the nanoGPT shape with the same configuration (pre-LN,
learned absolute positions, GELU 4x MLP, LayerNorm without bias, tied embeddings, SDPA). Both models
run full AdamW steps (forward + backward + step, fp32) in the same process, alternating A B B A ...
so that drift of the machine hits both alike. We report the median tokens/s of each, the median of
the paired ratios (each pair timed back to back) with its interquartile range, and the ratio of the
best runs (the least disturbed by other processes on a shared machine).

    python benchmarks/bench_model.py [--repeats 21] [--seconds 0.3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed
from labkit.model import Transformer, count_params, tiny
from labkit.runtime import seed_everything


class PlainBlock(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class PlainGPT(nn.Module):
    def __init__(self, vocab: int, max_len: int, d: int, n_layer: int, n_head: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.h = nn.ModuleList(PlainBlock(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


def plain_weights(labkit_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """labkit parameter names -> PlainGPT names, so both models start from identical weights."""
    prefixes = {"embed.": "wte.", "pos_embed.": "wpe.", "ln_final.": "ln_f.", "blocks.": "h."}
    parts = {".ln1.": ".ln_1.", ".ln2.": ".ln_2.", ".attn.qkv.": ".c_attn.", ".attn.out.": ".c_proj.",
             ".mlp.fc.": ".c_fc.", ".mlp.proj.": ".mlp_proj."}
    state = {}
    for name, tensor in labkit_state.items():
        prefix = next(p for p in prefixes if name.startswith(p))
        name = prefixes[prefix] + name[len(prefix):]
        for old, new in parts.items():
            name = name.replace(old, new)
        state[name] = tensor.clone()
    return state


def make_step(model: nn.Module, tokens: torch.Tensor, vocab: int):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)

    def step() -> None:
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - start


def compare(name: str, vocab: int, seq: int, batch: int, d: int, n_layer: int, n_head: int,
            repeats: int, seconds: float) -> dict:
    seed_everything(0)
    cfg = tiny(vocab, seq, d_model=d, n_layer=n_layer, n_head=n_head)
    lab, plain = Transformer(cfg, seed=0), PlainGPT(vocab, seq, d, n_layer, n_head)
    plain.load_state_dict(plain_weights(lab.state_dict()))  # same numbers in, so same work (exp, erf)
    tokens = torch.randint(0, vocab, (batch, seq + 1))
    with torch.no_grad():  # the two really compute the same function
        torch.testing.assert_close(lab(tokens[:, :-1]), plain(tokens[:, :-1]))
    steps = {"labkit": make_step(lab, tokens, vocab), "plain": make_step(plain, tokens, vocab)}
    for step in steps.values():  # warm up, then size a run to about `seconds`
        timed(step, 3)
    n = max(2, round(seconds / (timed(steps["plain"], 3) / 3)))
    rates: dict[str, list[float]] = {"labkit": [], "plain": []}
    for r in range(repeats):
        for key in ("labkit", "plain") if r % 2 == 0 else ("plain", "labkit"):
            rates[key].append(n * batch * seq / timed(steps[key], n))
    ratios = [a / b for a, b in zip(rates["labkit"], rates["plain"], strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {"config": name, "params": count_params(lab).total, "batch": f"{batch}x{seq}",
            "labkit": statistics.median(rates["labkit"]), "plain": statistics.median(rates["plain"]),
            "ratio": statistics.median(ratios), "iqr": f"{q1:.3f}-{q3:.3f}",
            "best": max(rates["labkit"]) / max(rates["plain"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seconds", type=float, default=0.3, help="length of one timed run")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU, AdamW steps")
    shape = {"vocab": 256, "seq": 20, "batch": 128, "repeats": args.repeats, "seconds": args.seconds}
    rows = [
        compare("2L d64 h2", d=64, n_layer=2, n_head=2, **shape),  # ~116k parameters
        compare("4L d128 h4", d=128, n_layer=4, n_head=4, **shape),  # ~0.8M parameters
    ]
    print(f"{'config':<12}{'params':>9}{'batch':>8}{'labkit tok/s':>14}{'plain tok/s':>13}{'ratio':>7}"
          f"{'ratio IQR':>13}{'best/best':>11}")
    for row in rows:
        print(f"{row['config']:<12}{row['params']:>9,}{row['batch']:>8}{row['labkit']:>14,.0f}"
              f"{row['plain']:>13,.0f}{row['ratio']:>7.3f}{row['iqr']:>13}{row['best']:>11.3f}")


if __name__ == "__main__":
    main()
