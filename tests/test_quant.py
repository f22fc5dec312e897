"""Tests of labkit.quant: each one fails if quantization is wrong in the way its name says."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import raises_invalid

from labkit.model import ModelConfig, Transformer, count_params
from labkit.quant import gptq_tensor, quantize, quantize_tensor, storage_bits

V, T = 23, 16
INT_SCHEMES = {"int8": 8, "int6": 6, "int5": 5, "int4": 4, "int3": 3}


def cfg(**kw) -> ModelConfig:
    return ModelConfig(**{"vocab_size": V, "max_len": T, "d_model": 32, "n_head": 2, "n_layer": 2, **kw})


def records(n: int, seed: int) -> torch.Tensor:
    """Arithmetic sequences mod V with a random start and step: learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    start, step = torch.randint(0, V, (n, 1), generator=g), torch.randint(1, 4, (n, 1), generator=g)
    return (start + step * torch.arange(T)) % V


def heavy(rows: int, columns: int, seed: int = 0) -> torch.Tensor:
    """Weights whose rows differ in scale and have outliers, as trained weights do."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, columns, generator=g) * torch.randn(rows, 1, generator=g).exp() * (
        1 + 4 * (torch.rand(rows, columns, generator=g) < 0.02))


def per_element(t: torch.Tensor, columns: int) -> torch.Tensor:
    """(rows, groups) -> (rows, columns): each group's value repeated over its columns."""
    return t.repeat_interleave(columns // t.shape[1], dim=1)


def linear_names(model: Transformer) -> set[str]:
    return {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def linear_inputs(model: Transformer, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The inputs every ``nn.Linear`` of ``model`` receives on ``tokens``, flattened to (n, in_features)."""
    found: dict[str, torch.Tensor] = {}

    def grab(module: torch.nn.Module, args: tuple) -> None:
        found[names[module]] = args[0].detach().reshape(-1, args[0].shape[-1])

    names = {module: name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    handles = [module.register_forward_pre_hook(grab) for module in names]
    with torch.no_grad():
        model(tokens)
    for handle in handles:
        handle.remove()
    return found


@pytest.fixture(scope="module")
def trained() -> Transformer:
    """A tiny model after 40 AdamW steps (loss well below ln V), so quantization has something to lose."""
    model = Transformer(cfg(), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(40):
        x = records(32, seed=step)
        loss = model.loss(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * math.log(V)
    return model


# --- one tensor ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [8, 4, 3])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group_size", [None, 8])
@pytest.mark.parametrize("scale_bits", [16, 32])
def test_error_is_at_most_half_a_scale_per_element(bits, symmetric, group_size, scale_bits):
    w = heavy(6, 32)
    deq, scales, zeros = quantize_tensor(w, bits, group_size, symmetric, scale_bits=scale_bits)
    assert deq.shape == w.shape and deq.dtype == torch.float32
    assert scales.shape == (6, 32 // (group_size or 32)) and (zeros is None) == symmetric
    assert ((deq - w).abs() <= per_element(scales, 32) / 2 * (1 + 1e-6)).all()
    if scale_bits == 16:  # scales are float16 numbers
        assert torch.equal(scales.half().float(), scales)


@pytest.mark.parametrize("bits", [8, 4, 3])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group_size", [None, 64])
def test_values_lie_on_the_grid_with_at_most_2_to_the_b_levels(bits, symmetric, group_size):
    w = heavy(3, 256, seed=1)
    deq, scales, zeros = quantize_tensor(w, bits, group_size, symmetric)
    s = per_element(scales, 256)
    q = deq / s + (0 if symmetric else per_element(zeros, 256))
    assert torch.allclose(q, q.round(), atol=1e-3)
    low, high = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    assert low <= q.round().min() and q.round().max() <= high
    levels = 2**bits - 1 if symmetric else 2**bits
    g = group_size or 256
    for group in deq.reshape(3, 256 // g, g).flatten(0, 1):
        assert len(group.unique()) <= levels
    if not symmetric:  # zero points are b-bit integers
        assert torch.equal(zeros, zeros.round()) and zeros.min() >= 0 and zeros.max() <= 2**bits - 1


def test_per_channel_scales_on_a_hand_built_matrix():
    w = torch.tensor([[127.0, -3.0, 0.4, 64.0], [2.0, -1.0, 0.0, 0.25], [-0.5, 0.25, 0.125, 0.0]])
    deq, scales, zeros = quantize_tensor(w, 8, scale_bits=32)
    assert zeros is None
    scales = scales[:, 0]  # (rows, 1): one group per row
    torch.testing.assert_close(scales, torch.tensor([127.0, 2.0, 0.5]) / 127, rtol=2e-7, atol=0)
    assert torch.equal(deq[0], torch.tensor([127.0, -3.0, 0.0, 64.0]))  # scale 1: plain rounding
    assert torch.equal((deq[:, 0] / scales).round().abs(), torch.full((3,), 127.0))  # a row's largest: last level
    scales16 = quantize_tensor(w, 8)[1][:, 0]  # float16 scales: rounded up, by less than one float16 step
    assert scales16[0] == 1 and (scales16 >= scales).all() and (scales16 <= scales * (1 + 2**-10)).all()
    _, s, z = quantize_tensor(torch.tensor([[-1.0, 0.0, 3.0], [1.0, 2.0, 4.0]]), 8, symmetric=False, scale_bits=32)
    torch.testing.assert_close(s[:, 0], torch.tensor([4.0, 4.0]) / 255, rtol=2e-7, atol=0)
    assert z[:, 0].tolist() == [64, 0]  # round(255 / 4); an all-positive row's range is widened to 0


@pytest.mark.parametrize("bits", [8, 4, 3])
@pytest.mark.parametrize("symmetric", [True, False])
def test_zero_rows_and_groups_give_zeros_not_nan(bits, symmetric):
    w = heavy(3, 16)
    w[1] = 0
    w[2, :8] = 0
    for group_size in (None, 8):
        deq, scales, _ = quantize_tensor(w, bits, group_size, symmetric)
        assert torch.isfinite(deq).all() and torch.isfinite(scales).all()
        assert (deq[1] == 0).all() and (deq[2, :8] == 0).all() and (scales[1] == 0).all()
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    deq = gptq_tensor(w, x, bits, 8, symmetric)[0]
    assert torch.isfinite(deq).all() and (deq[1] == 0).all()


def test_storage_bits_arithmetic():
    n = 64 * 128
    assert storage_bits((64, 128), 4, 32) / n == 4 + 16 / 32 == 4.5
    assert storage_bits((64, 128), 4, 32, symmetric=False) / n == 4 + (16 + 4) / 32
    assert storage_bits((64, 128), 8) / n == 8 + 16 / 128  # one scale per output channel
    assert storage_bits((64, 128), 4, 32, scale_bits=32) / n == 5
    assert storage_bits(torch.Size([3, 8]), 3, 4, False) == 3 * 8 * 3 + 3 * 2 * (16 + 3)


# --- GPTQ ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,group_size", [(8, None), (4, None), (4, 16), (3, 8)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_gptq_output_error_is_at_most_rtn_on_a_random_layer(bits, group_size, symmetric):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g) @ torch.randn(32, 32, generator=g)  # correlated inputs
    w = torch.randn(16, 32, generator=g)
    rtn = quantize_tensor(w, bits, group_size, symmetric)[0]
    gptq, scales, zeros = gptq_tensor(w, x, bits, group_size, symmetric)
    assert (x @ (w - gptq).T).norm() < 0.9 * (x @ (w - rtn).T).norm()
    q = gptq / per_element(scales, 32) + (0 if symmetric else per_element(zeros, 32))  # on its grid too
    assert torch.allclose(q, q.round(), atol=1e-3)
    assert q.round().abs().max() <= (2 ** (bits - 1) - 1 if symmetric else 2**bits - 1)


@pytest.mark.parametrize("scheme,group_size", [("int4", None), ("int4", "auto"), ("int3", "auto")])
def test_gptq_output_error_is_at_most_rtn_on_a_lab_transformer(trained, scheme, group_size):
    calibration = records(48, seed=1000)
    rtn = quantize(trained, scheme, group_size=group_size)
    gptq = quantize(trained, scheme, group_size=group_size, method="gptq", calibration=calibration)
    inputs = linear_inputs(trained, calibration)  # the fp32 model's layer inputs
    assert len(inputs) == 8

    def layer_error(model: Transformer) -> float:
        return sum((x @ (model.get_parameter(f"{n}.weight") - trained.get_parameter(f"{n}.weight")).T).square().sum()
                   for n, x in inputs.items()).item()

    assert layer_error(gptq) < layer_error(rtn)
    with torch.no_grad():
        ref = trained(calibration)
        assert (gptq(calibration) - ref).norm() < (rtn(calibration) - ref).norm()


def test_gptq_reaches_every_layer_of_other_architectures():
    calibration = records(32, seed=7)
    for kw in ({"tie_embeddings": False, "bias": True}, {"moe_experts": 3, "moe_top_k": 2}, {"attention": "position"},
               {"mlp": "gated", "norm": "rmsnorm", "pos": "rotary"}):
        model = Transformer(cfg(**kw), seed=0)
        rtn = quantize(model, "int4", embeddings=True)
        gptq, report = quantize(model, "int4", method="gptq", calibration=calibration, embeddings=True,
                                return_report=True)
        with torch.no_grad():
            assert torch.isfinite(gptq(calibration)).all(), kw
        assert report.quantized_params + report.kept_params == count_params(model).total, kw
        assert linear_names(model) < set(dict(report.group_sizes))  # and the tables
        for name in linear_names(model):  # GPTQ saw inputs for every Linear (the unembedding too)
            assert not torch.equal(gptq.get_parameter(name), rtn.get_parameter(name)), (kw, name)


# --- a model -------------------------------------------------------------------------------------------
def test_input_model_is_unchanged_and_the_copy_shares_nothing(trained):
    before = {n: p.clone() for n, p in trained.named_parameters()}
    for scheme, method in (("int4", "gptq"), ("int8", "rtn"), ("fp16", "rtn"), ("fp32", "rtn")):
        out = quantize(trained, scheme, method=method, calibration=records(8, 1), embeddings=True)
        assert out is not trained
        assert all(torch.equal(p, before[n]) for n, p in trained.named_parameters()), scheme
        assert not {p.data_ptr() for p in out.parameters()} & {p.data_ptr() for p in trained.parameters()}
        assert all(p.dtype == torch.float32 for p in out.parameters())
    assert all(torch.equal(a, b) for a, b in zip(quantize(trained, "fp32").parameters(), trained.parameters(),
                                                 strict=True))


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_float_casts_equal_rounding_to_that_dtype(dtype):
    model = Transformer(cfg(tie_embeddings=False, bias=True), seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))  # norms too
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    out, report = quantize(model, dtype, return_report=True)
    for (name, p), q in zip(model.named_parameters(), out.parameters(), strict=True):
        assert torch.equal(q, p.to(torch_dtype).float()), name
    assert report.bits_per_param == report.bits_per_quantized_param == 16 and report.kept_params == 0
    assert quantize(model, "fp32", return_report=True)[1].bits_per_param == 32


@pytest.mark.parametrize("scheme", ["int8", "int4", "int3", "bf16", "fp16"])
@pytest.mark.parametrize("embeddings", [False, True])
def test_quantizing_twice_changes_nothing(trained, scheme, embeddings):
    for group_size in ("auto", None):
        once = quantize(trained, scheme, group_size=group_size, embeddings=embeddings)
        twice = quantize(once, scheme, group_size=group_size, embeddings=embeddings)
        for (name, a), b in zip(once.named_parameters(), twice.parameters(), strict=True):
            assert (a - b).abs().max() <= 1e-6, (name, group_size)


def test_only_linear_weights_are_quantized_by_default(trained):
    out = quantize(trained, "int3")
    linears = linear_names(trained)
    for name, p in trained.named_parameters():
        assert torch.equal(out.get_parameter(name), p) == (name not in linears), name
    with_tables = quantize(trained, "int3", embeddings=True)
    assert not torch.equal(with_tables.embed.weight, trained.embed.weight)
    assert len(with_tables.embed.weight[0].unique()) <= 7  # per row: one token's vector
    assert torch.equal(with_tables.blocks[0].ln1.weight, trained.blocks[0].ln1.weight)  # norms stay fp32


@pytest.mark.parametrize("tie_embeddings", [True, False])
@pytest.mark.parametrize("embeddings", [False, True])
def test_report_counts_add_up_to_the_parameter_count(tie_embeddings, embeddings):
    model = Transformer(cfg(tie_embeddings=tie_embeddings, bias=True), seed=0)
    out, report = quantize(model, "int4", embeddings=embeddings, return_report=True)
    counts = count_params(model)
    assert report.quantized_params + report.kept_params == report.total_params == counts.total
    linear = sum(model.get_parameter(name).numel() for name in linear_names(model))
    biases = sum(m.bias.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m.bias is not None)
    assert linear == counts.attention + counts.mlp + counts.unembedding - biases
    tables = counts.embedding + counts.position
    assert report.quantized_params == linear + (tables if embeddings else 0)
    assert dict(report.group_sizes).get("blocks.0.mlp.proj.weight") == 32  # "auto": 32 divides 128
    tables_bits = storage_bits((V, 32), 4) + storage_bits((T, 32), 4) if embeddings else 0
    assert report.storage_bits == 4.5 * linear + tables_bits + 32 * report.kept_params
    assert report.bits_per_param == report.storage_bits / counts.total
    if not embeddings:  # every quantized weight: 4 bits + a 16-bit scale per 32 columns
        assert report.bits_per_quantized_param == 4.5
    row = report.as_dict()
    assert row["scheme"] == "int4" and row["method"] == "rtn" and "group_sizes" not in row


def test_group_size_defaults_and_divisibility():
    model = Transformer(cfg(d_model=24), seed=0)  # in_features 24 (qkv, out, fc) and 96 (proj)
    groups = dict(quantize(model, "int4", return_report=True)[1].group_sizes)
    assert groups["blocks.0.attn.qkv.weight"] is None and groups["blocks.0.mlp.proj.weight"] == 32
    assert set(dict(quantize(model, "int8", return_report=True)[1].group_sizes).values()) == {None}
    assert set(dict(quantize(model, "int3", group_size=8, return_report=True)[1].group_sizes).values()) == {8}
    with raises_invalid("group_size=16 is not valid; allowed: 'auto', None (per output channel) or a divisor"):
        quantize(model, "int4", group_size=16)


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_int8_loss_is_within_2_percent_of_fp32(trained, method):
    x = records(64, seed=999)
    quantized = quantize(trained, "int8", method=method, calibration=records(32, seed=1000))
    with torch.no_grad():
        ref, loss = trained.loss(x[:, :-1], x[:, 1:]), quantized.loss(x[:, :-1], x[:, 1:])
        assert quantized(x).shape == (64, T, V)
    assert abs(loss - ref) / ref < 0.02


# --- bad arguments ---------------------------------------------------------------------------------------
def _bad_calls():
    m, w = Transformer(cfg(), seed=0), heavy(4, 32)
    ids = records(4, 0)
    return {
        "scheme": lambda: quantize(m, "int2"),
        "method": lambda: quantize(m, "int4", method="awq"),
        "group_size": lambda: quantize(m, "int4", group_size=5),
        "group_size=0": lambda: quantize(m, "int4", group_size=0),
        "group_size='big'": lambda: quantize(m, "int4", group_size="big"),
        "symmetric": lambda: quantize(m, "int4", symmetric="yes"),
        "embeddings": lambda: quantize(m, "int4", embeddings=1),
        "return_report": lambda: quantize(m, "int4", return_report=None),
        "calibration=None": lambda: quantize(m, "int4", method="gptq"),
        "calibration='a torch.float32": lambda: quantize(m, "int4", method="gptq", calibration=ids.float()),
        "calibration='a tensor of shape (16,)": lambda: quantize(m, "int4", method="gptq", calibration=ids[0]),
        "calibration='a tensor of shape (4, 17)": lambda: quantize(m, "int4", method="gptq",
                                                                   calibration=torch.zeros(4, T + 1, dtype=torch.long)),
        "calibration='ids in [23": lambda: quantize(m, "int4", method="gptq", calibration=ids - ids.min() + V),
        "calibration='ids in [-1": lambda: quantize(m, "int4", calibration=ids - 1 - ids.min()),
        "damp": lambda: quantize(m, "int4", method="gptq", calibration=ids, damp=0),
        "scale_bits": lambda: quantize(m, "int4", scale_bits=8),
        "bits=1": lambda: quantize_tensor(w, 1),
        "bits=9": lambda: quantize_tensor(w, 9),
        "bits=4.0": lambda: quantize_tensor(w, 4.0),
        "w=(32,)": lambda: quantize_tensor(w[0], 4),
        "w='a tensor with inf or nan'": lambda: quantize_tensor(w / 0 * 0, 4),
        "group_size=5": lambda: quantize_tensor(w, 4, 5),
        "shape": lambda: storage_bits((32,), 4),
        "group_size=3": lambda: storage_bits((4, 32), 4, 3),
        "inputs": lambda: gptq_tensor(w, torch.randn(10, 31), 4),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_every_bad_argument_names_itself_and_what_is_allowed(case):
    name = case.split("=")[0]
    with raises_invalid(case if "=" in case else f"{name}=") as err:
        _bad_calls()[case]()
    assert "is not valid; allowed:" in str(err.value) and "\n" not in str(err.value)
