"""Chapter 5's exercises (labkit.exercises.ch05): the solutions pass, other correct ways pass too, and
plausible wrong answers fail on a named case: selectivity the wrong way round, control labels drawn per
item, a probe scored on its training items or standardised with the test items' own statistics. The
lab's own ``labkit.probe.control_labels`` passes the control-task checker."""

from __future__ import annotations

import itertools

import torch
from exercise_checks import rejected
from torch.nn import functional as F

from labkit import exercises, probe
from labkit.exercises import ch05


def test_the_chapter_is_registered_with_three_exercises():
    assert 5 in exercises.CHAPTERS
    assert [ex.id for ex in exercises.exercises(5)] == ["selectivity", "control-labels", "probe-accuracy"]
    assert all(ex.label.startswith("ch05-") for ex in exercises.exercises(5))


def test_solutions_pass(capsys):
    assert ch05.check_selectivity(ch05.selectivity)
    assert ch05.check_control_labels(ch05.control_labels)
    assert ch05.check_probe_accuracy(ch05.probe_accuracy)
    assert capsys.readouterr().out.count("✓ all") == 3


# --------------------------------------------------------------------------------------------------
# Selectivity
# --------------------------------------------------------------------------------------------------


def test_selectivity_wrong_answers(capsys):
    def backwards(accuracy, control_accuracy, chance, margin=0.1):
        out = ch05.selectivity(accuracy, control_accuracy, chance, margin)
        return out | {"selectivity": control_accuracy - accuracy}

    assert "case 1 of" in (message := rejected(ch05.check_selectivity, backwards))
    assert "['selectivity']" in message

    def at_least(accuracy, control_accuracy, chance, margin=0.1):  # >= instead of >
        selective, above = accuracy - control_accuracy, accuracy - chance
        return {"selectivity": selective, "above_chance": above, "readable": (above >= margin) & (selective >= margin)}

    assert "case 3 of" in rejected(ch05.check_selectivity, at_least)

    def selectivity_only(accuracy, control_accuracy, chance, margin=0.1):  # forgets chance
        out = ch05.selectivity(accuracy, control_accuracy, chance, margin)
        return out | {"readable": out["selectivity"] > margin}

    assert "case 2 of" in rejected(ch05.check_selectivity, selectivity_only)

    def either(accuracy, control_accuracy, chance, margin=0.1):
        out = ch05.selectivity(accuracy, control_accuracy, chance, margin)
        return out | {"readable": (out["above_chance"] > margin) | (out["selectivity"] > margin)}

    assert "['readable']" in rejected(ch05.check_selectivity, either)

    def fixed_margin(accuracy, control_accuracy, chance, margin=0.1):
        return ch05.selectivity(accuracy, control_accuracy, chance)

    assert "margin=0.125" in rejected(ch05.check_selectivity, fixed_margin)


# --------------------------------------------------------------------------------------------------
# Control labels: checked by properties
# --------------------------------------------------------------------------------------------------


def test_the_lab_control_labels_pass_and_meet_every_property(capsys):
    assert ch05.check_control_labels(probe.control_labels)
    cases = ch05.CONTROL_LABELS.hidden_cases()
    assert sum(len(torch.unique(c["types"])) >= 1000 for c in cases) == 2  # the statistical checks run twice
    for case in cases:
        found = ch05._control_properties(probe.control_labels, case)
        assert found.pop("shape") == tuple(case["labels"].shape)
        assert found.pop("dtype") == str(case["labels"].dtype).removeprefix("torch.")
        assert all(value is True for value in found.values()), found  # the expected values are the right ones


def test_control_labels_wrong_answers(capsys):
    def per_item(labels, types, seed):  # a label per item: a type's items disagree
        generator = torch.Generator().manual_seed(seed)
        return labels[torch.randint(len(labels), labels.shape, generator=generator)]

    message = rejected(ch05.check_control_labels, per_item)
    assert "case 1 of" in message and "every item of a type" in message

    def uniform_over_classes(labels, types, seed):  # ignores how often each class occurs
        classes = torch.unique(labels)
        unique, inverse = torch.unique(types, return_inverse=True)
        generator = torch.Generator().manual_seed(seed)
        return classes[torch.randint(len(classes), (len(unique),), generator=generator)][inverse]

    assert "share of the types" in rejected(ch05.check_control_labels, uniform_over_classes)

    def class_range(labels, types, seed):  # assumes the classes are 0..max
        unique, inverse = torch.unique(types, return_inverse=True)
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(int(labels.max()) + 1, (len(unique),), generator=generator)[inverse]

    message = rejected(ch05.check_control_labels, class_range)
    assert "case 2 of" in message and "every label occurs in labels" in message

    calls = itertools.count()

    def fresh_randomness(labels, types, seed):  # not seeded by `seed`: another draw every call
        return ch05.control_labels(labels, types, 1000 + next(calls))

    message = rejected(ch05.check_control_labels, fresh_randomness)
    assert "case 1 of" in message and "the same seed" in message

    def seed_ignored(labels, types, seed):
        return ch05.control_labels(labels, types, 0)

    message = rejected(ch05.check_control_labels, seed_ignored)
    assert "case 4 of" in message and "another seed" in message

    def always_int64(labels, types, seed):
        return ch05.control_labels(labels, types, seed).long()

    message = rejected(ch05.check_control_labels, always_int64)
    assert "case 3 of" in message and "['dtype']" in message


