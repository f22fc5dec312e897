"""Profiles resolve to sizes, with errors that name the parameter and the allowed values."""

from __future__ import annotations

import pytest

from labkit import profiles, runtime, setup


@pytest.mark.parametrize("chapter", profiles.chapters())
def test_every_chapter_offers_smoke_quick_full_with_the_same_keys(chapter):
    offered = profiles.profiles_of(chapter)
    assert {"smoke", "quick", "full"} <= set(offered)
    keys = {p: set(profiles.CHAPTERS[chapter][p]) for p in offered}
    assert all(k == keys["quick"] for k in keys.values()), keys


def test_resolve_and_overrides():
    sizes = profiles.resolve("00_welcome", "quick", n_items=10, lr=1)
    assert sizes.n_items == 10 and sizes["lr"] == 1.0 and isinstance(sizes.lr, float)
    assert profiles.resolve("00_welcome", "quick", n_items=None).n_items == profiles.CHAPTERS["00_welcome"]["quick"][
        "n_items"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(profile="qiuck"), "profile='qiuck' is not valid for 00_welcome; allowed: smoke, quick, full"),
        (dict(profile="quick", n_itmes=3), "unknown size 'n_itmes' for 00_welcome; allowed:"),
        (dict(profile="quick", n_items="many"), "n_items='many' is not valid; allowed: a value of type int"),
        (dict(profile="quick", n_items=True), "n_items=True is not valid"),
    ],
)
def test_resolve_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        profiles.resolve("00_welcome", **kwargs)


def test_unknown_chapter():
    with pytest.raises(ValueError, match="chapter='99_nope' has no profiles"):
        profiles.resolve("99_nope")


def test_sizes_attribute_error_lists_known_sizes():
    with pytest.raises(AttributeError, match="known: .*n_items"):
        _ = profiles.resolve("00_welcome").nope


def test_setup_seeds_and_picks_a_device(capsys):
    first = setup("00_welcome", "smoke", seed=7)
    import torch

    a = torch.rand(3)
    second = setup("00_welcome", "smoke", seed=7, verbose=False)
    assert torch.equal(a, torch.rand(3))
    assert first.device == second.device == runtime.resolve_device("auto")
    assert "profile=smoke seed=7" in capsys.readouterr().out


@pytest.mark.parametrize(("device", "message"), [("tpu", "device='tpu' is not valid"), ("gpu", "allowed: auto")])
def test_bad_device(device, message):
    with pytest.raises(ValueError, match=message):
        runtime.resolve_device(device)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="allowed: a non-negative integer"):
        runtime.seed_everything(seed)
