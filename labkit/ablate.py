"""Ablations: how many bits of a dataset does a model lose when one component is switched off?

Why: probes (labkit.probe) say where knowledge is *readable*; an ablation says where it is *used*. The bit
meter (labkit.measure.bits_learned) is rerun with a component's output replaced, and the bits lost are
bits(intact) - bits(ablated). Two replacements, as in the interpretability literature:

- ``"zero"``: the output is set to 0, as if the component were absent. Simple, but it also moves the
  residual stream off the distribution the later layers saw in training.
- ``"mean"``: the output is set to its mean over the dataset's items and (non-padding) positions,
  computed first with the model intact. It removes what the component says about *this* input while
  keeping its average contribution, so a component whose output is constant loses nothing.

Components are named by hook (labkit.model): ``blocks.{L}.hook_attn_out`` (one attention layer),
``blocks.{L}.hook_mlp_out`` (one MLP layer) and ``blocks.{L}.attn.hook_z[h]`` (head h of layer L, before the
output matrix, so the other heads are untouched). A list or tuple of names is one component ablated as a
whole (e.g. every layer at once); an empty one ablates nothing. The replacement is a forward hook attached
with the model's ``hooks`` context manager around ``bits_learned``, so the bit meter itself is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from labkit.checks import check_choice, check_int, invalid
from labkit.data.base import TokenDataset
from labkit.measure import bits_learned
from labkit.runtime import resolve_device
from labkit.train import record_lengths

if TYPE_CHECKING:
    import pandas as pd

Component = str | Sequence[str]
KINDS = ("zero", "mean")
_HEAD = re.compile(r"^(blocks\.\d+\.attn\.hook_z)\[(\d+)\]$")

__all__ = ["KINDS", "ablation_table", "attention_layers", "components", "heads", "mean_activations", "mlp_layers"]


def attention_layers(model: nn.Module) -> list[str]:
    """Every attention layer's component name, ``blocks.{L}.hook_attn_out``."""
    return [f"blocks.{layer}.hook_attn_out" for layer in range(model.cfg.n_layer)]


def mlp_layers(model: nn.Module) -> list[str]:
    """Every MLP layer's component name, ``blocks.{L}.hook_mlp_out`` (none with ``mlp="none"``)."""
    return [name for name in model.hook_names() if name.endswith(".hook_mlp_out")]


def heads(model: nn.Module) -> list[str]:
    """Every attention head's component name, ``blocks.{L}.attn.hook_z[h]``."""
    return [f"blocks.{layer}.attn.hook_z[{h}]" for layer in range(model.cfg.n_layer) for h in range(model.cfg.n_head)]


def components(model: nn.Module) -> list[str]:
    """Every single component: attention layers, MLP layers, then heads."""
    return [*attention_layers(model), *mlp_layers(model), *heads(model)]


def _parse(model: nn.Module, name: str) -> tuple[str, int | None]:
    """(hook name, head or None) of one component name; ``ValueError`` listing the allowed forms."""
    if isinstance(name, str):
        if name in attention_layers(model) or name in mlp_layers(model):
            return name, None
        match = _HEAD.match(name)
        if match and match[1] in model.hook_dict and int(match[2]) < model.cfg.n_head:
            return match[1], int(match[2])
    n_layer, n_head = model.cfg.n_layer, model.cfg.n_head
    mlp = ", blocks.{L}.hook_mlp_out" if mlp_layers(model) else ""
    raise invalid("components", name, f"blocks.{{L}}.hook_attn_out{mlp}, blocks.{{L}}.attn.hook_z[h] "
                  f"(L < {n_layer}, h < {n_head}), or a list of them")


def _parts(model: nn.Module, component: Component) -> list[tuple[str, int | None]]:
    names = [component] if isinstance(component, str) else list(component)
    return [_parse(model, name) for name in names]


def _label(component: Component) -> str:
    if isinstance(component, str):
        return component
    return " + ".join(component) if len(component) else "(nothing)"


