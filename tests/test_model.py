"""Tests of labkit.model: each one fails if the model is wrong in the way its name says."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from labkit.model import ModelConfig, Transformer, count_params, gpt2, llama, tiny
from labkit.runtime import seed_everything

V, T = 31, 12
SOFTMAX_POS = ["absolute", "rotary", "relative", "alibi", "none"]
KINDS = [("softmax", p) for p in SOFTMAX_POS] + [(a, p) for a in ("position", "uniform") for p in ("absolute", "none")]


def cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"vocab_size": V, "max_len": 2 * T, "d_model": 16, "n_head": 2, "n_layer": 2, **kw})


def tokens(batch: int = 3, length: int = T, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


# every architecture the lab compares, for tests that must hold for all of them
VARIANTS = {f"{a}-{p}": cfg(attention=a, pos=p) for a, p in KINDS} | {
    "gated-rmsnorm": cfg(mlp="gated", norm="rmsnorm", pos="rotary"),
    "attn-only": cfg(mlp="none"),
    "untied-bias": cfg(tie_embeddings=False, bias=True),
    "moe-top2": cfg(moe_experts=4, moe_top_k=2),
    "moe-gated-top1": cfg(moe_experts=3, moe_top_k=1, mlp="gated"),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_causal(name):
    model = Transformer(VARIANTS[name], seed=0).double()
    x = tokens()
    for t in (0, T // 2, T - 1):
        y = x.clone()
        y[:, t] = (y[:, t] + 1) % V
        a, b = model(x), model(y)
        # float64: a leak would show far above 1e-12; MoE expert batches regroup, so not bit-equal
        torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-12, msg=f"token {t} leaked backwards")
        assert not torch.allclose(a[:, t], b[:, t]), "the changed token itself must matter"


@pytest.mark.parametrize("attention, pos", [("softmax", p) for p in SOFTMAX_POS] + [("position", "none")])
def test_scores_depend_on_relative_position_only(attention, pos):
    """Same tokens at offset 0 and at offset k (after k other tokens): in layer 0 the scores
    s[i, j] - s[i, i] = log p[i, j] - log p[i, i] (free of the softmax normaliser) must agree for the
    relative methods, and differ for learned absolute positions."""
    model = Transformer(cfg(attention=attention, pos=pos), seed=1).double()
    with torch.no_grad():  # random, not zero, position logits so that the test has teeth
        for block in model.blocks:
            for name, p in block.attn.named_parameters():
                if name in ("pos_logits", "rel_bias.weight"):
                    p.normal_(0, 1, generator=torch.Generator().manual_seed(2))
    x, k = tokens(2, T), 7
    shifted = torch.cat([tokens(2, k, seed=1), x], dim=1)
    name = "blocks.0.attn.hook_pattern"
    p0 = model.run_with_cache(x, names_filter=[name])[1][name].log()
    pk = model.run_with_cache(shifted, names_filter=[name])[1][name][:, :, k:, k:].log()
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    rel0 = (p0 - p0.diagonal(dim1=-2, dim2=-1)[..., None])[..., causal]
    relk = (pk - pk.diagonal(dim1=-2, dim2=-1)[..., None])[..., causal]
    gap = (rel0 - relk).abs().max()
    if pos == "absolute" and attention == "softmax":
        assert gap > 1e-3
    else:  # float64 model; rotary tables are float32, hence not 1e-12
        assert gap < 1e-7


def test_rotary_scores_depend_on_distance_only():
    """The same q and k vector at every position: RoPE's q_i·k_j must be a function of i - j alone."""
    model = Transformer(cfg(pos="rotary"), seed=0).double()
    attn = model.blocks[0].attn
    q, k = torch.randn(2, 1, 1, 8, dtype=torch.float64).unbind(0)
    q, k = q.expand(1, 1, 2 * T, 8), k.expand(1, 1, 2 * T, 8)  # same vector at every position
    scores = attn._rotate(q) @ attn._rotate(k).transpose(-2, -1)  # (1, 1, 2T, 2T)
    idx = torch.arange(2 * T)
    for d in (0, 1, 5):
        diag = scores[0, 0, idx[d:], idx[: 2 * T - d]]
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), rtol=0, atol=1e-6)


