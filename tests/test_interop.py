"""Tests of labkit.interop: the exported Hugging Face model computes the lab model's logits.

Each parity test compares logits of random tokens, on weights moved away from the init (random shifts or a
few training steps), since at init symmetric weights (norms at 1, zero biases) hide swapped or transposed
tensors.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from labkit.interop import hf_class_name, hf_tokenizer, save_pretrained, to_hf, to_transformer_lens
from labkit.model import ModelConfig, Transformer
from labkit.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

TOL = 1e-4
GPT2 = {"pos": "absolute", "mlp": "gelu", "norm": "layernorm"}
LLAMA = {"pos": "rotary", "mlp": "gated", "norm": "rmsnorm"}


def cfg(vocab_size: int = 29, max_len: int = 12, **kw) -> ModelConfig:
    return ModelConfig(**{"vocab_size": vocab_size, "max_len": max_len, "d_model": 16, "n_head": 2, "n_layer": 2,
                          **kw})


def shaken(config: ModelConfig, seed: int = 0, scale: float = 0.3) -> Transformer:
    """A model whose every weight (norm gains and biases too) is shifted off its init."""
    model = Transformer(config, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def trained(config: ModelConfig, steps: int = 8, seed: int = 0) -> Transformer:
    """A model after a few Adam steps on random next-token data (large lr, so weights move noticeably)."""
    torch.manual_seed(seed)
    model = Transformer(config, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randint(0, config.vocab_size, (4, config.max_len + 1), generator=gen)
        loss = model.loss(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def max_diff(model: Transformer, hf, length: int, seed: int = 0) -> float:
    x = torch.randint(0, model.cfg.vocab_size, (3, length), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (hf(x).logits - model(x)).abs().max().item()


CASES = {
    "gpt2": cfg(**GPT2),
    "gpt2-bias-untied": cfg(vocab_size=41, max_len=9, bias=True, tie_embeddings=False, d_model=24, **GPT2),
    "gpt2-ratio": cfg(vocab_size=7, max_len=20, mlp_ratio=2.5, d_model=32, **GPT2),
    "llama": cfg(**LLAMA),
    "llama-bias-untied": cfg(vocab_size=53, max_len=10, bias=True, tie_embeddings=False, rope_base=100.0,
                             d_model=24, **LLAMA),
    "llama-wide-heads": cfg(vocab_size=11, max_len=16, n_head=2, d_model=32, **LLAMA),
}


@pytest.mark.parametrize("name", CASES)
def test_logit_parity(name):
    config = CASES[name]
    model = shaken(config)
    hf = to_hf(model)
    assert type(hf).__name__ == hf_class_name(model) == ("GPT2LMHeadModel" if "gpt2" in name else "LlamaForCausalLM")
    for length in (1, config.max_len // 2, config.max_len):
        assert max_diff(model, hf, length, seed=length) <= TOL


@pytest.mark.parametrize("knobs", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_parity_after_training(knobs):
    model = trained(cfg(**knobs))
    init = Transformer(model.cfg, seed=0)
    assert (model.embed.weight - init.embed.weight).abs().max() > 1e-2  # the steps moved the weights
    assert max_diff(model, to_hf(model), model.cfg.max_len) <= TOL


def test_gelu_variant_matters():
    """The exact GELU is a real choice: GPT-2's default tanh approximation would not match the lab."""
    model = shaken(cfg(**GPT2), scale=1.0)
    hf = to_hf(model)
    assert hf.config.activation_function == "gelu"
    hf.config.activation_function = "gelu_new"
    for block in hf.transformer.h:
        block.mlp.act = transformers.activations.ACT2FN["gelu_new"]
    assert max_diff(model, hf, 12) > TOL


def test_export_is_a_copy_and_tied():
    model = shaken(cfg(**LLAMA))
    hf = to_hf(model)
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    assert not hf.training
    with torch.no_grad():
        model.embed.weight.zero_()
    assert hf.model.embed_tokens.weight.abs().sum() > 0


