"""One configurable decoder-only transformer, with TransformerLens-compatible hooks.

Why one model: every chapter compares *knobs* (positions, attention kind, MLP kind, MoE, norm) of the
same network, so they live in one ``ModelConfig`` and one ``Transformer``; a chapter never forks the
model. The code reads top to bottom like nanoGPT (karpathy2022nanogpt): config, hooks, attention, MLP,
block, model, counts.

Attention kinds (Part 1 (allenzhu2023part1) compares these):

- ``softmax``: standard causal q·k attention (GPT). ``pos`` picks the positions: learned
  ``absolute`` (GPT), ``rotary`` (GPT_rot, RoPE, su2021roformer), ``relative`` (GPT_rel; here
  T5-style (raffel2020t5): a learned scalar bias per head and bucketed distance, added to the scores),
  ``alibi`` (-m_h·(i-j), press2021alibi) or ``none``.
- ``position`` (GPT_pos): the attention weights are a learned function of the relative position only,
  no q·k. Our reading: each head h has one learned logit ``pos_logits[h, i - j]`` per causal distance
  ``0 <= i - j < max_len`` (no buckets), softmax over ``j <= i``; values still come from a learned V
  projection. Logits start at 0, i.e. as a uniform causal average.
- ``uniform`` (GPT_uni): fixed weights, nothing trainable but V and the output projection. The paper
  says head h attends uniformly to "the previous 2^h - 1 tokens". Our reading: heads are numbered
  h = 1..n_head and the window *includes the token itself*: position i averages positions
  ``max(0, i - 2^h + 2) .. i`` (2^h - 1 tokens, fewer at the start). So head 1 sees only itself, head 2
  the token and 2 before it, head 3 seven tokens. Including self means no window is ever empty.

Both ``position`` and ``uniform`` carry position in the attention itself; with them ``pos`` may only be
``absolute`` (added to the input) or ``none``, since rotary/relative/alibi act on q·k scores.

Hooks follow TransformerLens (nanda2022transformerlens), so that interpretability code written for it
runs here: every ``HookPoint`` is an identity module named like TransformerLens's, a hook function is
called as ``fn(tensor, hook=hook_point)`` and returns a replacement tensor or None (keep it);
``run_with_hooks``, ``run_with_cache`` (an ``ActivationCache``, also indexed by short names such as
``cache["resid_post", 0]``), ``add_hook``, ``reset_hooks`` and ``hooks`` take the same arguments. Every
path (``forward``, ``features``, ``loss``) runs through the same hook points. Idle hooks cost one module
call and nothing else: the attention pattern is only materialised when a hook listens to it, otherwise
``F.scaled_dot_product_attention`` runs. ``model.hook_names()`` lists what a model has::

    hook_embed                      (batch, pos, d_model)
    hook_pos_embed                  (1, pos, d_model)   pos="absolute" only; broadcast over the batch
    blocks.{L}.hook_resid_pre       (batch, pos, d_model)
    blocks.{L}.attn.hook_q, hook_k  (batch, pos, head, d_head)   attention="softmax" only; before RoPE
    blocks.{L}.attn.hook_v          (batch, pos, head, d_head)
    blocks.{L}.attn.hook_pattern    (batch, head, query_pos, key_pos)   rows sum to 1
    blocks.{L}.attn.hook_z          (batch, pos, head, d_head)   pattern @ v, before the output matrix
    blocks.{L}.hook_attn_out        (batch, pos, d_model)
    blocks.{L}.hook_resid_mid       (batch, pos, d_model)   not with mlp="none"
    blocks.{L}.mlp.hook_pre         (batch, pos, d_mlp)     before the activation; gated: the gate
    blocks.{L}.mlp.hook_pre_linear  (batch, pos, d_mlp)     gated only: the linear ("up") half
    blocks.{L}.mlp.hook_post        (batch, pos, d_mlp)     after the activation (times up if gated)
    blocks.{L}.hook_mlp_out         (batch, pos, d_model)   not with mlp="none"
    blocks.{L}.hook_resid_post      (batch, pos, d_model)
    ln_final.hook_normalized        (batch, pos, d_model)   what the unembedding reads

With MoE each expert has its own ``blocks.{L}.mlp.experts.{e}.hook_pre`` / ``hook_post`` over the
(tokens, d_mlp) routed to it; there is no ``blocks.{L}.mlp.hook_post``.

Mixture of experts (``moe_experts > 0``): token-choice routing, softmax router over all experts, each
token goes to its ``moe_top_k`` most probable experts, weighted by those (not renormalised)
probabilities, so top-1 is the Switch Transformer's routing. After each forward ``model.aux_loss``
holds the Switch load-balancing loss ``E · Σ_e f_e · P_e`` (f_e: share of routed token slots, P_e: mean
router probability), summed over layers; it is a zero tensor for dense models. The trainer adds
``cfg.moe_aux_weight * model.aux_loss`` to the loss.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from labkit.loss import linear_cross_entropy

POS = ("absolute", "rotary", "relative", "alibi", "none")
ATTENTIONS = ("softmax", "position", "uniform")
MLPS = ("gelu", "gated", "none")
NORMS = ("layernorm", "rmsnorm")


def _invalid(name: str, value, allowed: str) -> ValueError:
    return ValueError(f"{name}={value!r} is not valid; allowed: {allowed}")


@dataclass(frozen=True)
class ModelConfig:
    """Every knob of the model. Invalid combinations raise ``ValueError`` naming field, value, allowed."""

    vocab_size: int
    max_len: int
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 32
    pos: str = "absolute"  # one of POS
    attention: str = "softmax"  # one of ATTENTIONS
    mlp: str = "gelu"  # one of MLPS
    mlp_ratio: float = 4.0  # hidden width / d_model; "gated" uses 2/3 of it (LLaMA) to keep the size
    moe_experts: int = 0  # 0 = dense MLP
    moe_top_k: int = 1
    moe_aux_weight: float = 0.01  # read by the trainer: loss += moe_aux_weight * model.aux_loss
    norm: str = "layernorm"  # one of NORMS
    tie_embeddings: bool = True
    bias: bool = False  # biases in linear layers and LayerNorm
    rope_base: float = 10000.0
    rel_buckets: int = 32  # T5 defaults: half exact distances, half log-spaced up to rel_max_distance
    rel_max_distance: int = 128

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "n_layer", "n_head", "d_model", "rel_buckets", "rel_max_distance"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _invalid(name, value, "a positive integer")
        for name, allowed in (("pos", POS), ("attention", ATTENTIONS), ("mlp", MLPS), ("norm", NORMS)):
            if getattr(self, name) not in allowed:
                raise _invalid(name, getattr(self, name), ", ".join(map(repr, allowed)))
        if self.d_model % self.n_head:
            raise _invalid("d_model", self.d_model, f"a multiple of n_head={self.n_head}")
        if self.pos == "rotary" and self.d_head % 2:
            raise _invalid("d_model", self.d_model, f"an even d_model / n_head for pos='rotary', not {self.d_head}")
        if self.attention != "softmax" and self.pos not in ("absolute", "none"):
            raise _invalid("pos", self.pos, f"'absolute', 'none' with attention={self.attention!r} (no q·k scores)")
        if self.pos == "relative" and self.rel_max_distance <= self.rel_buckets // 2:
            raise _invalid("rel_max_distance", self.rel_max_distance, f"> rel_buckets // 2 = {self.rel_buckets // 2}")
        if not self.mlp_ratio > 0:
            raise _invalid("mlp_ratio", self.mlp_ratio, "a positive number")
        if not isinstance(self.moe_experts, int) or self.moe_experts < 0:
            raise _invalid("moe_experts", self.moe_experts, "0 (dense) or a positive integer")
        if self.moe_experts and self.mlp == "none":
            raise _invalid("mlp", self.mlp, "'gelu', 'gated' when moe_experts > 0")
        if self.moe_experts and not 1 <= self.moe_top_k <= self.moe_experts:
            raise _invalid("moe_top_k", self.moe_top_k, f"1..moe_experts={self.moe_experts}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def d_mlp(self) -> int:
        """Hidden width of one MLP; gated MLPs have 3 matrices instead of 2, hence the 2/3 (LLaMA)."""
        return max(1, round(self.mlp_ratio * self.d_model * (2 / 3 if self.mlp == "gated" else 1)))


def gpt2(l: int, h: int, vocab_size: int, max_len: int, **overrides) -> ModelConfig:  # noqa: E741 (paper's ℓ)
    """GPT2-ℓ-h of Part 3.3 (allenzhu2024part33): ℓ layers, h heads, width 64h, rotary, GELU MLP, LayerNorm,
    tied, no bias."""
    base = {"n_layer": l, "n_head": h, "d_model": 64 * h, "pos": "rotary"}
    return ModelConfig(vocab_size=vocab_size, max_len=max_len, **{**base, **overrides})


def llama(l: int, h: int, vocab_size: int, max_len: int, **overrides) -> ModelConfig:  # noqa: E741
    """LLaMA-ℓ-h at GPT2-ℓ-h sizes: rotary, gated (SwiGLU) MLP, RMSNorm. Tied here (LLaMA unties) so
    that comparisons with ``gpt2`` change only the MLP and the norm; pass tie_embeddings=False."""
    return gpt2(l, h, vocab_size, max_len, **{"mlp": "gated", "norm": "rmsnorm", **overrides})


def tiny(vocab_size: int, max_len: int = 20, *, d_model: int = 32, n_layer: int = 2, n_head: int = 2,
         **overrides) -> ModelConfig:
    """The lab's CPU model: GPT, absolute positions, GELU 4x MLP, LayerNorm, tied, no bias; small enough
    that a chapter's sweep of trainings runs on a laptop."""
    return ModelConfig(vocab_size=vocab_size, max_len=max_len, d_model=d_model, n_layer=n_layer,
                       n_head=n_head, **overrides)