def test_uniform_pattern_is_the_fixed_window_and_has_no_qk():
    model = Transformer(cfg(attention="uniform", pos="none", n_head=4, d_model=16), seed=0)
    _, cache = model.run_with_cache(tokens(), names_filter=lambda n: n.endswith("hook_pattern"))
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    for h in range(4):
        width = 2 ** (h + 1) - 1  # head h+1 (1-based) sees 2^(h+1) - 1 tokens, itself included
        inside = (j <= i) & (j > i - width)
        expected = inside / inside.sum(-1, keepdim=True)
        for pattern in cache.values():
            assert torch.equal(pattern[0, h], expected.float())
    attn_params = {n.split("attn.")[1] for n, _ in model.named_parameters() if ".attn." in n}
    assert attn_params == {"v.weight", "out.weight"}, attn_params
    position = Transformer(cfg(attention="position"))
    attn_params = {n.split("attn.")[1] for n, _ in position.named_parameters() if ".attn." in n}
    assert attn_params == {"v.weight", "out.weight", "pos_logits"}, attn_params


@pytest.mark.parametrize("name", VARIANTS)
def test_gradient_reaches_every_parameter(name):
    seed_everything(0)
    model = Transformer(VARIANTS[name], seed=0)
    x = torch.arange(4 * T).remainder(V).view(4, T)  # every token id occurs, so every embedding row
    logits = model(x)
    loss = F.cross_entropy(logits.flatten(0, 1), x.roll(-1, 1).flatten()) + 0.01 * model.aux_loss
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


def test_same_seed_bit_identical_and_device_moves():
    a, b = Transformer(cfg(pos="relative"), seed=3), Transformer(cfg(pos="relative"), seed=3)
    x = tokens()
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), Transformer(cfg(pos="relative"), seed=4)(x))
    seed_everything(5)
    c = Transformer(cfg())
    seed_everything(5)
    assert torch.equal(c(x), Transformer(cfg())(x))
    moved = a.to(torch.device("cpu"))
    assert moved(x).device.type == "cpu"


@pytest.mark.parametrize("name", [n for n in VARIANTS if not n.startswith("moe")])  # bincount has no meta kernel
def test_no_tensor_is_created_off_the_input_device(name):
    """On the meta device any tensor made on the CPU by mistake (masks, tables) breaks the forward:
    the cheap stand-in for a GPU test on a CPU-only machine."""
    model = Transformer(VARIANTS[name]).to("meta")
    assert model(tokens().to("meta")).shape == (3, T, V)
    assert model.run_with_cache(tokens().to("meta"))[0].device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", VARIANTS)
