"""Tests of labkit.train: schedule, learning, determinism, bit-identical resume, atomic checkpoints.

Runs on the lab's real datasets (random sequences: static, equal lengths; bioS fresh mode: a new
rendering of different lengths at every exposure, so padding, trimming and mid-exposure resume are
exercised) and the real tiny transformer. Shared helpers (libraries, biographies, tiny models) live in conftest.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import biographies, library, tiny_model

from labkit.checkpoint import CheckpointError, load_weights, save_weights
from labkit.data.base import TokenBatch
from labkit.measure import recalled
from labkit.tokenizer import PAD_ID
from labkit.train import (
    TrainConfig,
    exposure_permutation,
    lr_at,
    moe_aux_loss,
    param_groups,
    record_lengths,
    shifted_targets,
    train,
)


class Recording:
    """A dataset wrapper that records which exposures the trainer asked for."""

    def __init__(self, dataset):
        self.dataset, self.calls = dataset, []

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def exposure(self, index: int) -> TokenBatch:
        self.calls.append(index)
        return self.dataset.exposure(index)






def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


FAST = dict(batch_size=8, lr=1e-2, progress=False, device="cpu")


def test_lr_schedule_warmup_then_cosine_to_min():
    total, lr = 100, 1e-2
    rates = [lr_at(s, total, lr, warmup=0.05, min_lr_ratio=0.1) for s in range(total)]
    assert rates[0] == pytest.approx(lr / 5) and rates[4] == pytest.approx(lr)  # 5 warmup steps
    assert max(rates) == pytest.approx(lr)
    assert rates[-1] == pytest.approx(0.1 * lr)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))  # monotone decay after warmup
    assert lr_at(0, 1, lr, warmup=0.0, min_lr_ratio=0.1) == pytest.approx(0.1 * lr)


def test_targets_lengths_and_permutations():
    batch = biographies().exposure(0)
    assert len(set((batch.tokens != PAD_ID).sum(1).tolist())) > 1  # the case that needs padding
    targets = shifted_targets(batch)
    assert torch.equal(targets[:, :-1][batch.loss_mask[:, 1:]], batch.tokens[:, 1:][batch.loss_mask[:, 1:]])
    assert (targets[:, :-1][~batch.loss_mask[:, 1:]] == -100).all() and (targets[:, -1] == -100).all()
    lengths = record_lengths(batch)
    assert torch.equal(lengths, (batch.tokens != PAD_ID).sum(1))  # up to the last non-pad token
    p0, p1 = exposure_permutation(3, 0, 12), exposure_permutation(3, 1, 12)
    assert sorted(p0.tolist()) == list(range(12)) and not torch.equal(p0, p1)
    assert torch.equal(p0, exposure_permutation(3, 0, 12))


def test_param_groups_decay_matrices_only_and_skip_frozen():
    model = tiny_model(library(4), norm="layernorm", bias=True)
    model.blocks[0].attn.requires_grad_(False)
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert any(p is model.embed.weight for p in decay["params"])
    frozen = {id(p) for p in model.blocks[0].attn.parameters()}
    assert not frozen & {id(p) for p in decay["params"] + no_decay["params"]}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == trainable


def test_a_tiny_model_memorises_20_items():
    data = Recording(library(20))
    model = tiny_model(data)
    history = train(model, data, exposures=60, **FAST)
    assert history.total_steps == math.ceil(20 / 8) * 60 == history.steps[-1]
    assert data.calls == list(range(60))  # one exposure() per exposure, in order
    assert history.steps_per_exposure == 3 and history.exposures[-1] == 60
    assert history.losses[-1] < 0.25 * history.losses[0]
    assert recalled(model, data, "value").all()  # every value recalled exactly: memorised
    assert history.tokens_seen == 60 * data.exposure(0).tokens.numel()  # no padding in this dataset
    assert len(history.losses) == len(history.steps) == len(history.lrs) == len(history.tokens)
    assert model.training  # the mode it had before training is restored


def test_same_seed_same_numbers_other_seed_other_numbers():
    data = library(10)
    runs = []
    for seed in (5, 5, 6):
        model = tiny_model(data, seed=0)
        history = train(model, data, exposures=4, seed=seed, **FAST)
        runs.append((history.losses, weights(model)))
    assert runs[0][0] == runs[1][0]
    assert_same_weights(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]  # the seed changes the data order


class Kill(Exception):
    pass


def _kill_at(step: int):
    def callback(done: int) -> None:
        if done == step:
            raise Kill

    return callback


def test_resume_after_kill_gives_bit_identical_weights_and_history(tmp_path):
    data = Recording(biographies())  # a new rendering per exposure: the data stream must resume too
    settings = dict(exposures=6, **FAST)  # 3 steps per exposure, 18 steps
    reference = tiny_model(data, d_model=16, n_layer=1)
    ref_history = train(reference, data, **settings)
    settings["checkpoint_every"] = 5

    model = tiny_model(data, d_model=16, n_layer=1)
    with pytest.raises(Kill):  # killed mid-exposure, 3 steps after the checkpoint at step 10
        train(model, data, checkpoint_dir=tmp_path, callback=_kill_at(13), **settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000010.pt", "step-000000010.safetensors"]
    # other initial weights: all state must come from the checkpoint
    resumed = tiny_model(data, seed=1, d_model=16, n_layer=1)
    history = train(resumed, data, checkpoint_dir=tmp_path, **settings)
    assert_same_weights(weights(reference), weights(resumed))
    assert history.losses == ref_history.losses and history.final_loss == ref_history.final_loss
    assert history.tokens_seen == ref_history.tokens_seen

    # a finished run: loads the final checkpoint and trains no further
    again = tiny_model(data, seed=1, d_model=16, n_layer=1)
    data.calls.clear()
    assert train(again, data, checkpoint_dir=tmp_path, **settings).losses == ref_history.losses
    assert data.calls == [0]  # read once, for the data digest that the checkpoint must match
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    assert_same_weights(weights(reference), weights(again))


class WithDropout(torch.nn.Module):
    """A model that draws random numbers during training: resuming must restore the torch RNG state."""

    def __init__(self, data):
        super().__init__()
        self.lm, self.drop = tiny_model(data, d_model=16, n_layer=1), torch.nn.Dropout(0.3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm(tokens) + self.drop(torch.ones(tokens.shape[-1], 1))


def test_resume_restores_the_random_stream_of_dropout(tmp_path):
    data = library(16)
    settings = dict(exposures=2, **FAST)  # 4 steps
    reference = WithDropout(data)
    train(reference, data, **settings)
    with pytest.raises(Kill):
        train(WithDropout(data), data, checkpoint_dir=tmp_path, checkpoint_every=2, callback=_kill_at(3), **settings)
    resumed = WithDropout(data)
    train(resumed, data, checkpoint_dir=tmp_path, checkpoint_every=2, **settings)
    assert_same_weights(weights(reference), weights(resumed))


def test_checkpoints_are_atomic_and_never_loaded_when_corrupt(tmp_path):
    data = library(8)
    settings = dict(exposures=2, checkpoint_every=1, **FAST)
    train(tiny_model(data), data, checkpoint_dir=tmp_path, **settings)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["step-000000002.pt", "step-000000002.safetensors"]  # older ones removed, no temp files
    state = torch.load(tmp_path / files[0], weights_only=True)  # plain containers only
    assert state["step"] == 2

    weights_file = tmp_path / files[1]
    blob = bytearray(weights_file.read_bytes())
    blob[-1] ^= 0xFF  # one flipped bit in the weights
    weights_file.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="do not match"):
        train(tiny_model(data), data, checkpoint_dir=tmp_path, **settings)

    (tmp_path / files[0]).write_bytes(b"PK\x03\x04 truncated")  # a half-written state file
    with pytest.raises(CheckpointError, match="cannot be read"):
        train(tiny_model(data), data, checkpoint_dir=tmp_path, **settings)

    (tmp_path / ".step-000000001.pt.x1y2.tmp").write_bytes(b"left by a killed write")
    train(tiny_model(data), data, checkpoint_dir=tmp_path, resume=False, **settings)  # starts over
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # and cleans up
    model = tiny_model(data)
    before = weights(model)
    with pytest.raises(ValueError, match="other settings"):
        train(model, data, checkpoint_dir=tmp_path, **{**settings, "lr": 2e-2})
    with pytest.raises(ValueError, match="other settings"):  # same size and settings, other data
        train(model, library(8, seed=1), checkpoint_dir=tmp_path, **settings)
    assert_same_weights(before, weights(model))  # refused before touching the model


def test_weights_round_trip_with_tied_tensors(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    a, b = Tied(), Tied()
    save_weights(a, tmp_path / "w.safetensors")
    load_weights(b, tmp_path / "w.safetensors")
    assert_same_weights(weights(a), weights(b))
    assert b.head.weight is b.embed.weight  # still tied


def test_orphan_weights_of_an_interrupted_write_are_ignored(tmp_path):
    data = library(8)
    settings = dict(exposures=2, **FAST)
    model = tiny_model(data)
    with pytest.raises(Kill):
        train(model, data, checkpoint_dir=tmp_path, checkpoint_every=1, callback=_kill_at(2), **settings)
    # a kill between the weights and the state write of step 2 leaves a weights file without state
    (tmp_path / "step-000000002.safetensors").write_bytes(b"garbage")
    reference = tiny_model(data)
    train(reference, data, **settings)
    resumed = tiny_model(data)
    train(resumed, data, checkpoint_dir=tmp_path, checkpoint_every=1, **settings)
    assert_same_weights(weights(reference), weights(resumed))


def test_moe_aux_loss_is_added_with_the_config_weight():
    data = library(8)
    model = tiny_model(data, moe_experts=2, moe_aux_weight=0.5)
    model(data.exposure(0).tokens)
    assert moe_aux_loss(model) is not None
    assert torch.equal(moe_aux_loss(model), 0.5 * model.aux_loss)
    dense = tiny_model(data)
    dense(data.exposure(0).tokens)
    assert moe_aux_loss(dense) is None
    history = train(model, data, exposures=2, **{**FAST, "progress": True})  # with a progress bar
    assert math.isfinite(history.final_loss)


def test_final_loss_is_the_mean_target_loss_of_the_last_exposure():
    data = biographies(19)  # batches of 8, 8 and 3 items with different numbers of targets
    model = tiny_model(data, d_model=16, n_layer=1)
    history = train(model, data, exposures=1, **{**FAST, "lr": 1e-12})  # weights barely move
    batch = data.exposure(0)
    with torch.no_grad():
        logits = model(batch.tokens)
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1][batch.loss_mask[:, 1:]], batch.tokens[:, 1:][batch.loss_mask[:, 1:]]
    )
    assert history.final_loss == pytest.approx(float(expected), rel=1e-4)
    assert history.losses[0] == pytest.approx(float(expected), rel=0.2)  # one minibatch's mean


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_and_no_temp_files(tmp_path, monkeypatch):
    data = library(8)
    settings = dict(exposures=2, checkpoint_dir=tmp_path, **FAST)
    train(tiny_model(data), data, **settings)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("labkit.runtime.os.replace", disk_full)
    with pytest.raises(OSError, match="disk full"):
        train(tiny_model(data), data, resume=False, **settings)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_train_config_writes_defaults_once_and_names_bad_fields():
    config = TrainConfig()
    assert (config.lr, config.batch_size, config.weight_decay, config.grad_clip) == (5e-3, 128, 0.05, 1.0)
    assert TrainConfig.of(config, lr=1e-2).lr == 1e-2 and TrainConfig.of(None) == config
    assert TrainConfig(grad_clip=0).grad_clip is None  # 0 means off, as None
    assert TrainConfig(betas=[0.9, 0.95]).betas == (0.9, 0.95)
    assert set(config.shared()) == {f for f in config.__dataclass_fields__} - set(TrainConfig.PER_MODEL)
    for bad, match in [(dict(lr=0), "lr=0"), (dict(exposures=0), "exposures=0"), (dict(warmup=1.0), "warmup=1.0"),
                       (dict(batch_size=2.5), "batch_size=2.5"), (dict(amp="fp8"), "amp='fp8'"),
                       (dict(betas=(0.9,)), "betas"), (dict(weight_decay=-1), "weight_decay=-1"),
                       (dict(grad_clip=-1.0), "grad_clip=-1.0"), (dict(seed=-1), "seed=-1")]:
        with pytest.raises(ValueError, match=rf"{match}.*allowed"):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="training setting='learning_rate' is not valid; allowed: exposures"):
        TrainConfig.of(config, learning_rate=1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        train(tiny_model(library(4)), library(4), learning_rate=1e-3)
