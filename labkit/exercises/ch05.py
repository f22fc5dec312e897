"""Exercises of chapter 5 (where knowledge lives): selectivity against a control task, the control task
itself, and the held-out accuracy of a linear probe.

Each exercise's solution is the function of the same name below; ``check_<name>`` checks a learner's
version against the lab's own code (``labkit.probe``) or a plain reference here, on hidden cases. A
control task is random and a probe is trained, so neither can be compared draw for draw or digit for
digit with the lab's: their checkers compare *properties* (every item of a type shares its label, the
labels follow the true labels' distribution, ...) and accuracies within a tolerance.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.nn import functional as F

from labkit.exercises.check import Exercise


def selectivity(accuracy: torch.Tensor, control_accuracy: torch.Tensor,
                chance: torch.Tensor, margin: float = 0.1) -> dict:
    """Selectivity of probes (e.g. one per layer), and which of them read knowledge.

    accuracy, control_accuracy, chance: held-out accuracy on the real labels, on the
    control task, and the majority-class rate (tensors that broadcast together).
    Returns {"selectivity": accuracy - control_accuracy, "above_chance": accuracy -
    chance, "readable": bool tensor, True where above_chance > margin AND selectivity
    > margin (both strictly)}.
    """
    selective = accuracy - control_accuracy  # what the representation adds to the probe
    above = accuracy - chance  # what the probe reads beyond guessing the majority class
    return {"selectivity": selective, "above_chance": above,
            "readable": (above > margin) & (selective > margin)}


def control_labels(labels: torch.Tensor, types: torch.Tensor,
                   seed: int) -> torch.Tensor:
    """Hewitt & Liang's control task: one random label per type, shared by its items.

    labels, types: (n,) integer tensors. Every distinct value of `types` gets one label
    drawn from the empirical distribution of `labels` (the label of a uniformly random
    item), using a torch.Generator seeded with `seed`. Returns the (n,) control labels,
    with the dtype of `labels`.
    """
    # inverse[i]: the index of item i's type among the distinct types
    unique, inverse = torch.unique(types, return_inverse=True)
    generator = torch.Generator().manual_seed(seed)
    # one uniformly random item per type: its label follows the labels' distribution
    draw = torch.randint(len(labels), (len(unique),), generator=generator)
    return labels[draw][inverse]


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor, train: torch.Tensor,
                   test: torch.Tensor, steps: int = 200, lr: float = 0.5,
                   weight_decay: float = 1e-3) -> float:
    """Test accuracy of a linear softmax probe fitted on the `train` items.

    features: (n, d); labels: (n,) integer class ids (any values); train, test: int64
    indices of items. Standardise every feature with the TRAIN items' mean and std (a
    feature constant on them is only centred), fit W (d, K) and b (K,) from zeros by
    `steps` steps of full-batch gradient descent on the train items' mean cross-entropy
    + weight_decay / 2 * ||W||^2, and return the accuracy of argmax(x W + b) on `test`.
    """
    x = features.double()
    classes, y = torch.unique(labels, return_inverse=True)  # class ids -> 0..K-1
    mean, std = x[train].mean(0), x[train].std(0, correction=0)
    x = (x - mean) / torch.where(std > 1e-12, std, torch.ones_like(std))
    W = torch.zeros(x.shape[1], len(classes), dtype=x.dtype, requires_grad=True)
    b = torch.zeros(len(classes), dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.SGD([W, b], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        logits = x[train] @ W + b
        loss = F.cross_entropy(logits, y[train]) + weight_decay / 2 * (W**2).sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = (x[test] @ W + b).argmax(1)
    return (predicted == y[test]).double().mean().item()


# --------------------------------------------------------------------------------------------------
# References (the lab's code), what the checkers compare, and hidden cases
# --------------------------------------------------------------------------------------------------


def _selectivity(accuracy: torch.Tensor, control_accuracy: torch.Tensor, chance: torch.Tensor,
                 margin: float = 0.1) -> dict:
    # element by element, as labkit.probe.probe_table writes a row's selectivity
    acc, control, base = (t.double() for t in torch.broadcast_tensors(accuracy, control_accuracy, chance))
    rows = list(zip(acc.flatten().tolist(), control.flatten().tolist(), base.flatten().tolist(), strict=True))
    selective = [a - c for a, c, _ in rows]
    above = [a - ch for a, _, ch in rows]
    readable = [u > margin and s > margin for u, s in zip(above, selective, strict=True)]
    shape = acc.shape
    return {"selectivity": torch.tensor(selective, dtype=torch.float64).reshape(shape),
            "above_chance": torch.tensor(above, dtype=torch.float64).reshape(shape),
            "readable": torch.tensor(readable, dtype=torch.bool).reshape(shape)}


def _control_labels(labels: torch.Tensor, types: torch.Tensor, seed: int) -> torch.Tensor:
    from labkit.probe import control_labels as lab_control_labels

    return lab_control_labels(labels, types, seed)


#: a class's share of the types may differ from its share of the labels by this much (over >= 1000 types)
SHARE_TOLERANCE = 0.15
#: how far the agreement of control and true labels may be from sum_k p_k^2, its value for independent draws
AGREEMENT_TOLERANCE = 0.1


def _control_properties(fn: Callable[..., Any], case: Mapping[str, Any]) -> dict:
    """What a control task must satisfy, as a dict of checks (the draws themselves are the learner's)."""
    labels, types, seed = case["labels"], case["types"], case["seed"]

    def draw(seed: int) -> torch.Tensor:  # fresh copies: a function that changes its inputs spoils no other call
        return torch.as_tensor(fn(labels=labels.clone(), types=types.clone(), seed=seed))

    got = draw(seed)
    fits = got.shape == labels.shape
    out = {"shape": tuple(got.shape), "dtype": str(got.dtype).removeprefix("torch.")}
    flat = got.reshape(-1).to(torch.int64) if fits else torch.zeros(len(labels), dtype=torch.int64)
    unique_types, inverse = torch.unique(types, return_inverse=True)
    pairs = torch.unique(torch.stack([types.to(torch.int64), flat]), dim=1).shape[1]
    out["every item of a type has the type's label"] = fits and pairs == len(unique_types)
    out["every label occurs in labels"] = fits and bool(torch.isin(flat, labels.to(torch.int64)).all())
    out["the same seed gives the same labels"] = fits and torch.equal(got, draw(seed))
    if len(unique_types) >= 50:  # two seeds agreeing on 50 draws: only if the seed is ignored
        out["another seed gives other labels"] = fits and not torch.equal(got, draw(seed + 1))
    if len(unique_types) >= 1000:  # enough types for the shares to settle
        classes = torch.unique(labels).to(torch.int64)
        per_type = torch.zeros(len(unique_types), dtype=torch.int64).scatter_(0, inverse, flat)
        share_types = (per_type[:, None] == classes).double().mean(0)
        share_labels = (labels.to(torch.int64)[:, None] == classes).double().mean(0)
        gap = float((share_types - share_labels).abs().max())
        out[f"each class's share of the types within {SHARE_TOLERANCE} of its share of labels"] = \
            fits and gap <= SHARE_TOLERANCE
        agreement = float((flat == labels.to(torch.int64)).double().mean())
        independent = float((share_labels**2).sum())  # P(control == true) when drawn independently
        out["control labels independent of the true labels"] = \
            fits and abs(agreement - independent) <= AGREEMENT_TOLERANCE
    return out


def _probe_reference(features: torch.Tensor, labels: torch.Tensor, train: torch.Tensor, test: torch.Tensor,
                     steps: int = 200, lr: float = 0.5, weight_decay: float = 1e-3) -> float:
    """The lab's probe (``labkit.probe.fit_probe``: L-BFGS, scikit-learn's penalty) on exactly this split.

    ``fit_probe`` draws its own split from a seed, so the items are reordered so that its seed-0 split
    picks exactly ``train`` and ``test``; the optimiser settings do not apply to it."""
    from labkit.probe import _split, fit_probe

    n = len(train) + len(test)
    fraction = len(test) / n
    train_at, test_at = _split(n, 0, fraction)
    order = torch.empty(n, dtype=torch.int64)
    order[train_at], order[test_at] = train, test
    result = fit_probe(features[order], labels[order], seed=0, test_fraction=fraction)
    assert (result.n_train, result.n_test) == (len(train), len(test)), "the split was not reproduced"
    return result.test_accuracy


#: where the lab's probe reads nothing (its accuracy within this of the majority rate), yours must not either
CHANCE_TOLERANCE = 0.15


def _probe_reads(fn: Callable[..., Any], case: Mapping[str, Any]) -> dict:
    """The test accuracy, compared with the lab's probe; where the lab's is at chance, only that it is too.

    Which kind a case is depends on the data alone (the lab's probe on it), so reference and learner
    are always compared on the same keys."""
    accuracy = fn(**case)
    lab = accuracy if fn is _probe_reference else _probe_reference(**case)
    labels = case["labels"]
    majority = float(torch.unique(labels, return_counts=True)[1].max()) / len(labels)  # ProbeResult.chance
    if abs(lab - majority) > CHANCE_TOLERANCE:
        return {"test accuracy": accuracy}
    near = abs(float(accuracy) - majority) <= CHANCE_TOLERANCE
    return {f"test accuracy within {CHANCE_TOLERANCE} of the majority rate {majority:.3g}": near}


def _selectivity_cases(rng: random.Random) -> list[dict]:
    def t(*values: float) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64)

    cases = [dict(accuracy=t(0.25, 0.5, 0.875, 0.9), control_accuracy=t(0.25, 0.375, 0.25, 0.85),
                  chance=t(0.25, 0.25, 0.25, 0.25)),
             # the control probe below chance: selective, yet hardly above chance
             dict(accuracy=t(0.62, 0.66, 0.95), control_accuracy=t(0.3, 0.2, 0.6), chance=t(0.6, 0.6, 0.6)),
             # exactly at the margin (binary fractions: no rounding) is not above it
             dict(accuracy=t(0.75, 0.75, 0.875), control_accuracy=t(0.625, 0.5, 0.5), chance=t(0.5, 0.625, 0.5),
                  margin=0.125),
             # one row per layer, one column per target: chance is per target and broadcasts
             dict(accuracy=torch.tensor([[0.5, 0.3], [0.9, 0.35], [0.95, 0.8]], dtype=torch.float64),
                  control_accuracy=torch.tensor([[0.45, 0.3], [0.5, 0.3], [0.9, 0.3]], dtype=torch.float64),
                  chance=t(0.5, 0.2)),
             dict(accuracy=t(0.3, 0.6, 0.6), control_accuracy=t(0.2, 0.6, 0.58), chance=t(0.25, 0.5, 0.5),
                  margin=0.0),
             dict(accuracy=torch.tensor(0.9, dtype=torch.float64), control_accuracy=torch.tensor(0.4,
                  dtype=torch.float64), chance=torch.tensor(0.5, dtype=torch.float64))]
    for margin in (0.25, None, None):
        layers, targets = rng.randint(2, 9), rng.randint(1, 4)
        chance = t(*(rng.uniform(0.05, 0.6) for _ in range(targets)))
        accuracy = chance + torch.tensor([[rng.uniform(0, 1) for _ in range(targets)] for _ in range(layers)],
                                         dtype=torch.float64) * (1 - chance)
        control = chance + torch.tensor([[rng.uniform(-0.2, 0.7) for _ in range(targets)] for _ in range(layers)],
                                        dtype=torch.float64) * (accuracy - chance)
        case = dict(accuracy=accuracy, control_accuracy=control, chance=chance)
        cases.append(case if margin is None else case | dict(margin=margin))
    return cases