def test_cuda_matches_cpu(name):
    model = Transformer(VARIANTS[name], seed=0)
    x = tokens()
    torch.testing.assert_close(model.cuda()(x.cuda()).cpu(), model.cpu()(x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["softmax-rotary", "softmax-relative", "position-none", "moe-top2", "gated-rmsnorm"])
def test_bf16_autocast(name):
    model = Transformer(VARIANTS[name], seed=0)
    x = tokens()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        _, cache = model.run_with_cache(x)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    torch.testing.assert_close(logits.float(), model(x), rtol=0.1, atol=0.05)
    logits.float().sum().backward()


def gpt2_closed_form(layers: int, h: int, vocab: int, bias: bool) -> int:
    """GPT2-ℓ-h (allenzhu2024part33), rotary so no position table, tied: vocab·d + ℓ·(12d² + norms) + final norm.
    Per layer: qkv 3d², out d², fc 4d², proj 4d² = 12d²; 2 LayerNorm weights 2d. With biases: qkv 3d,
    out d, fc 4d, proj d, LayerNorm biases 2d = 11d more per layer, and d more for the final norm."""
    d = 64 * h
    per_layer = 12 * d * d + 2 * d + (11 * d if bias else 0)
    return vocab * d + layers * per_layer + d + (d if bias else 0)


@pytest.mark.parametrize("layers,h,bias", [(1, 1, False), (2, 2, False), (3, 1, True)])
def test_param_count_matches_gpt2_closed_form(layers, h, bias):
    model = Transformer(gpt2(layers, h, vocab_size=V, max_len=T, bias=bias))
    counts = count_params(model)
    assert counts.total == gpt2_closed_form(layers, h, V, bias) == sum(p.numel() for p in model.parameters())
    d = 64 * h
    assert counts.embedding == V * d and counts.position == 0 and counts.unembedding == 0
    assert counts.attention == layers * (4 * d * d + (4 * d if bias else 0))
    assert counts.mlp == layers * (8 * d * d + (5 * d if bias else 0))
    assert counts.non_embedding == counts.total - V * d
    groups = ("embedding", "position", "attention", "mlp", "norm", "unembedding")
    assert sum(counts.as_dict()[g] for g in groups) == counts.total


def test_param_count_excludes_unused_token_rows():
    tied = Transformer(cfg())
    untied = Transformer(cfg(tie_embeddings=False))
    used = torch.tensor([[1, 2, 2, 5], [5, 7, 1, 1]])  # 4 distinct ids
    full, part = count_params(tied), count_params(tied, used_tokens=used)
    assert full.total - part.total == (V - 4) * 16 and part.embedding == 4 * 16
    assert count_params(tied, used_tokens=[1, 2, 5, 7]) == part
    u_full, u_part = count_params(untied), count_params(untied, used_tokens=used)
    assert u_full.unembedding == V * 16 and u_part.unembedding == 4 * 16
    assert u_full.total - u_part.total == 2 * (V - 4) * 16
    assert u_part.non_embedding == u_full.non_embedding
    assert full.position == 2 * T * 16  # max_len rows
    with pytest.raises(ValueError, match="used_tokens"):
        count_params(tied, used_tokens=[0, V])


def test_tiny_preset_parameter_count():
    # 2 layers, d 32, 2 heads, absolute positions, GELU 4x, tied, no biases, records of 20 tokens:
    # the lab's CPU model has 40,448 parameters, which this architecture reaches exactly at a vocabulary of 471.
    assert count_params(Transformer(tiny(471, 20))).total == 40_448
    assert gpt2(12, 12, 50257, 512).d_model == 768
    c = llama(2, 2, V, T)
    assert (c.pos, c.mlp, c.norm, c.d_model) == ("rotary", "gated", "rmsnorm", 128)


def test_run_with_cache_shapes_and_hook_names():
    model = Transformer(cfg(n_layer=2, n_head=2), seed=0)
    x = tokens(3)
    logits, cache = model.run_with_cache(x)
    torch.testing.assert_close(logits, model(x))
    assert list(cache) == model.hook_names() == list(cache.keys())  # forward order
    heads = (3, T, 2, 8)  # TransformerLens's (batch, pos, head, d_head)
    expected = {
        "hook_embed": (3, T, 16),
        "hook_pos_embed": (1, T, 16),
        "blocks.0.hook_resid_pre": (3, T, 16),
        "blocks.0.attn.hook_q": heads,
        "blocks.0.attn.hook_k": heads,
        "blocks.0.attn.hook_v": heads,
        "blocks.1.attn.hook_pattern": (3, 2, T, T),
        "blocks.1.attn.hook_z": heads,
        "blocks.0.hook_attn_out": (3, T, 16),
        "blocks.0.hook_resid_mid": (3, T, 16),
        "blocks.0.mlp.hook_pre": (3, T, 64),
        "blocks.0.mlp.hook_post": (3, T, 64),
        "blocks.1.hook_mlp_out": (3, T, 16),
        "blocks.1.hook_resid_post": (3, T, 16),
        "ln_final.hook_normalized": (3, T, 16),
    }
    assert set(expected) <= set(model.hook_names())
    for name, shape in expected.items():
        assert cache[name].shape == shape, name
    mid = cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"]
    torch.testing.assert_close(cache["blocks.1.hook_resid_mid"], mid)
    torch.testing.assert_close(cache["blocks.1.hook_resid_post"], mid + cache["blocks.1.hook_mlp_out"])
    pattern, v = cache["blocks.1.attn.hook_pattern"], cache["blocks.1.attn.hook_v"]
    torch.testing.assert_close(cache["blocks.1.attn.hook_z"], (pattern @ v.transpose(1, 2)).transpose(1, 2))
    assert "hook_pos_embed" not in Transformer(cfg(pos="rotary")).hook_names()
    position = Transformer(cfg(attention="position", mlp="none")).hook_names()
    assert "blocks.0.attn.hook_v" in position and "blocks.0.attn.hook_q" not in position
    assert "blocks.0.hook_resid_mid" not in position  # attn-only, as in TransformerLens
    gated = Transformer(cfg(mlp="gated")).run_with_cache(x)[1]
    torch.testing.assert_close(gated["post", 0], F.silu(gated["pre", 0]) * gated["pre_linear", 0])
    assert not any(h._forward_hooks for h in model.hook_dict.values()), "hooks must be removed"
    with pytest.raises(ValueError, match="hook_typo"):
        model.run_with_hooks(x, [("blocks.0.hook_typo", lambda t, hook: t)])
    assert not any(h._forward_hooks for h in model.hook_dict.values()), "a failed attach must not leave hooks"


@pytest.mark.parametrize("pos", SOFTMAX_POS)
def test_pattern_rows_sum_to_one_and_match_the_fast_path(pos):
    model = Transformer(cfg(pos=pos), seed=0)
    x = tokens()
    logits, cache = model.run_with_cache(x, names_filter=lambda n: n.endswith("hook_pattern"))
    for pattern in cache.values():
        torch.testing.assert_close(pattern.sum(-1), torch.ones(3, 2, T))
        assert torch.equal(pattern.triu(1), torch.zeros_like(pattern))
    torch.testing.assert_close(logits, model(x))  # materialised pattern == SDPA fast path


def test_intervention_changes_logits_and_idle_hooks_take_the_fast_path(monkeypatch):
    model = Transformer(cfg(), seed=0)
    x = tokens()
    clean = model(x)
    seen = []

    def zero(t, hook):
        seen.append(hook.name)
        return torch.zeros_like(t)

    ablated = model.run_with_hooks(x, [("blocks.1.hook_mlp_out", zero)])
    assert seen == ["blocks.1.hook_mlp_out"] and not torch.allclose(clean, ablated)
    assert torch.equal(model(x), clean), "hooks must not outlive run_with_hooks"
    # the attention pattern is only materialised when something listens to it
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    model(x)
    assert len(calls) == 2
    model.run_with_cache(x, names_filter=["blocks.0.attn.hook_pattern"])
    assert len(calls) == 3  # layer 0 computed the pattern by hand, layer 1 kept SDPA
    model.run_with_cache(x, names_filter=lambda n: "pattern" not in n)  # q, k, v, z hooks keep SDPA
    assert len(calls) == 5


def test_pattern_intervention_is_used():
    model = Transformer(cfg(), seed=0)
    x = tokens()
    diag = torch.eye(T).expand(3, 2, T, T)
    out = model.run_with_hooks(x, [("blocks.0.attn.hook_pattern", lambda t, hook: diag)])
    assert not torch.allclose(out, model(x))


def test_hook_functions_get_the_hook_point_by_keyword_with_name_and_layer():
    model = Transformer(cfg(n_layer=3), seed=0)
    seen = []

    def record(tensor, *, hook):  # keyword-only: TransformerLens calls fn(tensor, hook=hook_point)
        seen.append((hook.name, hook.layer(), tensor.shape))

    model.run_with_hooks(tokens(), fwd_hooks=[(lambda name: name.endswith("resid_post"), record)])
    assert seen == [(f"blocks.{i}.hook_resid_post", i, (3, T, 16)) for i in range(3)]
    assert model.hook_dict["blocks.2.attn.hook_pattern"].layer() == 2
    for name in ("hook_embed", "hook_pos_embed", "ln_final.hook_normalized"):
        with pytest.raises(ValueError, match="no layer"):
            model.hook_dict[name].layer()


def test_cache_reads_transformer_lens_short_names():
    from labkit.model import get_act_name

    model = Transformer(cfg(), seed=0)
    _, cache = model.run_with_cache(tokens())
    pairs = {
        ("resid_post", 1): "blocks.1.hook_resid_post",
        ("resid_post", -1): "blocks.1.hook_resid_post",
        ("resid_pre", 0): "blocks.0.hook_resid_pre",
        ("pattern", 1): "blocks.1.attn.hook_pattern",
        ("attn", 0): "blocks.0.attn.hook_pattern",
        ("q", 0): "blocks.0.attn.hook_q",
        ("z", 1): "blocks.1.attn.hook_z",
        ("post", 0): "blocks.0.mlp.hook_post",
        ("mlp_out", 1): "blocks.1.hook_mlp_out",
        ("embed",): "hook_embed",
        "embed": "hook_embed",
        "pos_embed": "hook_pos_embed",
        "normalized": "ln_final.hook_normalized",
        "k1": "blocks.1.attn.hook_k",
        "blocks.0.hook_attn_out": "blocks.0.hook_attn_out",
    }
    for key, name in pairs.items():
        assert cache[key] is cache[name], key
        assert key in cache
    assert get_act_name("k", 6, "a") == get_act_name("k6") == "blocks.6.attn.hook_k"
    assert get_act_name("scale4ln1") == "blocks.4.ln1.hook_scale"
    assert get_act_name("normalized", 3, "ln2") == "blocks.3.ln2.hook_normalized"
    assert get_act_name("resid_mid", 2) == "blocks.2.hook_resid_mid"
    assert len(cache) == len(model.hook_names()) and dict(cache.items()).keys() == set(cache)
    assert ("resid_post", 2) not in cache and "hook_typo" not in cache and 3 not in cache
    with pytest.raises(KeyError, match="blocks.2.hook_resid_post"):
        cache["resid_post", 2]
    assert cache.to("cpu") is cache and cache["embed"].device.type == "cpu"


def test_names_filter_selects_the_cached_hooks():
    model = Transformer(cfg(), seed=0)
    x = tokens()
    full = model.run_with_cache(x)[1]
    some = ["blocks.1.hook_resid_post", "blocks.0.attn.hook_q"]
    for names_filter, expected in [
        ("blocks.0.hook_attn_out", ["blocks.0.hook_attn_out"]),
        (some, ["blocks.0.attn.hook_q", "blocks.1.hook_resid_post"]),  # forward order
        (lambda n: n.endswith("hook_pattern"), ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]),
        ([], []),
    ]:
        logits, cache = model.run_with_cache(x, names_filter=names_filter)
        assert list(cache) == expected, names_filter
        for name in expected:
            torch.testing.assert_close(cache[name], full[name])
    assert list(model.run_with_cache(x, some)[1]) == list(model.run_with_cache(x, names_filter=some)[1])
    with pytest.raises(ValueError, match="hook_typo"):
        model.run_with_cache(x, names_filter=["blocks.0.hook_typo"])