HookFn = Callable[..., "torch.Tensor | None"]  # fn(tensor, hook=HookPoint) -> replacement or None
NameOrFilter = str | Callable[[str], bool]  # a full hook name, or a predicate over full names
NamesFilter = None | str | Sequence[str] | Callable[[str], bool]


class HookPoint(nn.Module):
    """Identity with a name; hooks are PyTorch forward hooks on it, so idle it is a bare module call."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""  # set by Transformer to the module path, e.g. "blocks.0.hook_resid_post"

    @property
    def active(self) -> bool:
        return bool(self._forward_hooks)

    def layer(self) -> int:
        """The block index in ``blocks.{L}.…`` (TransformerLens's ``HookPoint.layer``), for hooks that
        serve several layers."""
        parts = self.name.split(".")
        if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
            raise ValueError(f"hook {self.name!r} belongs to no layer; only blocks.{{L}}.… hooks have one")
        return int(parts[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


_ATTN_ACTS = ("q", "k", "v", "z", "rot_q", "rot_k", "result", "pattern", "attn_scores")
_MLP_ACTS = ("pre", "pre_linear", "mid", "post")
_ACT_ALIASES = {"attn": "pattern", "attn_logits": "attn_scores", "key": "k", "query": "q", "value": "v",
                "mlp_pre": "pre", "mlp_mid": "mid", "mlp_post": "post"}
_LAYER_TYPE_ALIASES = {"a": "attn", "m": "mlp", "b": "", "block": "", "blocks": "", "attention": "attn"}


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """Full hook name from TransformerLens's shorthand (its ``utils.get_act_name`` rules), e.g.
    ``("resid_post", 0)`` -> ``blocks.0.hook_resid_post``, ``("pattern", 1)`` ->
    ``blocks.1.attn.hook_pattern``, ``"k6"`` -> ``blocks.6.attn.hook_k``, ``"embed"`` -> ``hook_embed``,
    ``"normalized"`` -> ``ln_final.hook_normalized``; a full name comes back unchanged."""
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    match = re.match(r"([a-z]+)(\d+)([a-z]?.*)", name)
    if match is not None:
        name, layer, layer_type = match.group(1), int(match.group(2)), match.group(3)
    name = _ACT_ALIASES.get(name, name)
    if name in _ATTN_ACTS:
        layer_type = "attn"
    elif name in _MLP_ACTS:
        layer_type = "mlp"
    elif layer_type in _LAYER_TYPE_ALIASES:
        layer_type = _LAYER_TYPE_ALIASES[layer_type]
    full = (f"blocks.{layer}." if layer is not None else "") + (f"{layer_type}." if layer_type else "")
    full += f"hook_{name}"
    if name in ("normalized", "scale") and layer is None:
        full = f"ln_final.{full}"
    return full


class ActivationCache(Mapping[str, torch.Tensor]):
    """The activations of one ``run_with_cache``, keyed by full hook name in forward order, and also
    readable by TransformerLens's shorthand: ``cache["resid_post", 0]``, ``cache["pattern", -1]``
    (negative layers count from the end), ``cache["embed"]`` (see ``get_act_name``). The interpretability
    helpers of TransformerLens's class (``decompose_resid``, ...) are not provided."""

    def __init__(self, cache_dict: dict[str, torch.Tensor], n_layer: int) -> None:
        self.cache_dict, self.n_layer = cache_dict, n_layer

    def __getitem__(self, key: str | tuple) -> torch.Tensor:
        if isinstance(key, str) and key in self.cache_dict:
            return self.cache_dict[key]
        if isinstance(key, tuple) and key and isinstance(key[0], str):
            if len(key) > 1 and key[1] is not None and key[1] < 0:
                key = (key[0], self.n_layer + key[1], *key[2:])
            name = get_act_name(*key)
        elif isinstance(key, str):
            name = get_act_name(key)
        else:
            raise KeyError(key)
        if name not in self.cache_dict:
            raise KeyError(f"{name!r} (from {key!r}) is not in the cache; cached: {', '.join(self.cache_dict)}")
        return self.cache_dict[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def __len__(self) -> int:
        return len(self.cache_dict)

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.cache_dict)}"

    def to(self, device: str | torch.device) -> ActivationCache:
        """Move every activation to ``device``, in place (as TransformerLens does); returns the cache."""
        self.cache_dict = {name: t.to(device) for name, t in self.cache_dict.items()}
        return self


