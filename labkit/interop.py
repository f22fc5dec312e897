"""Export the lab's model to Hugging Face ``transformers``, so that the outside world's tools can read it.

Why: interpretability libraries, generation utilities and model viewers expect a ``transformers`` model.
Two of the lab's architectures *are* standard ones, so they map weight for weight, with no approximation:

- GPT-2 (``GPT2LMHeadModel``): ``pos="absolute"``, ``mlp="gelu"``, ``norm="layernorm"``, softmax attention.
  GPT-2's ``Conv1D`` stores weights as (in, out), the transpose of ``nn.Linear``; the lab's fused
  ``qkv`` has GPT-2's ``c_attn`` layout ([q, k, v], heads contiguous within each), so a transpose is the
  whole mapping. The lab's MLP uses the exact (erf) GELU, hence ``activation_function="gelu"`` and not
  GPT-2's default ``"gelu_new"`` (tanh approximation), which differs by up to ~1e-3 per activation.
- LLaMA (``LlamaForCausalLM``): ``pos="rotary"``, ``mlp="gated"``, ``norm="rmsnorm"``. The lab rotates the
  half-split pairs (x_k, x_{k + D/2}) (GPT-NeoX layout), which is exactly ``rotate_half`` of HF's LLaMA, so
  q and k rows need no permutation. The lab's ``fc`` holds [gate, up]; its halves become ``gate_proj`` and
  ``up_proj``.

Both keep ``bias`` (GPT-2 always has biases: zeros where the lab has none; LLaMA's ``attention_bias`` and
``mlp_bias``) and tied or untied embeddings. Every other knob (relative / ALiBi / no positions, position or
uniform attention, MoE, attention-only blocks, mixed norms or MLPs) has no standard HF class with the same
function, and raises a one-line ``ValueError`` rather than exporting something that computes another thing.

Epsilons are read from the lab's norm modules, not restated, so the export follows the model if they
change. Configs are built in code: nothing is ever fetched from a hub. ``transformers`` (and
``transformer_lens``) are imported inside the functions, so ``import labkit.interop`` stays light and works
without them.

TransformerLens: ``to_transformer_lens`` wraps the export in TransformerLens 4's ``TransformerBridge``, offline
(from a folder ``save_pretrained`` wrote, with the model passed in, so no hub lookup). The bridge keeps the
HF weights as they are (no LayerNorm folding), so its logits and its ``blocks.{L}.hook_*`` activations are the
lab model's; the lab's own hooks already follow TransformerLens's names, so the bridge is for code that
needs TransformerLens itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from labkit.checks import invalid
from labkit.model import Transformer
from labkit.tokenizer import Vocabulary

if TYPE_CHECKING:  # pragma: no cover - typing only; both are imported lazily
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = ["hf_class_name", "hf_tokenizer", "save_pretrained", "to_hf", "to_transformer_lens"]

_SUPPORTED = "'absolute' (GPT2LMHeadModel) or 'rotary' with mlp='gated' and norm='rmsnorm' (LlamaForCausalLM)"


def hf_class_name(model: Transformer) -> str:
    """The ``transformers`` class ``to_hf`` builds for ``model``; ``ValueError`` naming the first knob with
    no exact HF counterpart. Checked before anything is imported, so a bad model fails fast and alike with
    or without ``transformers`` installed."""
    if not isinstance(model, Transformer):
        raise invalid("model", type(model).__name__, "a labkit.model.Transformer")
    cfg = model.cfg
    if cfg.attention != "softmax":
        raise invalid("attention", cfg.attention, "'softmax' for to_hf (HF models attend by q·k)")
    if cfg.moe_experts:
        raise invalid("moe_experts", cfg.moe_experts, "0 for to_hf (dense MLPs only)")
    if cfg.pos == "absolute":
        if cfg.mlp != "gelu":
            raise invalid("mlp", cfg.mlp, "'gelu' for to_hf with pos='absolute' (GPT2LMHeadModel)")
        if cfg.norm != "layernorm":
            raise invalid("norm", cfg.norm, "'layernorm' for to_hf with pos='absolute' (GPT2LMHeadModel)")
        return "GPT2LMHeadModel"
    if cfg.pos == "rotary":
        if cfg.mlp != "gated":
            raise invalid("mlp", cfg.mlp, "'gated' for to_hf with pos='rotary' (LlamaForCausalLM)")
        if cfg.norm != "rmsnorm":
            raise invalid("norm", cfg.norm, "'rmsnorm' for to_hf with pos='rotary' (LlamaForCausalLM)")
        return "LlamaForCausalLM"
    raise invalid("pos", cfg.pos, f"for to_hf, {_SUPPORTED}")


def _rms_eps(norm: nn.Module) -> float:
    """``nn.RMSNorm`` with ``eps=None`` uses the dtype's machine epsilon; HF needs a number."""
    eps = norm.eps
    return float(torch.finfo(norm.weight.dtype).eps if eps is None else eps)