def test_patching_hook_changes_logits_and_reset_hooks_restores_them_exactly():
    model = Transformer(cfg(), seed=0)
    x = tokens()
    clean = model(x)
    model.add_hook("blocks.0.hook_attn_out", lambda t, hook: torch.zeros_like(t))
    ablated = model(x)
    assert not torch.allclose(ablated, clean)
    assert torch.equal(model(x), ablated), "add_hook hooks persist across forwards"
    model.run_with_hooks(x, [("hook_embed", lambda t, hook: None)])  # a context removes only its own hooks
    assert torch.equal(model(x), ablated)
    model.run_with_hooks(x, [("blocks.1.hook_attn_out", lambda t, hook: t * 0)], reset_hooks_end=False)
    both = model(x)
    assert not torch.allclose(both, ablated), "reset_hooks_end=False keeps the run's hooks"
    with model.hooks([("blocks.1.hook_mlp_out", lambda t, hook: t * 0)]):
        assert not torch.allclose(model(x), both)
        model.reset_hooks()  # inside a context: the context's exit must cope
    assert torch.equal(model(x), clean), "reset_hooks removes every hook added through the API"
    assert not any(h._forward_hooks for h in model.hook_dict.values())


@pytest.mark.parametrize("name", ["softmax-absolute", "untied-bias", "gated-rmsnorm"])
def test_ln_final_hook_normalized_is_what_the_unembedding_reads(name):
    model = Transformer(VARIANTS[name], seed=0)
    x = tokens()
    logits, cache = model.run_with_cache(x, names_filter="ln_final.hook_normalized")
    torch.testing.assert_close(logits, cache["normalized"] @ model.unembedding_weight.T)
    # the fused loss path fires the same hook: zero features give uniform logits, loss log V
    targets = x.roll(-1, 1)
    with model.hooks([("ln_final.hook_normalized", lambda t, hook: torch.zeros_like(t))]):
        assert math.isclose(model.loss(x, targets).item(), math.log(V), rel_tol=1e-6)
    assert not math.isclose(model.loss(x, targets).item(), math.log(V), rel_tol=1e-3)


