"""Profiles are typed per chapter experiment and resolve with errors that name the parameter and the
allowed values; ``labkit.setup`` seeds and picks a device."""

from __future__ import annotations

import dataclasses

import pytest

from labkit import experiments, profiles, runtime, setup
from labkit.experiments.base import Execution, Profile, derive


@pytest.mark.parametrize("chapter", profiles.chapters())
def test_every_chapter_offers_smoke_quick_full_as_typed_parts(chapter):
    offered = profiles.profiles_of(chapter)
    assert {"smoke", "quick", "full"} <= set(offered)
    quick = profiles.resolve(chapter, "quick")
    for name in offered:
        p = profiles.resolve(chapter, name)
        assert isinstance(p, Profile) and isinstance(p.run, Execution)
        assert type(p.sizes) is type(quick.sizes) and type(p.expect) is type(quick.expect)
        assert dataclasses.is_dataclass(p.sizes) and dataclasses.is_dataclass(p.expect)


def test_resolve_and_overrides():
    p = profiles.resolve("00_welcome", "quick", N=10, lr=1)
    assert p.sizes.N == 10 and p.sizes.lr == 1.0 and isinstance(p.sizes.lr, float)
    quick = experiments.load("welcome").PROFILES["quick"]
    assert profiles.resolve("00_welcome", "quick", N=None) is quick
    assert p.expect == quick.expect and p.run == quick.run  # overrides touch sizes only
    assert profiles.resolve("01_knowledge_as_bits", "smoke", explorer_D=[10, 20]).sizes.explorer_D == (10, 20)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(profile="qiuck"), "profile='qiuck' is not valid for 00_welcome; allowed: smoke, quick, full"),
        (dict(profile="quick", n_itmes=3), "unknown size 'n_itmes' for 00_welcome; allowed:"),
        (dict(profile="quick", N="many"), "N='many' is not valid; allowed: a value of type int"),
        (dict(profile="quick", N=True), "N=True is not valid"),
    ],
)
def test_resolve_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        profiles.resolve("00_welcome", **kwargs)


def test_unknown_chapter():
    with pytest.raises(ValueError, match="chapter='99_nope' has no profiles"):
        profiles.resolve("99_nope")


def test_derive_changes_named_fields_and_refuses_unknown_ones():
    quick = experiments.load("capacity").PROFILES["quick"]
    smoke = derive(quick, sizes={"lr": 1e-3}, run={"processes": 1})
    assert smoke.sizes.lr == 1e-3 and smoke.run.processes == 1 and smoke.sizes.exposures == quick.sizes.exposures
    with pytest.raises(ValueError, match="sizes field 'learning_rate' is not valid; allowed: batch_size"):
        derive(quick, sizes={"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="processes=0 is not valid"):
        derive(quick, run={"processes": 0})


def test_describe_lists_every_part_and_profile():
    text = profiles.describe("02_capacity_scaling_law")
    assert text.startswith("02_capacity_scaling_law (labkit.experiments.capacity)")
    for word in ("smoke", "quick", "cpu-full", "full", "sizes", "run", "expect", "R_min", "GPT2Models"):
        assert word in text
    assert all(chapter in profiles.describe() for chapter in profiles.chapters())


def test_setup_seeds_and_picks_a_device(capsys):
    first = setup("00_welcome", "smoke", seed=7)
    import torch

    a = torch.rand(3)
    second = setup("00_welcome", "smoke", seed=7, verbose=False)
    assert torch.equal(a, torch.rand(3))
    assert first.device == second.device == runtime.resolve_device("auto")
    assert first.sizes.N == 32 and first.expect.min_fraction == 0.4 and first.run.processes == 1
    assert "profile=smoke seed=7" in capsys.readouterr().out


@pytest.mark.parametrize(("device", "message"), [("tpu", "device='tpu' is not valid"), ("gpu", "allowed: auto")])
def test_bad_device(device, message):
    with pytest.raises(ValueError, match=message):
        runtime.resolve_device(device)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="allowed: a non-negative integer"):
        runtime.seed_everything(seed)