@pytest.mark.parametrize("knobs", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_save_pretrained_round_trip(tmp_path, knobs):
    model = shaken(cfg(vocab_size=23, tie_embeddings=knobs is GPT2, **knobs))
    folder = save_pretrained(model, tmp_path / "export")
    assert (folder / "config.json").exists()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert type(loaded).__name__ == hf_class_name(model)
    assert max_diff(model, loaded.eval(), model.cfg.max_len) <= TOL


def test_tokenizer_keeps_the_lab_ids(tmp_path):
    vocab = Tokenizer(["alice", "was", "born", "in", "paris", "."])
    text = "alice was born in paris ."
    model = shaken(cfg(vocab_size=vocab.vocab_size + 3, **GPT2))  # wider than the data: placeholder names
    folder = save_pretrained(model, tmp_path / "export", vocab=vocab)
    loaded = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert loaded(text)["input_ids"] == vocab.encode(text)
    assert (loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id) == (0, 1, 2)
    assert len(loaded) == model.cfg.vocab_size
    with pytest.raises(ValueError, match="^vocab='9 tokens' is not valid; allowed: at most vocab_size=4 tokens$"):
        hf_tokenizer(4, vocab)


@pytest.mark.parametrize("knobs", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_transformer_lens_bridge(knobs):
    """TransformerLens 4 wraps the export offline; its logits and hooks are the lab model's."""
    pytest.importorskip("transformer_lens")
    model = trained(cfg(vocab_size=19, **knobs), steps=3)
    bridge = to_transformer_lens(model)
    x = torch.randint(0, 19, (2, model.cfg.max_len), generator=torch.Generator().manual_seed(3))
    names = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern", "blocks.1.hook_mlp_out"]
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(x)
        lab_logits, lab_cache = model.run_with_cache(x, names_filter=names)
    assert (logits - lab_logits).abs().max() <= TOL
    for name in names:
        assert (cache[name] - lab_cache[name]).abs().max() <= TOL, name


@pytest.mark.parametrize(("knobs", "message"), [
    ({"pos": "alibi"}, "pos='alibi' is not valid; allowed: for to_hf, 'absolute' (GPT2LMHeadModel) or 'rotary'"),
    ({"pos": "relative"}, "pos='relative' is not valid"),
    ({"pos": "none"}, "pos='none' is not valid"),
    ({"attention": "position"}, "attention='position' is not valid; allowed: 'softmax'"),
    ({"attention": "uniform", "pos": "none"}, "attention='uniform' is not valid; allowed: 'softmax'"),
    ({"moe_experts": 2}, "moe_experts=2 is not valid; allowed: 0"),
    ({"mlp": "none"}, "mlp='none' is not valid; allowed: 'gelu' for to_hf with pos='absolute'"),
    ({"mlp": "gated"}, "mlp='gated' is not valid; allowed: 'gelu' for to_hf with pos='absolute'"),
    ({"norm": "rmsnorm"}, "norm='rmsnorm' is not valid; allowed: 'layernorm'"),
    ({**LLAMA, "mlp": "gelu"}, "mlp='gelu' is not valid; allowed: 'gated' for to_hf with pos='rotary'"),
    ({**LLAMA, "norm": "layernorm"}, "norm='layernorm' is not valid; allowed: 'rmsnorm'"),
])
def test_unsupported_knobs(tmp_path, knobs, message):
    model = Transformer(cfg(**knobs), seed=0)
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as err:
        to_hf(model)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not valid"):
        save_pretrained(model, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_not_a_lab_model():
    with pytest.raises(ValueError, match="^model='Linear' is not valid; allowed: a labkit.model.Transformer$"):
        to_hf(torch.nn.Linear(2, 2))


def test_imports_lazily():
    code = ("import sys, labkit, labkit.interop; "
            "assert not {'transformers', 'transformer_lens'} & set(sys.modules), 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