def _control_cases(rng: random.Random) -> list[dict]:
    generator = torch.Generator().manual_seed(rng.randrange(2**31))

    def many_types(n_types: int, label_values: list[int], shares: list[float], seed: int) -> dict:
        per_type = torch.randint(1, 4, (n_types,), generator=generator)  # 1 to 3 items of each type
        names = torch.randperm(50_000, generator=generator)[:n_types]  # token ids, not 0..n_types-1
        types = names.repeat_interleave(per_type)
        types = types[torch.randperm(len(types), generator=generator)]
        which = torch.multinomial(torch.tensor(shares), len(types), replacement=True, generator=generator)
        return dict(labels=torch.tensor(label_values)[which], types=types, seed=seed)

    cases = [dict(labels=torch.randint(3, (40,), generator=generator), types=torch.randint(8, (40,),
                  generator=generator), seed=0),
             dict(labels=torch.tensor([3, 7, 7, 9, 3, 7, 9, 9, 7, 3, 7, 7]),  # label ids need not be 0..K-1
                  types=torch.tensor([17, 3, 17, 42, 3, 5, 42, 17, 5, 3, 8, 8]), seed=1),
             dict(labels=torch.randint(5, (30,), generator=generator, dtype=torch.int32),  # dtype kept
                  types=torch.randint(6, (30,), generator=generator), seed=7),
             dict(labels=torch.randint(4, (60,), generator=generator), types=torch.arange(60), seed=2),  # one each
             dict(labels=torch.tensor([0, 1, 2, 1, 0, 2]), types=torch.full((6,), 11), seed=3),  # a single type
             dict(labels=torch.full((20,), 4), types=torch.randint(5, (20,), generator=generator), seed=4),
             many_types(2000, [4, 1, 9, 2], [0.6, 0.25, 0.1, 0.05], seed=5),  # skewed: not uniform over classes
             many_types(2000, [0, 1], [0.8, 0.2], seed=rng.randint(0, 1000))]
    n = rng.randint(100, 300)
    cases.append(dict(labels=torch.randint(rng.randint(2, 10), (n,), generator=generator),
                      types=torch.randint(rng.randint(50, 100), (n,), generator=generator), seed=rng.randint(0, 1000)))
    return cases


