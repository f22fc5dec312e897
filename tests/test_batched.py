"""Tests of labkit.batched and the faster sweep executors: batched training must *be* separate training.

Every claim is checked against ``labkit.train.train`` itself: three models trained together (other
initial weights, learning rates, seeds, data, clipping) end where the three separate runs end, up to
float rounding; the direct engine's forward equals ``Transformer.forward`` for every knob it covers;
the sweep executors store the same records as the serial one.
"""

from __future__ import annotations

import os

import pytest
import torch
from conftest import biographies, library

from labkit.batched import (
    BatchableRun,
    RunSetup,
    StackedParams,
    direct_logits,
    direct_supported,
    resolve_engine,
    train_batched,
    vmap_logits,
)
from labkit.measure import bits_learned
from labkit.model import Transformer, tiny
from labkit.sweep import _plan, auto_executor, batched_executor, process_executor, run_sweep
from labkit.train import TrainConfig, lr_at, train

# Adam amplifies float rounding: the *same* separate run computed with two loss implementations that
# agree in exact arithmetic (labkit.loss vs F.cross_entropy; gradients equal to 2e-7) ends 1.3e-4 apart
# after these 36 steps at lr 2e-2. A wrong batched step (other data, lr, clipping) is off by 1e-2 or more.
RTOL = 5e-4


def assert_close_models(a: torch.nn.Module, b: torch.nn.Module, rtol: float = RTOL) -> None:
    """Every parameter equal up to rtol relative to the tensor's largest entry."""
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        scale = float(pa.detach().abs().max()) or 1.0
        err = float((pa.detach() - pb.detach()).abs().max()) / scale
        assert err < rtol, f"{name}: relative difference {err:.2e}"


def separate_and_batched(datasets, cfg, lrs, seeds, inits, engine="auto", **kwargs):
    """Train copies of the same initial models once separately (train) and once together."""
    common = dict(progress=False, device="cpu")
    configs = [TrainConfig(lr=lr, seed=s, **{k: (v[i] if isinstance(v, list) else v) for k, v in kwargs.items()})
               for i, (lr, s) in enumerate(zip(lrs, seeds, strict=True))]
    separate = [Transformer(cfg, seed=i) for i in inits]
    histories = [train(m, d, c, **common) for m, d, c in zip(separate, datasets, configs, strict=True)]
    together = [Transformer(cfg, seed=i) for i in inits]
    batched = train_batched(together, datasets, configs, engine=engine, **common)
    return separate, histories, together, batched


def test_batched_training_equals_three_separate_trainings():
    datasets = [library(20, seed=s) for s in (0, 1, 2)]  # same shape, other data
    cfg = tiny(datasets[0].vocab_size, max_len=16, d_model=16)
    lrs, seeds = [1e-2, 5e-3, 2e-2], [3, 4, 5]
    separate, hs, together, hb = separate_and_batched(datasets, cfg, lrs, seeds, inits=(0, 1, 2),
                                                      exposures=12, batch_size=8)  # 3 steps each: 36 steps
    for a, b, h_sep, h_bat, lr, data in zip(separate, together, hs, hb, lrs, datasets, strict=True):
        assert_close_models(a, b)
        assert h_bat.steps == h_sep.steps and h_bat.tokens == h_sep.tokens
        assert h_bat.total_steps == h_sep.total_steps == 36 and h_bat.tokens_seen == h_sep.tokens_seen
        assert h_bat.lrs == pytest.approx(h_sep.lrs, rel=1e-12)  # the model's own lr and schedule
        assert h_bat.lrs[-1] == pytest.approx(lr_at(35, 36, lr, 0.02, 0.1))
        assert h_bat.losses == pytest.approx(h_sep.losses, rel=RTOL)
        assert h_bat.final_loss == pytest.approx(h_sep.final_loss, rel=RTOL)
        bits_sep, bits_bat = bits_learned(a, data, device="cpu"), bits_learned(b, data, device="cpu")
        assert bits_bat.bits == pytest.approx(bits_sep.bits, rel=1e-3, abs=0.5)
    assert h_sep.losses[-1] < 0.7 * h_sep.losses[0]  # it did learn something
    assert not torch.allclose(together[0].embed.weight, together[1].embed.weight)