def _norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "layernorm":
        return nn.LayerNorm(cfg.d_model, bias=cfg.bias)
    return nn.RMSNorm(cfg.d_model, eps=1e-6)


def _alibi_slopes(n: int) -> list[float]:
    """m_h = 2^(-8h/n) for n a power of two; otherwise the ALiBi paper's interleaving (Press et al.)."""
    if n & (n - 1) == 0:
        return [2 ** (-8 * h / n) for h in range(1, n + 1)]
    m = 2 ** math.floor(math.log2(n))
    return _alibi_slopes(m) + _alibi_slopes(2 * m)[0::2][: n - m]


def _t5_bucket(dist: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """T5's causal bucketing of distances i - j >= 0: exact below buckets/2, log-spaced up to max_distance."""
    exact = buckets // 2
    log_ratio = torch.log(dist.clamp(min=exact).float() / exact) / math.log(max_distance / exact)
    large = (exact + log_ratio * (buckets - exact)).long().clamp(max=buckets - 1)
    return torch.where(dist < exact, dist, large)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.kind, self.pos, self.n_head = cfg.attention, cfg.pos, cfg.n_head
        d, H = cfg.d_model, cfg.n_head
        if self.kind == "softmax":
            self.qkv = nn.Linear(d, 3 * d, bias=cfg.bias)
        else:
            self.v = nn.Linear(d, d, bias=cfg.bias)
        self.out = nn.Linear(d, d, bias=cfg.bias)
        if self.kind == "position":
            self.pos_logits = nn.Parameter(torch.zeros(H, cfg.max_len))  # [h, i - j]
        if self.kind == "uniform":  # window of head h (h = 1..H) is 2^h - 1 tokens, self included
            window = torch.tensor([min(2**h - 1, cfg.max_len) for h in range(1, H + 1)])
            self.register_buffer("window", window, persistent=False)
        if self.pos == "relative":
            self.rel_bias = nn.Embedding(cfg.rel_buckets, H)
            self.rel = (cfg.rel_buckets, cfg.rel_max_distance)
        if self.pos == "alibi":
            self.register_buffer("slopes", torch.tensor(_alibi_slopes(H)), persistent=False)
        if self.pos == "rotary":
            inv_freq = cfg.rope_base ** (-torch.arange(0, cfg.d_head, 2, dtype=torch.float64) / cfg.d_head)
            angles = torch.outer(torch.arange(cfg.max_len, dtype=torch.float64), inv_freq)  # (max_len, d_head/2)
            self.register_buffer("cos", angles.cos().float(), persistent=False)
            self.register_buffer("sin", angles.sin().float(), persistent=False)
        # in forward order (hook_names, caches); q, k, v, z in TransformerLens's (batch, pos, head, d_head)
        self.hook_q, self.hook_k = (HookPoint(), HookPoint()) if self.kind == "softmax" else (None, None)
        self.hook_v, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()

    def _heads(self, t: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        """(B, T, C) -> (B, H, T, D) for the attention kernels, through ``hook`` in TransformerLens's
        (batch, pos, head, d_head) layout."""
        B, T, C = t.shape
        return hook(t.view(B, T, self.n_head, C // self.n_head)).transpose(1, 2)

    def _rotate(self, x: torch.Tensor) -> torch.Tensor:
        """RoPE on (B, H, T, D), rotating the pairs (x_k, x_{k + D/2}) by angle t·θ_k (GPT-NeoX layout)."""
        T = x.shape[-2]
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)

    def _logit_bias(self, T: int, device: torch.device) -> torch.Tensor | None:
        """Additive (H, T, T) logits from positions alone, -inf above the diagonal; None for plain causal."""
        if self.kind == "softmax" and self.pos not in ("relative", "alibi"):
            return None
        idx = torch.arange(T, device=device)
        dist = idx[:, None] - idx[None, :]  # i - j
        future = dist < 0
        dist = dist.clamp(min=0)
        if self.kind == "position":
            bias = self.pos_logits[:, dist]
        elif self.kind == "uniform":
            outside = dist >= self.window[:, None, None]
            bias = torch.zeros(self.n_head, T, T, device=device).masked_fill(outside, -math.inf)
        elif self.pos == "relative":
            bias = self.rel_bias(_t5_bucket(dist, *self.rel)).permute(2, 0, 1)
        else:  # alibi
            bias = -self.slopes[:, None, None] * dist
        return bias.masked_fill(future, -math.inf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H = self.n_head
        bias = self._logit_bias(T, x.device)
        if self.kind == "softmax":
            # split, not view+permute: backward then concatenates straight into a contiguous gradient
            q, k, v = map(self._heads, self.qkv(x).split(C, dim=-1), (self.hook_q, self.hook_k, self.hook_v))
            if self.pos == "rotary":
                q, k = self._rotate(q), self._rotate(k)
            if not self.hook_pattern.active:  # fast path: the pattern is never materialised
                mask = None if bias is None else bias.to(q.dtype)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=bias is None)
            else:
                scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)
                if bias is None:
                    bias = torch.full((T, T), -math.inf, device=x.device).triu(1)
                y = self.hook_pattern((scores + bias).softmax(dim=-1)) @ v
        else:  # position / uniform: the pattern does not depend on the tokens
            v = self._heads(self.v(x), self.hook_v)
            pattern = bias.softmax(dim=-1).to(v.dtype)  # uniform: softmax of 0 / -inf = 1 / window
            if self.hook_pattern.active:
                pattern = self.hook_pattern(pattern.expand(B, H, T, T))
            y = pattern @ v
        return self.out(self.hook_z(y.transpose(1, 2)).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gated = cfg.mlp == "gated"
        self.fc = nn.Linear(cfg.d_model, cfg.d_mlp * (2 if self.gated else 1), bias=cfg.bias)  # gated: [gate, up]
        self.proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)
        self.hook_pre = HookPoint()  # (..., d_mlp) before the activation (gated: the gate)
        self.hook_pre_linear = HookPoint() if self.gated else None  # gated: the linear half, TransformerLens's name
        self.hook_post = HookPoint()  # (..., d_mlp) after it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.fc(x).chunk(2, dim=-1)
            return self.proj(self.hook_post(F.silu(self.hook_pre(gate)) * self.hook_pre_linear(up)))
        return self.proj(self.hook_post(F.gelu(self.hook_pre(self.fc(x)))))


class MoE(nn.Module):
    """Token-choice top-k mixture of MLP experts; ``aux_loss`` is the Switch load-balancing loss."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.top_k = cfg.moe_top_k
        self.router = nn.Linear(cfg.d_model, cfg.moe_experts, bias=False)
        self.experts = nn.ModuleList(MLP(cfg) for _ in range(cfg.moe_experts))
        self.aux_loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        probs = self.router(flat).float().softmax(dim=-1)  # (N, E)
        gate, expert = probs.topk(self.top_k, dim=-1)  # (N, k)
        expert, order = expert.flatten().sort(stable=True)
        counts = torch.bincount(expert, minlength=len(self.experts))
        token, gate = order // self.top_k, gate.flatten()[order]
        out = torch.zeros_like(flat)
        for e, (tok, g) in enumerate(zip(token.split(counts.tolist()), gate.split(counts.tolist()), strict=True)):
            if len(tok):
                out.index_add_(0, tok, (self.experts[e](flat[tok]) * g[:, None]).to(out.dtype))
        self.aux_loss = len(self.experts) * (counts / expert.numel() * probs.mean(dim=0)).sum()
        return out.view_as(x)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()  # registration order = forward order (hook_names, caches)
        self.ln1, self.attn, self.hook_attn_out = _norm(cfg), Attention(cfg), HookPoint()
        self.hook_resid_mid = HookPoint() if cfg.mlp != "none" else None  # as TransformerLens: none if attn-only
        self.ln2 = _norm(cfg) if cfg.mlp != "none" else None
        self.mlp = None if cfg.mlp == "none" else MoE(cfg) if cfg.moe_experts else MLP(cfg)
        self.hook_mlp_out = HookPoint() if cfg.mlp != "none" else None
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = x + self.hook_attn_out(self.attn(self.ln1(x)))
        if self.mlp is not None:
            x = self.hook_resid_mid(x)
            x = x + self.hook_mlp_out(self.mlp(self.ln2(x)))
        return self.hook_resid_post(x)


class Transformer(nn.Module):
    """Decoder-only transformer: ``Transformer(cfg)(tokens)`` maps (batch, seq) ids to (batch, seq, vocab)
    logits. Pre-norm blocks; ``seed`` draws the initial weights from its own generator (on the CPU, so
    the same seed gives the same weights on every device) instead of the global one."""

    def __init__(self, cfg: ModelConfig, seed: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        absolute = cfg.pos == "absolute"
        self.embed, self.hook_embed = nn.Embedding(cfg.vocab_size, cfg.d_model), HookPoint()
        self.pos_embed = nn.Embedding(cfg.max_len, cfg.d_model) if absolute else None
        self.hook_pos_embed = HookPoint() if absolute else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_final = _norm(cfg)
        self.ln_final.hook_normalized = HookPoint()  # a child of the norm, hence TransformerLens's name
        self.unembed = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.hook_dict = {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}
        for name, hook in self.hook_dict.items():
            hook.name = name
        self._hook_handles: dict[int, RemovableHandle] = {}  # what add_hook / hooks attached, by handle id
        self.aux_loss = torch.zeros(())
        self.init_weights(seed=seed)

    @torch.no_grad()
    def init_weights(self, names: set[str] | None = None, seed: int | None = None) -> None:
        """(Re)initialise the parameters named in ``names`` (all if None), GPT-2 style: N(0, 0.02),
        residual projections N(0, 0.02/sqrt(2·n_layer)), norms 1, biases and positional logits 0."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        std_out = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for mod_name, module in self.named_modules():
            for p_name, p in module.named_parameters(recurse=False):
                if names is not None and f"{mod_name}.{p_name}".lstrip(".") not in names:
                    continue
                if isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and p_name == "weight":
                    p.fill_(1.0)
                elif p_name in ("bias", "pos_logits") or mod_name.endswith("rel_bias"):
                    p.zero_()
                else:
                    std = std_out if mod_name.endswith(("attn.out", "proj")) else 0.02
                    p.copy_(torch.randn(p.shape, generator=generator) * std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (batch, seq, vocab) of ``tokens`` (batch, seq)."""
        return F.linear(self.features(tokens), self.unembedding_weight)

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats) of ``targets`` (batch, seq; IGNORE_INDEX where none) given ``tokens``:
        what training minimises, computed by ``labkit.loss.linear_cross_entropy`` without keeping the
        logits (the largest tensor of a tiny model's step)."""
        return linear_cross_entropy(self.features(tokens), self.unembedding_weight, targets)

    @property
    def unembedding_weight(self) -> torch.Tensor:
        """(vocab, d_model): the token embedding when tied, else the separate unembedding."""
        return self.embed.weight if self.unembed is None else self.unembed.weight

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final normalised residual stream (batch, seq, d_model), which the unembedding maps to logits:
        the output of ``ln_final.hook_normalized``, so a hook there acts on ``forward`` and ``loss`` alike."""
        T = tokens.shape[-1]
        if T > self.cfg.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.cfg.max_len}")
        x = self.hook_embed(self.embed(tokens))
        if self.pos_embed is not None:  # slicing, not a lookup: cheaper backward
            x = x + self.hook_pos_embed(self.pos_embed.weight[:T].unsqueeze(0))  # (1, T, d) hook
        for block in self.blocks:
            x = block(x)
        if self.cfg.moe_experts:
            self.aux_loss = sum(block.mlp.aux_loss for block in self.blocks)
        return self.ln_final.hook_normalized(self.ln_final(x))

    # --- hooks (TransformerLens's API) -------------------------------------------------------------
    def hook_names(self) -> list[str]:
        """Every hook point's full name, in forward order."""
        return list(self.hook_dict)

    def add_hook(self, name: NameOrFilter, fn: HookFn) -> None:
        """Call ``fn(tensor, hook=hook_point)`` at the hook point ``name`` (or at every one whose name the
        predicate ``name`` accepts) on each forward until ``reset_hooks()``; a returned tensor replaces the
        activation."""
        self._attach(name, fn)

    def reset_hooks(self) -> None:
        """Remove every hook added through ``add_hook``, ``hooks``, ``run_with_hooks`` (any still there)."""
        for handle in self._hook_handles.values():
            handle.remove()
        self._hook_handles.clear()

    def _attach(self, name: NameOrFilter, fn: HookFn) -> list[RemovableHandle]:
        if callable(name):
            points = [point for point_name, point in self.hook_dict.items() if name(point_name)]
        elif name in self.hook_dict:
            points = [self.hook_dict[name]]
        else:
            raise ValueError(f"hook name {name!r} is not valid; allowed: {', '.join(self.hook_dict)}")
        handles = [point.register_forward_hook(lambda module, args, out: fn(out, hook=module)) for point in points]
        self._hook_handles.update((handle.id, handle) for handle in handles)
        return handles

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[NameOrFilter, HookFn]] = (),
              reset_hooks_end: bool = True) -> Iterator[Transformer]:
        """Attach ``[(name_or_filter, fn), ...]`` for the duration of a ``with`` block (kept after it if
        ``reset_hooks_end`` is False, until ``reset_hooks()``); yields the model."""
        handles: list[RemovableHandle] = []
        try:
            for name, fn in fwd_hooks:
                handles += self._attach(name, fn)
            yield self
        finally:
            if reset_hooks_end:
                for handle in handles:
                    handle.remove()  # a no-op if reset_hooks inside the block removed it already
                    self._hook_handles.pop(handle.id, None)

    def run_with_hooks(self, tokens: torch.Tensor, fwd_hooks: Iterable[tuple[NameOrFilter, HookFn]] = (),
                       reset_hooks_end: bool = True) -> torch.Tensor:
        """Logits of ``tokens`` with the hooks ``[(name_or_filter, fn), ...]`` attached for this forward."""
        with self.hooks(fwd_hooks, reset_hooks_end=reset_hooks_end):
            return self(tokens)

    def run_with_cache(self, tokens: torch.Tensor,
                       names_filter: NamesFilter = None) -> tuple[torch.Tensor, ActivationCache]:
        """Logits and the detached activations of the hooks ``names_filter`` selects: None (all), a name,
        a list of names, or a predicate over names."""
        if names_filter is None:
            names_filter = self.hook_names()
        elif isinstance(names_filter, str):
            names_filter = [names_filter]
        elif callable(names_filter):
            names_filter = [name for name in self.hook_dict if names_filter(name)]
        acts: dict[str, torch.Tensor] = {}

        def save(t: torch.Tensor, hook: HookPoint) -> None:
            acts[hook.name] = t.detach()

        logits = self.run_with_hooks(tokens, [(name, save) for name in names_filter])
        return logits, ActivationCache(acts, self.cfg.n_layer)


# --- parameter counts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamCount:
    """Parameters by group. ``total`` is P of Part 3.3 (allenzhu2024part33) (with ``used_tokens``: embedding
    rows of tokens that never occur excluded); ``non_embedding`` also drops token, position and unembedding
    rows (the N of Kaplan et al.'s scaling laws); ``active`` is what one token uses: ``total`` less, in
    every mixture-of-experts layer, the ``moe_experts - moe_top_k`` experts a token is not routed to
    (Part 3.3 compares MoE models by total and by active parameters)."""

    total: int
    non_embedding: int
    embedding: int
    position: int
    attention: int
    mlp: int
    norm: int
    unembedding: int
    active: int

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def count_params(model: Transformer, used_tokens=None) -> ParamCount:
    """Count ``model``'s parameters by group; ``used_tokens`` (ids that occur in the data) limits the
    embedding (and untied unembedding) to those rows, as Part 3.3 (allenzhu2024part33) counts P."""
    groups = dict.fromkeys(("embedding", "position", "attention", "mlp", "norm", "unembedding"), 0)
    top = {"embed": "embedding", "pos_embed": "position", "ln_final": "norm", "unembed": "unembedding"}
    inner = {"attn": "attention", "mlp": "mlp", "ln1": "norm", "ln2": "norm"}
    for name, p in model.named_parameters():
        parts = name.split(".")
        groups[inner[parts[2]] if parts[0] == "blocks" else top[parts[0]]] += p.numel()
    if used_tokens is not None:
        ids = torch.as_tensor(used_tokens).flatten().unique()
        vocab, d = model.cfg.vocab_size, model.cfg.d_model
        if len(ids) and not (0 <= int(ids.min()) and int(ids.max()) < vocab):
            raise _invalid("used_tokens", f"ids in [{int(ids.min())}, {int(ids.max())}]", f"ids in [0, {vocab})")
        groups["embedding"] = len(ids) * d
        if groups["unembedding"]:
            groups["unembedding"] = len(ids) * d
    total = sum(groups.values())
    non_embedding = total - groups["embedding"] - groups["position"] - groups["unembedding"]
    idle = sum((len(block.mlp.experts) - block.mlp.top_k) * sum(p.numel() for p in block.mlp.experts[0].parameters())
               for block in model.blocks if isinstance(block.mlp, MoE))
    return ParamCount(total=total, non_embedding=non_embedding, active=total - idle, **groups)