def _probe_cases(rng: random.Random) -> list[dict]:
    generator = torch.Generator().manual_seed(rng.randrange(2**31))

    def planted(n: int, d: int, K: int, strength: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Classes 0..K-1, each shifting its own direction (rotated at random) by `strength` noise sds."""
        y = torch.randperm(n, generator=generator) % K
        x = torch.randn(n, d, generator=generator)
        x[:, :K] += strength * F.one_hot(y, K)
        rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=generator))
        return (x @ rotation).float(), y

    def split(n: int, n_test: int) -> dict:
        order = torch.randperm(n, generator=generator)
        return dict(train=order[n_test:], test=order[:n_test])

    def uniform(n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    x, y = planted(300, 8, 2)
    cases = [dict(features=x, labels=y, **split(300, 100))]
    x, y = planted(400, 16, 4)
    cases.append(dict(features=x, labels=torch.tensor([3, 10, 11, 20])[y], **split(400, 100)))  # any class ids
    # raw features on scales from 0.01 to 100 with offsets of about 1000: gradient descent needs standardising
    x, y = planted(300, 10, 3)
    scales, offsets = 10 ** (4 * torch.rand(10, generator=generator) - 2), 1000 * torch.randn(10, generator=generator)
    cases.append(dict(features=x * scales + offsets, labels=y, **split(300, 100)))
    # 30% of the items above a threshold far from the mean (half of the rest lie far below it): the boundary
    # needs the bias, since without one it goes through the mean of the standardised features
    y = (torch.rand(300, generator=generator) < 0.3).long()
    far = torch.rand(300, generator=generator) < 0.5
    signal = torch.where(y == 1, uniform(300, 1.5, 2.5), torch.where(far, uniform(300, -4.0, -3.0), uniform(300, 0, 1)))
    cases.append(dict(features=torch.cat([signal[:, None], torch.randn(300, 4, generator=generator)], 1),
                      labels=y, **split(300, 100)))
    # a test set from a shifted population (80% positives, on a wider range) with the same rule, sign of the
    # first feature: standardising the test items with their own statistics moves the boundary. (Statistics of
    # all items, the other leak, would not: one affine map of train and test alike is undone by W and b, so a
    # fitted probe's accuracy cannot reveal it, and no case here tries.)
    y_train, y_test = torch.randperm(200, generator=generator) % 2, (torch.arange(100) >= 20).long()
    signal = torch.cat([torch.where(y_train == 1, uniform(200, 0.25, 2.0), uniform(200, -2.0, -0.25)),
                        torch.where(y_test == 1, uniform(100, 0.25, 4.0), uniform(100, -1.0, -0.25))])
    features = torch.cat([signal[:, None], torch.randn(300, 3, generator=generator)], 1)
    order = torch.randperm(300, generator=generator)  # items in random order; train, test = where they went
    where = torch.argsort(order)
    cases.append(dict(features=features[order], labels=torch.cat([y_train, y_test])[order], train=where[:200],
                      test=where[200:]))
    # labels shuffled independently of the features, and more features than a probe needs to fit every train item
    for K, n_train, n_test in ((2, 80, 240), (3, 90, 300)):
        x, y = planted(n_train + n_test, 60, K)
        cases.append(dict(features=x, labels=y[torch.randperm(len(y), generator=generator)],
                          **split(n_train + n_test, n_test)))
    for _ in range(2):
        n = rng.randint(200, 400)
        x, y = planted(n, rng.randint(4, 24), rng.randint(2, 5))
        cases.append(dict(features=x, labels=y, **split(n, n // 4)))
    return cases


SELECTIVITY = Exercise(
    chapter=5, id="selectivity", title="Selectivity: is the knowledge in the representation?", difficulty=1,
    importance=4,
    statement=r"""
A probe's held-out accuracy alone does not say that a layer *holds* an attribute: a probe expressive
enough can learn the task from almost any features. Hewitt & Liang's control task
{cite:p}`hewitt2019control` gives each type of input a random label, so a probe can only memorise it;
**selectivity** = accuracy − control accuracy is what the representation adds beyond the probe's own
capacity. Write `selectivity(accuracy, control_accuracy, chance, margin=0.1)` for tensors of probes
(say one per layer and target; they broadcast together), returning a dict with `"selectivity"`,
`"above_chance"` (accuracy − chance, the majority-class rate) and `"readable"`: a bool tensor, true where
**both** exceed `margin` strictly. Why is a high selectivity alone not enough (think of a control probe
that scores below chance)?
""",
    solution=selectivity, reference=_selectivity, cases=_selectivity_cases, imports=("import torch",),
    rtol=1e-9, atol=1e-12)

CONTROL_LABELS = Exercise(
    chapter=5, id="control-labels", title="A control task", difficulty=3, importance=4,
    statement=r"""
Write `control_labels(labels, types, seed)`, Hewitt & Liang's control task {cite:p}`hewitt2019control`:
every distinct value in `types` (an `(n,)` tensor, e.g. the token at the probed position) gets **one**
label drawn at random from the empirical distribution of `labels` (`(n,)`, the true labels), and every
item of that type carries it. Use a `torch.Generator` seeded with `seed`. The control labels then have
the true labels' distribution, but depend on an input only through its type. Random draws cannot be
compared with the lab's, so the checker tests properties: shape and dtype of `labels`; one label per
type; only labels that occur in `labels`; the same labels for the same seed and others for another;
and over 2,000 types, each class's share within 0.15 of its share of `labels` and an agreement with the
true labels no higher than independent draws give. Why would a fixed map from each true label to a
random one be no control at all?
""",
    solution=control_labels, reference=_control_labels, cases=_control_cases, evaluate=_control_properties,
    imports=("import torch",))

PROBE_ACCURACY = Exercise(
    chapter=5, id="probe-accuracy", title="A linear probe, held out", difficulty=4, importance=5,
    statement=r"""
A linear probe {cite:p}`alain2016probes` is a multinomial logistic regression from a layer's activations
to an attribute. Write `probe_accuracy(features, labels, train, test, steps=200, lr=0.5,
weight_decay=1e-3)`: standardise each feature with the mean and standard deviation of the **train**
items (a feature constant on them is only centred), fit $W$ and $b$ from zeros on the train items by
full-batch gradient descent (or Adam) on the mean cross-entropy $+\ \tfrac{\lambda}{2}\|W\|^2$
($\lambda$ = `weight_decay`), and return the accuracy on the `test` items. `labels` are class ids of any
values. The checker compares your accuracy with the lab's `fit_probe` (L-BFGS, a slightly different
penalty) on the same split, within 0.05, on planted cases: a linear feature in noise, raw features on
wildly different scales, a class boundary away from the mean, a test set from a shifted population. On
labels shuffled independently of the features, where the lab's probe reads nothing, yours must stay
within 0.15 of the majority-class rate. Standardising with the statistics of *all* items leaks the test
set too, though no accuracy can show it: why
not?
""",
    solution=probe_accuracy, reference=_probe_reference, cases=_probe_cases, evaluate=_probe_reads,
    imports=("import torch", "from torch.nn import functional as F"), rtol=0.0, atol=0.05)

EXERCISES = [SELECTIVITY, CONTROL_LABELS, PROBE_ACCURACY]

check_selectivity = SELECTIVITY.checker()
check_control_labels = CONTROL_LABELS.checker()
check_probe_accuracy = PROBE_ACCURACY.checker()