def test_records_of_different_lengths_and_per_model_clipping_and_decay():
    data = biographies()  # fresh renderings: other lengths per exposure, padding and trimming
    cfg = tiny(data.vocab_size, max_len=80, d_model=16, n_layer=1)
    clips, decays = [0.05, None, 1.0], [0.0, 0.1, 0.05]  # a tight clip that is active on every step
    separate, hs, together, hb = separate_and_batched(
        [data] * 3, cfg, [1e-2] * 3, [0, 1, 2], inits=(0, 0, 0), exposures=4, batch_size=8, grad_clip=clips,
        weight_decay=decays)
    for a, b, h_sep, h_bat in zip(separate, together, hs, hb, strict=True):
        assert_close_models(a, b)
        assert h_bat.losses == pytest.approx(h_sep.losses, rel=RTOL)
        assert h_bat.tokens_seen == h_sep.tokens_seen
    unclipped = Transformer(cfg, seed=0)
    train(unclipped, data, exposures=4, batch_size=8, lr=1e-2, seed=0, grad_clip=None, weight_decay=0.0,
          progress=False, device="cpu")
    assert not torch.allclose(unclipped.embed.weight, together[0].embed.weight, rtol=1e-3)  # clipping did act


def test_frozen_parameters_stay_frozen():
    data = library(16)
    cfg = tiny(data.vocab_size, max_len=16, d_model=16, n_layer=1)
    models = {kind: [Transformer(cfg, seed=s) for s in (0, 1)] for kind in ("separate", "batched")}
    for model in models["separate"] + models["batched"]:
        model.blocks[0].attn.requires_grad_(False)
    frozen = models["batched"][0].blocks[0].attn.qkv.weight.detach().clone()
    for model, seed in zip(models["separate"], (0, 1), strict=True):
        train(model, data, exposures=3, batch_size=8, seed=seed, progress=False, device="cpu")
    train_batched(models["batched"], data, [TrainConfig(exposures=3, batch_size=8, seed=s) for s in (0, 1)],
                  progress=False, device="cpu")
    assert torch.equal(models["batched"][0].blocks[0].attn.qkv.weight, frozen)
    for a, b in zip(models["separate"], models["batched"], strict=True):
        assert_close_models(a, b)