@torch.no_grad()
def test_arena_style_snippets_run():
    """Code in the style of ARENA's TransformerLens exercises: filters, partials, in-place edits, caches."""
    from functools import partial

    from labkit.model import get_act_name as act  # as ``utils.get_act_name``

    model = Transformer(cfg(), seed=0)
    x, corrupted = tokens(), tokens(seed=1)
    patterns = {}

    def store(pattern, hook):
        patterns[hook.layer()] = pattern

    model.run_with_hooks(x, fwd_hooks=[(lambda n: n.endswith("pattern"), store)])
    assert sorted(patterns) == [0, 1] and patterns[1].shape == (3, 2, T, T)

    def head_ablation_hook(activation, hook, head_index):
        activation[:, :, head_index, :] = 0.0  # in place, returns None: the edit is what counts

    clean_logits, clean_cache = model.run_with_cache(x, names_filter=lambda n: "resid" in n)
    z_ablated = model.run_with_hooks(x, fwd_hooks=[(act("z", 0), partial(head_ablation_hook, head_index=1))])
    v_ablated = model.run_with_hooks(x, fwd_hooks=[(act("v", 0), partial(head_ablation_hook, head_index=1))])
    assert not torch.allclose(z_ablated, clean_logits)
    torch.testing.assert_close(z_ablated, v_ablated)  # z_h = pattern_h @ v_h: zero v_h, zero z_h

    def patch_residual(corrupted_resid, hook, clean_cache):
        corrupted_resid[:, :, :] = clean_cache[hook.name]
        return corrupted_resid

    patched = model.run_with_hooks(
        corrupted, fwd_hooks=[(act("resid_pre", 1), partial(patch_residual, clean_cache=clean_cache))]
    )
    assert torch.equal(patched, clean_logits), "everything after resid_pre 1 comes from the clean run"