def _t(w: torch.Tensor) -> torch.Tensor:
    """``nn.Linear`` (out, in) -> GPT-2 ``Conv1D`` (in, out)."""
    return w.t().contiguous()


def _bias(linear: nn.Linear | nn.LayerNorm, size: int) -> torch.Tensor:
    """The module's bias, or zeros (GPT-2 always has one; zero is what the lab's bias-free layer adds)."""
    b = linear.bias
    return torch.zeros(size) if b is None else b.detach().clone()


def _gpt2(model: Transformer) -> PreTrainedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.cfg
    d = cfg.d_model
    config = GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.max_len, n_embd=d, n_layer=cfg.n_layer, n_head=cfg.n_head,
        n_inner=cfg.d_mlp, activation_function="gelu",  # the lab's F.gelu is the exact (erf) GELU
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=float(model.ln_final.eps),
        scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
        tie_word_embeddings=cfg.tie_embeddings, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    sd: dict[str, torch.Tensor] = {
        "transformer.wte.weight": model.embed.weight,
        "transformer.wpe.weight": model.pos_embed.weight,
        "transformer.ln_f.weight": model.ln_final.weight,
        "transformer.ln_f.bias": _bias(model.ln_final, d),
        "lm_head.weight": model.unembedding_weight,
    }
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        attn, mlp = block.attn, block.mlp
        sd |= {
            p + "ln_1.weight": block.ln1.weight, p + "ln_1.bias": _bias(block.ln1, d),
            p + "attn.c_attn.weight": _t(attn.qkv.weight), p + "attn.c_attn.bias": _bias(attn.qkv, 3 * d),
            p + "attn.c_proj.weight": _t(attn.out.weight), p + "attn.c_proj.bias": _bias(attn.out, d),
            p + "ln_2.weight": block.ln2.weight, p + "ln_2.bias": _bias(block.ln2, d),
            p + "mlp.c_fc.weight": _t(mlp.fc.weight), p + "mlp.c_fc.bias": _bias(mlp.fc, cfg.d_mlp),
            p + "mlp.c_proj.weight": _t(mlp.proj.weight), p + "mlp.c_proj.bias": _bias(mlp.proj, d),
        }
    return _load(GPT2LMHeadModel(config), sd)


def _llama(model: Transformer) -> PreTrainedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = model.cfg
    config = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
        head_dim=cfg.d_head, hidden_act="silu", max_position_embeddings=cfg.max_len,
        rms_norm_eps=_rms_eps(model.ln_final), rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_base},
        attention_bias=cfg.bias, mlp_bias=cfg.bias, attention_dropout=0.0, tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    sd: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": model.embed.weight,
        "model.norm.weight": model.ln_final.weight,
        "lm_head.weight": model.unembedding_weight,
    }
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        attn, mlp = block.attn, block.mlp
        # q, k, v: the fused rows split in thirds; rotary needs no permutation (both are half-split)
        for name, w in zip(("q", "k", "v"), attn.qkv.weight.chunk(3, dim=0), strict=True):
            sd[p + f"self_attn.{name}_proj.weight"] = w
        gate, up = mlp.fc.weight.chunk(2, dim=0)
        sd |= {
            p + "input_layernorm.weight": block.ln1.weight,
            p + "self_attn.o_proj.weight": attn.out.weight,
            p + "post_attention_layernorm.weight": block.ln2.weight,
            p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up, p + "mlp.down_proj.weight": mlp.proj.weight,
        }
        if cfg.bias:
            for name, b in zip(("q", "k", "v"), attn.qkv.bias.chunk(3), strict=True):
                sd[p + f"self_attn.{name}_proj.bias"] = b
            gate_b, up_b = mlp.fc.bias.chunk(2)
            sd |= {p + "self_attn.o_proj.bias": attn.out.bias, p + "mlp.gate_proj.bias": gate_b,
                   p + "mlp.up_proj.bias": up_b, p + "mlp.down_proj.bias": mlp.proj.bias}
    return _load(LlamaForCausalLM(config), sd)