def perturbed(cfg, seed: int) -> Transformer:
    """A model whose norm gains, biases and positional logits are not at their initial 1 / 0."""
    model = Transformer(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("knobs, engine", [
    (dict(), "direct"),
    (dict(pos="rotary", mlp="gated", norm="rmsnorm"), "direct"),
    (dict(bias=True, tie_embeddings=False, n_head=4), "direct"),
    (dict(pos="none", mlp="none", n_layer=1), "direct"),
    (dict(pos="alibi"), "vmap"),
    (dict(pos="relative", bias=True), "vmap"),
    (dict(attention="uniform", n_head=3, d_model=12), "vmap"),
])
def test_stacked_forward_equals_the_model(knobs, engine):
    cfg = tiny(30, max_len=12, **{"d_model": 16, **knobs})
    models = [perturbed(cfg, s) for s in (0, 1)]
    tokens = torch.randint(0, 30, (2, 5, 12), generator=torch.Generator().manual_seed(0))
    stack = StackedParams(models, torch.device("cpu"))
    assert resolve_engine(cfg) == engine and direct_supported(cfg) == (engine == "direct")
    logits = (direct_logits if engine == "direct" else vmap_logits)(models[0], stack.params, tokens)
    for m, model in enumerate(models):
        torch.testing.assert_close(logits[m], model(tokens[m]), rtol=1e-5, atol=1e-5)


def test_vmap_engine_trains_like_train():
    data = library(16)
    cfg = tiny(data.vocab_size, max_len=16, d_model=16, n_layer=1, pos="alibi")
    separate, hs, together, hb = separate_and_batched([data] * 2, cfg, [1e-2, 2e-2], [0, 1], inits=(0, 1),
                                                      exposures=3, batch_size=8, engine="vmap")
    for a, b, h_sep, h_bat in zip(separate, together, hs, hb, strict=True):
        assert_close_models(a, b)
        assert h_bat.losses == pytest.approx(h_sep.losses, rel=RTOL)


def test_invalid_batches_are_refused():
    data = library(8)
    cfg = tiny(data.vocab_size, max_len=16, d_model=16)
    with pytest.raises(ValueError, match="MoE"):
        train_batched([Transformer(tiny(data.vocab_size, 16, d_model=16, moe_experts=2))], data, progress=False)
    with pytest.raises(ValueError, match="different ModelConfigs"):
        train_batched([Transformer(cfg), Transformer(tiny(data.vocab_size, 16, d_model=8))], data, progress=False)
    with pytest.raises(ValueError, match="n_items"):
        train_batched([Transformer(cfg), Transformer(cfg)], [data, library(9)], progress=False)
    with pytest.raises(ValueError, match="one per model"):
        train_batched([Transformer(cfg), Transformer(cfg)], data, [TrainConfig(lr=v) for v in (1e-3, 2e-3, 3e-3)],
                      progress=False)
    with pytest.raises(ValueError, match="exposures=3 differs"):
        train_batched([Transformer(cfg), Transformer(cfg)], data, [TrainConfig(exposures=e) for e in (2, 3)],
                      progress=False)
    with pytest.raises(ValueError, match="engine='direct'"):
        train_batched([Transformer(tiny(data.vocab_size, 16, d_model=16, pos="alibi"))], data, engine="direct")


# --------------------------------------------------------------------------------------------------
# Sweep executors
# --------------------------------------------------------------------------------------------------


class TinyRun(BatchableRun):
    """A batchable sweep run: a tiny model memorising a small library (module level: workers import it)."""

    def __init__(self) -> None:
        self.batches: list[int] = []  # sizes of the run_many calls made in this process

    def setup(self, config: dict) -> RunSetup:
        data = library(16, seed=config["seed"])
        model = Transformer(tiny(data.vocab_size, max_len=16, d_model=config["d_model"], n_layer=1),
                            seed=config["seed"])
        recipe = TrainConfig(exposures=config.get("exposures", 3), batch_size=8, lr=config["lr"], seed=config["seed"])
        return RunSetup(model, data, recipe)

    def finish(self, config: dict, setup: RunSetup, history) -> dict:
        return {"final_loss": history.final_loss, "losses": history.losses, "pid": os.getpid()}

    def run_many(self, configs):
        self.batches.append(len(configs))
        return super().run_many(configs)


GRID = [{"d_model": d, "seed": s, "lr": 1e-2 * (1 + s)} for d in (8, 16) for s in (0, 1, 2)]


def assert_same_results(records, reference):
    assert [r["config"] for r in records] == [r["config"] for r in reference]
    for r, ref in zip(records, reference, strict=True):
        assert r["result"]["losses"] == pytest.approx(ref["result"]["losses"], rel=RTOL)


def test_batched_executor_groups_by_shape_and_stores_what_serial_stores(tmp_path):
    serial = run_sweep(GRID, TinyRun(), tmp_path / "serial", progress=False, executor="serial").records
    run = TinyRun()
    report = run_sweep(GRID, run, tmp_path / "batched", progress=False, executor=batched_executor(max_batch=2))
    assert run.batches == [2, 2]  # per shape: 3 seeds → a batch of 2 (run_many) and a single run
    assert_same_results(report.records, serial)
    assert sorted(p.name for p in (tmp_path / "batched").iterdir()) == sorted(
        p.name for p in (tmp_path / "serial").iterdir())
    again = run_sweep(GRID, run, tmp_path / "batched", progress=False, executor="auto")  # all cached
    assert again.ran == 0 and again.records == report.records


def test_plan_groups_splits_for_workers_and_leaves_unbatchable_runs_single():
    run_one = type("RunOne", (), {"run_fn": TinyRun()})()
    assert _plan(GRID, run_one, True, 8) == [GRID[:3], GRID[3:]]
    assert _plan(GRID[:3], run_one, True, 8, units=2) == [GRID[:1], GRID[1:3]]
    assert _plan(GRID, run_one, False, 8) == [[c] for c in GRID]
    assert _plan(GRID, type("Plain", (), {"run_fn": print})(), True, 8) == [[c] for c in GRID]
    assert _plan([], run_one, True, 8, units=2) == []


def test_runs_that_cannot_batch_have_no_shape_key():
    config = GRID[0]
    assert TinyRun().shape_key(config) == TinyRun().shape_key({**config, "seed": 1, "lr": 0.5})
    assert TinyRun().shape_key(config) != TinyRun().shape_key({**config, "d_model": 16})
    assert TinyRun().shape_key(config) != TinyRun().shape_key({**config, "exposures": 4})  # shared recipe differs
    moe = type("MoERun", (TinyRun,), {"setup": lambda self, c: RunSetup(
        Transformer(tiny(20, 16, d_model=8, moe_experts=2)), library(16))})()
    assert moe.shape_key(config) is None


def test_process_executor_runs_units_in_worker_processes(tmp_path):
    grid = GRID[:2] + GRID[3:5]  # two shapes × two seeds
    serial = run_sweep(grid, TinyRun(), tmp_path / "serial", progress=False, executor="serial").records
    report = run_sweep(grid, TinyRun(), tmp_path / "pool", progress=False, executor=process_executor(workers=2))
    assert_same_results(report.records, serial)
    assert {r["result"]["pid"] for r in report.records}.isdisjoint({os.getpid()})


def test_auto_executor_keeps_unshippable_run_functions_in_this_process(tmp_path):
    def run(config: dict) -> dict:  # a closure cannot be sent to another process
        return {"x": config["x"] * 2, "pid": os.getpid()}

    records = run_sweep([{"x": 1}, {"x": 2}], run, tmp_path, progress=False, executor=auto_executor(workers=2)).records
    assert [r["result"] for r in records] == [{"x": 2, "pid": os.getpid()}, {"x": 4, "pid": os.getpid()}]
    with pytest.raises(ValueError, match="executor="):
        run_sweep([{"x": 3}], run, tmp_path, progress=False, executor="threads")