@pytest.mark.parametrize("name", VARIANTS)
def test_idle_and_observing_hooks_leave_logits_bit_identical(name):
    model = Transformer(VARIANTS[name], seed=0)
    x = tokens()
    clean = model(x)
    observed = model.run_with_hooks(x, [(lambda n: "pattern" not in n, lambda t, hook: None)])
    assert torch.equal(observed, clean)
    model.add_hook(lambda n: True, lambda t, hook: None)
    model.reset_hooks()
    assert torch.equal(model(x), clean)


def test_moe_aux_loss():
    model = Transformer(cfg(moe_experts=4, moe_top_k=2), seed=0)
    model(tokens())
    aux = model.aux_loss
    assert aux.ndim == 0 and aux.requires_grad and 0.5 < aux.item() < 4.0
    aux.backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0
    dense = Transformer(cfg())
    dense(tokens())
    assert float(dense.aux_loss) == 0.0


def test_sequence_longer_than_max_len_is_refused():
    with pytest.raises(ValueError, match="max_len"):
        Transformer(cfg())(tokens(1, 2 * T + 1))


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"d_model": 30, "n_head": 4}, "d_model"),
        ({"d_model": 6, "n_head": 2, "pos": "rotary"}, "d_model"),
        ({"pos": "sinusoidal"}, "pos"),
        ({"attention": "linear"}, "attention"),
        ({"mlp": "relu"}, "mlp"),
        ({"norm": "batchnorm"}, "norm"),
        ({"moe_experts": 2, "moe_top_k": 3}, "moe_top_k"),
        ({"moe_experts": 2, "moe_top_k": 0}, "moe_top_k"),
        ({"moe_experts": -1}, "moe_experts"),
        ({"moe_experts": 2, "mlp": "none"}, "mlp"),
        ({"attention": "uniform", "pos": "rotary"}, "pos"),
        ({"attention": "position", "pos": "alibi"}, "pos"),
        ({"n_layer": 0}, "n_layer"),
        ({"vocab_size": 2.5}, "vocab_size"),
        ({"mlp_ratio": 0}, "mlp_ratio"),
        ({"pos": "relative", "rel_buckets": 32, "rel_max_distance": 8}, "rel_max_distance"),
    ],
)
def test_invalid_config_names_field_value_and_allowed(kw, field):
    with pytest.raises(ValueError, match=rf"{field}=.*allowed") as err:
        cfg(**kw)
    assert repr(kw.get(field, "")).strip("'") in str(err.value) or field not in kw


def test_alibi_slopes_and_relative_buckets():
    from labkit.model import _alibi_slopes, _t5_bucket

    assert _alibi_slopes(8) == [2**-i for i in range(1, 9)]
    assert len(_alibi_slopes(6)) == 6 and all(0 < s < 1 for s in _alibi_slopes(6))
    b = _t5_bucket(torch.arange(200), 32, 128)
    assert b[:16].tolist() == list(range(16)) and b[-1] == 31 and (b.diff() >= 0).all()
    assert math.isclose(_alibi_slopes(2)[0], 2**-4)


@pytest.mark.parametrize("experts,top_k", [(4, 1), (4, 2), (3, 3)])
def test_active_params_drop_the_experts_a_token_skips(experts, top_k):
    dense, moe = count_params(Transformer(cfg())), count_params(Transformer(cfg(moe_experts=experts, moe_top_k=top_k)))
    assert dense.active == dense.total
    # per layer: experts copies of the dense MLP plus a router (d x experts); a token uses top_k copies
    assert moe.mlp == dense.mlp * experts + 2 * 16 * experts
    assert moe.total - moe.active == 2 * (experts - top_k) * (dense.mlp // 2)