@torch.no_grad()
def mean_activations(
    model: nn.Module,
    dataset: TokenDataset,
    hooks: Sequence[str],
    device: str | torch.device = "auto",
    batch_size: int = 128,
) -> dict[str, torch.Tensor]:
    """``{hook: mean activation}`` over every item and every position before its padding (float64 sums,
    returned as float32 on the CPU); the trailing shape of the hook, e.g. (d_model,) or (head, d_head)."""
    batch = dataset.exposure(0)
    device = resolve_device(device)
    lengths = record_lengths(batch)
    n = batch.tokens.shape[0]
    sums: dict[str, torch.Tensor] = {}
    count = 0
    was_training = model.training
    model.to(device).eval()
    try:
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            length = int(lengths[lo:hi].max())
            _, cache = model.run_with_cache(batch.tokens[lo:hi, :length].to(device), names_filter=list(hooks))
            valid = (torch.arange(length) < lengths[lo:hi, None]).to(device)  # (b, pos)
            count += int(valid.sum())
            for hook in hooks:
                act = cache[hook].double()
                total = (act * valid.reshape(*valid.shape, *([1] * (act.ndim - 2)))).sum((0, 1))
                sums[hook] = sums.get(hook, 0) + total
    finally:
        model.train(was_training)
    return {hook: (s / max(count, 1)).float().cpu() for hook, s in sums.items()}


def _hook_fn(head: int | None, value: torch.Tensor | None):
    """A forward hook replacing the activation (or one head of ``hook_z``) by ``value`` (None: zeros)."""
    def replace(t: torch.Tensor, hook: Any) -> torch.Tensor:
        fill = torch.zeros((), dtype=t.dtype, device=t.device) if value is None else value.to(t.device, t.dtype)
        if head is None:
            return fill.expand_as(t).clone()
        out = t.clone()
        out[:, :, head] = fill[head] if fill.ndim else fill
        return out

    return replace


def ablation_table(
    model: nn.Module,
    dataset: TokenDataset,
    components: Sequence[Component] | None = None,
    kind: str = "zero",
    device: str | torch.device = "auto",
    batch_size: int = 128,
) -> pd.DataFrame:
    """One row per component, most bits lost first: ``component``, ``kind``, ``bits`` (learned with the
    component ablated), ``bits_intact``, ``bits_lost`` = bits_intact - bits and ``fraction_lost`` =
    bits_lost / bits_intact (NaN when the intact model knows nothing). An ablation can also *raise* the bits
    (negative bits lost): a component may cost the model more than it gives on this dataset.

    ``components``: names as in the module docstring (None: every attention layer, MLP layer and head,
    one at a time); ``kind``: ``"zero"`` or ``"mean"`` (the mean over the dataset's items and positions,
    computed once, before any ablation).
    """
    import pandas as pd

    check_choice("kind", kind, KINDS)
    check_int("batch_size", batch_size, 1)
    if components is None:
        components = globals()["components"](model)
    elif isinstance(components, str):
        components = [components]
    parsed = [_parts(model, component) for component in components]
    means: dict[str, torch.Tensor] = {}
    if kind == "mean":
        hooks = list(dict.fromkeys(hook for parts in parsed for hook, _ in parts))
        means = mean_activations(model, dataset, hooks, device, batch_size) if hooks else {}
    intact = bits_learned(model, dataset, device, batch_size=batch_size).bits
    rows = []
    for component, parts in zip(components, parsed, strict=True):
        fwd_hooks = [(hook, _hook_fn(head, means.get(hook))) for hook, head in parts]
        with model.hooks(fwd_hooks):
            bits = bits_learned(model, dataset, device, batch_size=batch_size).bits
        lost = intact - bits
        rows.append({"component": _label(component), "kind": kind, "bits": bits, "bits_intact": intact,
                     "bits_lost": lost, "fraction_lost": lost / intact if intact > 0 else float("nan")})
    table = pd.DataFrame(rows, columns=["component", "kind", "bits", "bits_intact", "bits_lost", "fraction_lost"])
    return table.sort_values("bits_lost", ascending=False, kind="stable", ignore_index=True)