def _load(hf: PreTrainedModel, sd: dict[str, torch.Tensor]) -> PreTrainedModel:
    """Copy ``sd`` into ``hf`` strictly: every HF parameter must be set and nothing of ours left over, so
    a renamed HF weight fails here rather than silently keeping its random init."""
    expected = set(hf.state_dict())
    if set(sd) != expected:
        missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
        raise RuntimeError(f"to_hf: weight names do not match {type(hf).__name__}: missing {missing}, extra {extra}")
    with torch.no_grad():
        hf.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in sd.items()}, strict=True)
    if hf.config.tie_word_embeddings:
        hf.tie_weights()
    return hf.eval()


@torch.no_grad()
def to_hf(model: Transformer) -> PreTrainedModel:
    """A ``transformers`` model computing the same logits as ``model`` (a fresh copy of its weights, in eval
    mode, on ``model``'s device and dtype): ``GPT2LMHeadModel`` for the GPT-2 knobs, ``LlamaForCausalLM``
    for the LLaMA ones (see the module docstring). ``hf(tokens).logits`` equals ``model(tokens)``; inputs
    longer than ``max_len`` are not valid for either."""
    kind = hf_class_name(model)
    hf = _gpt2(model) if kind == "GPT2LMHeadModel" else _llama(model)
    p = next(model.parameters())
    return hf.to(device=p.device, dtype=p.dtype)


def hf_tokenizer(vocab_size: int, vocab: Vocabulary | None = None) -> PreTrainedTokenizerFast:
    """A word-level HF tokenizer with ``vocab_size`` ids: the lab's ``vocab`` (a ``labkit.tokenizer``
    vocabulary: same ids, words split on whitespace) or, without one, placeholder names ``t0``, ``t1``, ...

    Why: HF pipelines and TransformerLens load a tokenizer next to the weights, and the lab's tokenizers
    are not HF ones. Ids past ``len(vocab)`` (a model wider than its data) get placeholder names."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = list(vocab.tokens) if vocab is not None else []
    if len(tokens) > vocab_size:
        raise invalid("vocab", f"{len(tokens)} tokens", f"at most vocab_size={vocab_size} tokens")
    tokens += [f"t{i}" for i in range(len(tokens), vocab_size)]
    table = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(table, unk_token=tokens[0]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    special = {}
    if vocab is not None:  # the lab's ids: PAD = 0, BOS = 1, EOS = 2
        special = {"pad_token": vocab.token(vocab.pad_id), "bos_token": vocab.token(vocab.bos_id),
                   "eos_token": vocab.token(vocab.eos_id)}
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=tokens[0], **special)


def save_pretrained(model: Transformer, folder: str | Path, vocab: Vocabulary | None = None) -> Path:
    """Write ``to_hf(model)`` and ``hf_tokenizer(vocab_size, vocab)`` to ``folder`` (config.json, safetensors
    weights, tokenizer files), which ``AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)``
    and ``AutoTokenizer`` load offline; returns the folder."""
    return _write(to_hf(model), folder, vocab)  # to_hf checks the knobs before anything is written


def _write(hf: PreTrainedModel, folder: str | Path, vocab: Vocabulary | None) -> Path:
    folder = Path(folder)
    hf.save_pretrained(folder)
    hf_tokenizer(hf.config.vocab_size, vocab).save_pretrained(folder)
    return folder


def to_transformer_lens(model: Transformer, vocab: Vocabulary | None = None) -> TransformerBridge:
    """TransformerLens 4's ``TransformerBridge`` around ``to_hf(model)``, booted offline from a temporary
    ``save_pretrained`` folder (the bridge reads the config and tokenizer there and takes the weights from the
    exported model). Raw HF weights, no folding: ``bridge(tokens)`` equals ``model(tokens)``."""
    import tempfile

    from transformer_lens.model_bridge import TransformerBridge

    hf = to_hf(model)
    p = next(model.parameters())
    with tempfile.TemporaryDirectory(prefix="labkit-tl-") as folder:
        _write(hf, folder, vocab)
        return TransformerBridge.boot_transformers(folder, hf_model=hf, device=p.device, dtype=p.dtype)