def test_control_labels_that_copy_a_type_member_are_not_independent():
    def own_member(labels, types, seed):  # the label of a random item *of the same type*: tied to the true label
        generator = torch.Generator().manual_seed(seed)
        out = labels.clone()
        for t in torch.unique(types):
            members = (types == t).nonzero()[:, 0]
            out[members] = labels[members[torch.randint(len(members), (), generator=generator)]]
        return out

    rejected(ch05.check_control_labels, own_member)
    big = next(c for c in ch05.CONTROL_LABELS.hidden_cases() if len(torch.unique(c["types"])) >= 1000)
    found = ch05._control_properties(own_member, big)
    assert found.pop("control labels independent of the true labels") is False
    assert all(value is True for key, value in found.items() if key not in ("shape", "dtype"))


# --------------------------------------------------------------------------------------------------
# Probe accuracy
# --------------------------------------------------------------------------------------------------


def _probe(features, labels, train, test, steps=200, lr=0.5, weight_decay=1e-3, *, own_statistics=False,
           bias=True, standardise=True, scored=None, adam=None, correction=0, dtype=torch.float64, relabel=True):
    """The solution's probe with one thing changed (keywords), to make right and wrong variants."""
    x = features.to(dtype)
    classes, y = torch.unique(labels, return_inverse=True)
    y = y if relabel else labels
    if standardise:  # items standardised with the statistics of the train items, or each set with its own
        groups = [(train, train), (test, test)] if own_statistics else [(torch.arange(len(x)), train)]
        out = x.clone()
        for items, stats_of in groups:
            mean, std = x[stats_of].mean(0), x[stats_of].std(0, correction=correction)
            out[items] = (x[items] - mean) / torch.where(std > 1e-12, std, torch.ones_like(std))
        x = out
    W = torch.zeros(x.shape[1], len(classes), dtype=dtype, requires_grad=True)
    b = torch.zeros(len(classes), dtype=dtype, requires_grad=bias)
    parameters = [W, b] if bias else [W]
    optimizer = torch.optim.Adam(parameters, lr=adam) if adam else torch.optim.SGD(parameters, lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(x[train] @ W + b, y[train]) + weight_decay / 2 * (W**2).sum()
        loss.backward()
        optimizer.step()
    scored = test if scored is None else scored
    with torch.no_grad():
        return ((x[scored] @ W + b).argmax(1) == y[scored]).double().mean().item()


def test_the_lab_probe_reads_the_planted_cases_and_nothing_in_the_shuffled_ones():
    kinds = []
    for case in ch05.PROBE_ACCURACY.hidden_cases():
        found = ch05._probe_reads(ch05._probe_reference, case)
        (key, value), = found.items()
        kinds.append("chance" if "majority rate" in key else "planted")
        assert value is True if kinds[-1] == "chance" else value >= 0.95, (key, value)
    assert kinds == ["planted"] * 5 + ["chance"] * 2 + ["planted"] * 2


def test_other_correct_probes_pass(capsys):
    for variant in (dict(adam=0.1), dict(adam=0.02, steps=300), dict(correction=1), dict(dtype=torch.float32),
                    dict(lr=0.2)):
        def probe_accuracy(features, labels, train, test, steps=200, lr=0.5, weight_decay=1e-3, variant=variant):
            return _probe(features, labels, train, test, **({"steps": steps, "lr": lr} | variant))

        assert ch05.check_probe_accuracy(probe_accuracy), variant


def test_probe_accuracy_wrong_answers(capsys):
    def train_accuracy(features, labels, train, test, steps=200, lr=0.5, weight_decay=1e-3):
        return _probe(features, labels, train, test, steps, lr, weight_decay, scored=train)

    message = rejected(ch05.check_probe_accuracy, train_accuracy)
    assert "case 6 of" in message and "majority rate" in message

    def test_statistics(features, labels, train, test, steps=200, lr=0.5, weight_decay=1e-3):
        return _probe(features, labels, train, test, steps, lr, weight_decay, own_statistics=True)

    message = rejected(ch05.check_probe_accuracy, test_statistics)
    assert "case 5 of" in message and "['test accuracy']" in message

    def no_bias(features, labels, train, test, steps=200, lr=0.5, weight_decay=1e-3):
        return _probe(features, labels, train, test, steps, lr, weight_decay, bias=False)

    assert "case 4 of" in rejected(ch05.check_probe_accuracy, no_bias)

    def raw_features(features, labels, train, test, steps=200, lr=0.5, weight_decay=1e-3):
        return _probe(features, labels, train, test, steps, lr, weight_decay, standardise=False)

    assert "case 3 of" in rejected(ch05.check_probe_accuracy, raw_features)

    def ids_as_classes(features, labels, train, test, steps=200, lr=0.5, weight_decay=1e-3):
        return _probe(features, labels, train, test, steps, lr, weight_decay, relabel=False)  # ids up to 20, K = 4

    message = rejected(ch05.check_probe_accuracy, ids_as_classes)
    assert "case 2 of" in message and "raised" in message
