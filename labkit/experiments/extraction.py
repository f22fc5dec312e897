"""Chapter 8's experiment: storing a fact is not being able to answer questions about it.

Part 3.1 (allenzhu2023part31) pretrains on the biographies of N people, finetunes on question-answer
pairs of half of them (the QA-training half) and asks the same questions about the other half (the
QA-test half), whose biographies the model memorized but whose QA pairs it never saw. Four protocols
(:data:`PROTOCOLS`), each one run of this module:

- ``single``: one fixed biography per person, pretrain + finetune: the model memorizes the biographies
  and still cannot answer for the test half (paper: 9.7%);
- ``augmented``: five biographies per person with the sentences permuted (multi5 + permute): 96.6%;
- ``mixed``: single biographies and the training half's QA pairs in one training: 86.6%;
- ``celebrity``: the training half (celebrities) augmented, the test half (the minority) single,
  finetuned on the celebrities: the minority rises from 4.4% (no celebrities) to 86.8%.

Probing says why (the paper's P- and Q-probing): a linear probe on the pretrained model's last layer
reads each attribute at the token before it in a biography (P) and from the bare name (Q); with
augmentation the attributes become readable at the name. Probe labels are the value codes; the birth
date's label is its month (its first token: 67,200 dates are too many classes for a few hundred people).

A run (:class:`ExtractionRun`) pretrains (``"method": "train"``) or loads a committed pretrained model
(``"saved"``: the quick profile reuses the cpu-full models, ``results/models/extraction_cpu_full``),
then probes, finetunes a copy on the training half's QA pairs (``labkit.train.finetune``: loss on the
answers only) and scores exact-match greedy answers (``labkit.generate``) of both halves. Runs of the
same shape (single, augmented, celebrity: N records per exposure) train batched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from labkit import probe
from labkit.batched import BatchableRun, RunSetup
from labkit.checks import invalid
from labkit.data.base import TokenBatch
from labkit.data.bios import N_DAYS, N_YEARS, BioS
from labkit.data.extraction import QA_ATTRIBUTES, CelebrityBioS, MixedData, PeopleSplit, QAData
from labkit.data.registry import data_keys, make_dataset
from labkit.experiments.base import Execution, Profile, derive, load_results, results_path, run_grid
from labkit.experiments.base import provenance_line as base_provenance_line
from labkit.experiments.models import load_trained, model_config
from labkit.generate import answer_correct, greedy, qa_accuracy
from labkit.model import Transformer
from labkit.tables import Table, table
from labkit.tokenizer import BOS_ID
from labkit.train import TrainConfig, TrainHistory, finetune

if TYPE_CHECKING:
    import plotly.graph_objects as go

NAME = "extraction"
CHAPTER = "08_knowledge_extraction"


@dataclass(frozen=True)
class Protocol:
    """One of Part 3.1's protocols: its label, whether its biographies are augmented (all, none, or the
    celebrities only), whether it finetunes on QA after pretraining (mixed training does not) and the
    paper's held-out QA accuracy (percent)."""

    label: str
    augmented: str  # "none", "all", "celebrities"
    finetunes: bool
    paper: float
    note: str = ""


PROTOCOLS: dict[str, Protocol] = {
    "single": Protocol("bioS single: pretrain, then QA finetune", "none", True, 9.7),
    "augmented": Protocol("bioS multi5 + permute: pretrain, then QA finetune", "all", True, 96.6),
    "mixed": Protocol("bioS single: mixed training (bios + training-half QA)", "none", False, 86.6),
    "celebrity": Protocol("celebrities multi5 + permute, minority single: pretrain, then QA finetune",
                          "celebrities", True, 86.8, "the minority's accuracy; 4.4% without celebrities"),
}
#: Where each protocol's probes are read (a biography in canonical order, the bare name).
PROBE_SITES = ("P", "Q")


# --------------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """What the chapter measures. People: ``N`` and the first / middle / last ``name_pools`` (attribute
    pools are the paper's); ``protocols`` (:data:`PROTOCOLS`), augmentation ``multi`` renderings with
    ``permute``; the model (``d_model``, ``n_layer``, ``n_head``) and its pretraining recipe
    (``exposures``, ``batch_size``, ``lr``, ``weight_decay``); the QA finetuning recipe (``finetune_*``,
    no weight decay); ``probed``: protocols whose pretrained model is probed (``test_fraction``, ``C``,
    ``probe_iterations``: ``labkit.probe``); ``scale``: extra (N, exposures) pairs at which the single and
    augmented protocols also run, the search for the smallest scale that shows the contrast; ``method``:
    ``"train"`` or ``"saved"`` (load the committed cpu-full pretrained models, same sizes);
    ``keep_models``: the sweep files seed 0's pretrained main models in ``results/models``; ``seeds``."""

    N: int = 400
    name_pools: tuple[int, int, int] = (400, 400, 1000)
    protocols: tuple[str, ...] = tuple(PROTOCOLS)
    multi: int = 5
    permute: bool = True
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    exposures: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    finetune_exposures: int = 20
    finetune_batch_size: int = 64
    finetune_lr: float = 1e-3
    probed: tuple[str, ...] = ("single", "augmented")
    test_fraction: float = 0.25
    C: float = 1.0
    probe_iterations: int = 30
    scale: tuple[tuple[int, int], ...] = ()
    method: str = "train"
    keep_models: bool = False
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for name in (*self.protocols, *self.probed):
            if name not in PROTOCOLS:
                raise invalid("protocols", name, ", ".join(PROTOCOLS))
        if self.method not in ("train", "saved"):
            raise invalid("method", self.method, "'train', 'saved'")


@dataclass(frozen=True)
class Expect:
    """The claim cell's thresholds: augmented minus single held-out QA accuracy at least ``margin``;
    the single and augmented models reproduce at least ``memorized_min`` of the test half's attribute
    values in their biographies (storage works, so a failure is extraction); mixed training at least
    ``mixed_min`` above single; every protocol answers at least ``train_min``
    of the training half's questions (the QA format is learned, so a test failure is not a failed
    finetuning)."""

    margin: float = 0.2
    memorized_min: float = 0.8
    mixed_min: float = 0.04
    train_min: float = 0.9


# quick also probes the celebrity model, celebrities and minority apart (the cpu-full run did not)
QUICK = Profile(Sizes(method="saved", probed=("single", "augmented", "celebrity")), Expect(),
                Execution(processes=2, threads=1))
PROFILES: dict[str, Profile[Sizes, Expect]] = {
    # 40 people, 8-wide model, 30 exposures: exercises every step in seconds; asserts only storage
    "smoke": derive(QUICK, sizes=dict(N=40, name_pools=(20, 20, 20), d_model=16, n_head=2, exposures=30,
                                      batch_size=16, lr=1e-2, finetune_exposures=4, probe_iterations=10,
                                      protocols=("single", "augmented"), method="train"),
                    expect=dict(margin=-1.0, memorized_min=0.0, mixed_min=-1.0, train_min=0.0),
                    run=dict(processes=1)),
    # the cpu-full pretrained models (committed), finetuned and probed here
    "quick": QUICK,
    # every protocol trained, 2 seeds, and the scale search of single vs augmented
    "cpu-full": derive(QUICK, sizes=dict(method="train", seeds=(0, 1), probe_iterations=100, keep_models=True,
                                         probed=("single", "augmented"),
                                         scale=((100, 300), (200, 300), (400, 100)))),
    "full": derive(QUICK, sizes=dict(N=20_000, d_model=256, n_layer=8, n_head=8, exposures=540, batch_size=128,
                                     lr=1e-3, finetune_exposures=50, method="train", seeds=(0,),
                                     probe_iterations=100),
                   expect=dict(margin=0.5, memorized_min=0.9), run=dict(processes=1, gpus=1.0)),
}
#: The committed cpu-full results that chapter 8 shows next to its own run.
PRECOMPUTED = results_path(NAME, "cpu-full")


# --------------------------------------------------------------------------------------------------
# The grid and one run
# --------------------------------------------------------------------------------------------------


def _data(sizes: Sizes, augmented: bool) -> dict[str, Any]:
    """The data keys of the pretraining biographies (``labkit.data.registry``'s ``bios`` kind)."""
    return data_keys({"kind": "bios", "mode": "single", "multi": sizes.multi if augmented else 1,
                      "permute": bool(sizes.permute) if augmented else False, "name_pools": list(sizes.name_pools)})


def train_config(sizes: Sizes, protocol: str, N: int, exposures: int, seed: int, series: str) -> dict[str, Any]:
    """The config that pretrains ``protocol``'s model (``"method": "train"``)."""
    return {**_data(sizes, PROTOCOLS[protocol].augmented != "none"), "N": int(N), "seed": int(seed),
            "model": "tiny", "d_model": int(sizes.d_model), "n_layer": int(sizes.n_layer),
            "n_head": int(sizes.n_head), "exposures": int(exposures), "batch_size": int(sizes.batch_size),
            "lr": float(sizes.lr), "weight_decay": float(sizes.weight_decay), "protocol": protocol,
            "series": series, "method": "train"}


#: The keys of a train config that are not about pretraining (evaluation, and whether the sweep keeps
#: the pretrained model): a kept model is filed under the config without them.
EVALUATION_KEYS = ("finetune_exposures", "finetune_batch_size", "finetune_lr", "probe", "test_fraction", "C",
                   "probe_iterations", "keep_model")


def pretrain_part(config: Mapping[str, Any]) -> dict[str, Any]:
    """The pretraining keys of a run's config (:func:`train_config`'s), under which its model is kept."""
    return {k: v for k, v in config.items() if k not in EVALUATION_KEYS}


def _evaluation(sizes: Sizes, protocol: str, series: str) -> dict[str, Any]:
    return {"finetune_exposures": int(sizes.finetune_exposures), "finetune_batch_size": int(sizes.finetune_batch_size),
            "finetune_lr": float(sizes.finetune_lr), "probe": series == "main" and protocol in sizes.probed,
            "test_fraction": float(sizes.test_fraction), "C": float(sizes.C),
            "probe_iterations": int(sizes.probe_iterations)}


def grid(sizes: Sizes, seeds: Sequence[int] = (0,)) -> list[dict[str, Any]]:
    """Configs: every protocol × seed at (``N``, ``exposures``) (``series: "main"``), then single and
    augmented at each ``scale`` pair, seed 0 only (``series: "scale"``). With ``method="saved"`` each main
    config instead names the cpu-full config whose committed pretrained model it loads."""
    configs = []
    if sizes.method == "saved" and any(seed != 0 for seed in seeds):
        raise invalid("seed", [s for s in seeds if s != 0][0], "0 with method='saved' (the committed pretrained "
                      "models are seed 0's; profiles smoke and cpu-full pretrain other seeds)")
    for seed in seeds:
        for protocol in sizes.protocols:
            pretrain = train_config(sizes, protocol, sizes.N, sizes.exposures, seed, "main")
            if sizes.method == "saved":
                configs.append({"method": "saved", "protocol": protocol, "series": "main", "seed": int(seed),
                                "model_config": pretrain, **_evaluation(sizes, protocol, "main")})
            else:
                keep = {"keep_model": True} if sizes.keep_models and seed == 0 else {}
                configs.append({**pretrain, **_evaluation(sizes, protocol, "main"), **keep})
    for N, exposures in sizes.scale:
        for protocol in ("single", "augmented"):
            configs.append({**train_config(sizes, protocol, N, exposures, 0, "scale"),
                            **_evaluation(sizes, protocol, "scale")})
    return configs


def pretraining_data(config: Mapping[str, Any]) -> tuple[Any, BioS, PeopleSplit]:
    """The pretraining dataset of a train config, the bioS population whose QA pairs are asked (the
    plain one for the celebrity protocol) and the split of its people into QA halves (by the seed)."""
    protocol = config["protocol"]
    if protocol not in PROTOCOLS:
        raise invalid("protocol", protocol, ", ".join(PROTOCOLS))
    bios = make_dataset(config)
    split = PeopleSplit.halves(bios.n_items, seed=int(config["seed"]))
    if protocol == "mixed":
        return MixedData(bios, QAData(bios, split.train)), bios, split
    if protocol == "celebrity":  # the config's data is the augmented rendering; the minority gets the plain one
        celebrities = CelebrityBioS(bios.n_items, split.train, seed=bios.seed, multi=bios.multi,
                                    permute=bios.permute, pools=bios.pools)
        return celebrities, celebrities.plain, split
    return bios, bios, split


def probe_labels(bios: BioS) -> dict[str, torch.Tensor]:
    """Per attribute, every person's label for the probes: the value code; the birth date's month."""
    codes = bios.people.codes
    labels = {a: torch.as_tensor(codes[a]) for a in QA_ATTRIBUTES}
    labels["birth_date"] = torch.as_tensor(codes["birth_date"] // (N_DAYS * N_YEARS))
    return labels


def bare_names(bios: BioS) -> TokenBatch:
    """Every person's full name alone, ``[BOS, first, middle, last]`` (Q-probing's input), span "name"."""
    names = [bios.tokenizer.encode(bios.people.full_name(i)) for i in range(bios.n_items)]
    width = max(map(len, names))
    tokens = torch.zeros(len(names), 1 + width, dtype=torch.int64)
    for i, ids in enumerate(names):
        tokens[i, 0], tokens[i, 1 : 1 + len(ids)] = BOS_ID, torch.tensor(ids)
    span = torch.tensor([[1, 1 + len(ids)] for ids in names])
    return TokenBatch(tokens, torch.zeros_like(tokens, dtype=torch.bool), {"name": span})


def probe_groups(protocol: str, split: PeopleSplit) -> dict[str, np.ndarray]:
    """Whom the probes of a protocol's model read: everyone; the celebrity model's celebrities and
    minority apart (their biographies differ, so might where their knowledge sits)."""
    if PROTOCOLS[protocol].augmented == "celebrities":
        return {"celebrities": split.train, "minority": split.test}
    return {"everyone": np.arange(split.N)}


def probe_rows(model: Transformer, bios: BioS, config: Mapping[str, Any],
               groups: Mapping[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Part 3.1's probes on the last layer, one row per (group, site, position, attribute) with
    ``labkit.probe.probe_table``'s columns plus ``site`` and ``group``: P-probing of each attribute at
    the token before it in a canonical-order biography and at the token before the first attribute's
    value (in the sentence that opens with the name), and Q-probing of each attribute at the bare name's last token.
    Each group of ``groups`` (default: everyone) is probed on its own people (its own train/test split)."""
    canonical = BioS(bios.n_items, bios.seed, mode="single", permute=False, pools=bios.pools).exposure(0)
    names = bare_names(bios)
    labels = probe_labels(bios)
    kwargs = {"seed": int(config["seed"]), "test_fraction": float(config["test_fraction"]), "C": float(config["C"]),
              "max_iter": int(config["probe_iterations"]), "layers": [model.cfg.n_layer - 1]}
    tables = []
    for group, people in (groups or {"everyone": np.arange(bios.n_items)}).items():
        bio, name = canonical.select(people), names.select(people)
        for a in QA_ATTRIBUTES:
            target = {a: labels[a][torch.as_tensor(np.asarray(people, dtype=np.int64))]}
            positions = list(dict.fromkeys([f"before_value/{a}", f"before_value/{QA_ATTRIBUTES[0]}"]))
            tables.append(probe.probe_table(model, bio, positions=positions, targets=target, **kwargs)
                          .assign(site="P", group=group))
            tables.append(probe.probe_table(model, name, positions=["name_last"], targets=target, **kwargs)
                          .assign(site="Q", group=group))
    return pd.concat(tables, ignore_index=True).to_dict("records")


def memorized(model: Transformer, pretraining: Any, people: np.ndarray, renderings: int) -> dict[str, float]:
    """Per attribute, the fraction of ``people``'s values that greedy decoding reproduces inside their
    biographies (every one of the first ``renderings`` exposures counted): whether the model stores them."""
    out: dict[str, list[float]] = {a: [] for a in QA_ATTRIBUTES}
    for e in range(renderings):
        sub = pretraining.exposure(e).select(people)
        for a in QA_ATTRIBUTES:
            out[a].append(float(answer_correct(model, sub, f"value/{a}").double().mean()))
    return {a: float(np.mean(v)) for a, v in out.items()}


def answer_examples(model: Transformer, bios: BioS, people: Sequence[int]) -> list[dict[str, Any]]:
    """The model's greedy answers (generated, as text) to the six questions about ``people``."""
    qa = QAData(bios, people)
    batch = qa.exposure(0)
    start = batch.spans["answer"][:, 0].tolist()
    prompts = [batch.tokens[i, : start[i]].tolist() for i in range(qa.n_items)]
    stop = bios.tokenizer.encode(".")
    generated = greedy(model, prompts, max_new_tokens=12, stop=stop)
    decode = bios.tokenizer.decode
    return [{"person": int(qa.person_of_row[i]), "attribute": qa.attributes[qa.attribute_of_row[i]],
             "question": decode(prompts[i][1:]), "answer": decode([t for t in generated[i] if t not in stop]),
             "truth": bios.people.value(qa.attributes[qa.attribute_of_row[i]], int(qa.person_of_row[i]))}
            for i in range(qa.n_items)]


class ExtractionRun(BatchableRun):
    """Pretrain one protocol (or load its committed pretrained model), then measure it: storage, probes,
    QA finetuning on the training half and exact-match answers of both halves (module docstring)."""

    def setup(self, config: dict[str, Any]) -> RunSetup:
        t0 = time.perf_counter()
        data, bios, split = pretraining_data(config)
        model = Transformer(model_config(config, bios), seed=int(config["seed"]))
        recipe = TrainConfig(exposures=int(config["exposures"]), batch_size=int(config["batch_size"]),
                             lr=float(config["lr"]), weight_decay=float(config["weight_decay"]),
                             seed=int(config["seed"]))
        return RunSetup(model, data, recipe, extra={"t0": t0, "bios": bios, "split": split})

    def finish(self, config: dict[str, Any], setup: RunSetup, history: TrainHistory) -> dict[str, Any]:
        out = {"pretrain": {"final_loss": history.final_loss, "steps": history.total_steps,
                            "tokens_seen": history.tokens_seen, "wall_time": history.wall_time,
                            "loss_curve": history.summary(40)}}
        out |= self.measure(config, config, setup.model, setup.dataset, setup.extra["bios"], setup.extra["split"])
        if config.get("keep_model"):
            from labkit.experiments.base import regenerate_command
            from labkit.experiments.models import save_trained

            save_trained(setup.model, pretrain_part(config), models_folder(), {"pretrain_loss": history.final_loss},
                         regenerate_command(NAME, "cpu-full"))
        return out

    def measure(self, config: Mapping[str, Any], pretrain: Mapping[str, Any], model: Transformer, data: Any,
                bios: BioS, split: PeopleSplit) -> dict[str, Any]:
        """Everything after pretraining, for the evaluation keys of ``config`` and the train config
        ``pretrain`` (the same dict, or a saved run's ``model_config``)."""
        t0 = time.perf_counter()
        protocol = PROTOCOLS[pretrain["protocol"]]
        augmented = protocol.augmented == "all"  # else the test half has one plain biography each
        stored = memorized(model, data if augmented else bios, split.test, int(pretrain["multi"]) if augmented else 1)
        out: dict[str, Any] = {"memorized_test": stored, "information_bits": bios.information_bits()}
        if config.get("probe"):
            out["probes"] = probe_rows(model, bios, config, probe_groups(pretrain["protocol"], split))
        answering = model
        if protocol.finetunes:
            recipe = TrainConfig(exposures=int(config["finetune_exposures"]), lr=float(config["finetune_lr"]),
                                 batch_size=int(config["finetune_batch_size"]), weight_decay=0.0,
                                 seed=int(pretrain["seed"]))
            answering, tuned = finetune(model, QAData(bios, split.train), recipe)
            out["finetune"] = {"final_loss": tuned.final_loss, "steps": tuned.total_steps,
                               "wall_time": tuned.wall_time}
        out["qa_train"] = qa_accuracy(answering, QAData(bios, split.train))
        out["qa_test"] = qa_accuracy(answering, QAData(bios, split.test))
        out["answers"] = answer_examples(answering, bios, split.test[:2])
        out["measure_time"] = time.perf_counter() - t0
        return out

    def shape_key(self, config: dict[str, Any]):
        return None if config.get("method") == "saved" else super().shape_key(config)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        if config.get("method") != "saved":
            t0 = time.perf_counter()
            return super().__call__(config) | {"wall_time": time.perf_counter() - t0}
        t0 = time.perf_counter()
        pretrain = dict(config["model_config"])
        model = load_trained(pretrain, models_folder())
        data, bios, split = pretraining_data(pretrain)
        out = self.measure(config, pretrain, model, data, bios, split)
        return out | {"wall_time": time.perf_counter() - t0}


def models_folder():
    """Where the cpu-full sweep keeps seed 0's pretrained main models, which the quick profile loads."""
    from labkit.experiments import models_folder as folder

    return folder(NAME, "cpu-full")


#: ``run(config)``: one protocol, pretrained (batchable) or loaded, then measured.
run = ExtractionRun()


def cost(config: Mapping[str, Any]) -> float:
    """Relative cost: the records a run trains on (:func:`trained_records`) × width²."""
    pre = config["model_config"] if config.get("method") == "saved" else config
    return trained_records(config) * float(pre["d_model"]) ** 2


def trained_records(config: Mapping[str, Any]) -> float:
    """Records a run trains on, for ``labkit.experiments.costs``: pretraining's N per exposure (mixed
    training: N biographies + 3N QA pairs), plus the finetuning's 3N QA pairs per finetuning exposure; a
    saved run only finetunes. QA pairs count as biographies there (they are about a third as long), so
    the FLOPs are an upper bound."""
    pre = config["model_config"] if config.get("method") == "saved" else config
    N = float(pre["N"])
    finetuning = 3 * N * float(config["finetune_exposures"]) if PROTOCOLS[pre["protocol"]].finetunes else 0.0
    if config.get("method") == "saved":
        return finetuning
    return N * (4 if pre["protocol"] == "mixed" else 1) * float(pre["exposures"]) + finetuning


def sweep(profile: Profile[Sizes, Expect], seed: int = 0, results_dir: str | None = None, **kwargs: Any):
    """Run the chapter's grid for one seed through ``labkit.sweep``; returns the ``SweepReport``."""
    return run_grid(grid(profile.sizes, (seed,)), run, profile.run, results_dir, cost=cost, prefix=NAME, **kwargs)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _pretrain_config(record: Mapping[str, Any]) -> Mapping[str, Any]:
    config = record["config"]
    return config["model_config"] if config.get("method") == "saved" else config


def protocols_table(records: Iterable[Mapping[str, Any]], series: str = "main") -> pd.DataFrame:
    """One row per run of ``series``: protocol, N, exposures, seed, held-out (``test``) and training-half
    (``train``) QA accuracy (mean over the six attributes), the test half's values reproduced in the
    biographies (``memorized``) and the paper's accuracy."""
    rows = []
    for r in records:
        if r["config"].get("series") != series:
            continue
        pre, res = _pretrain_config(r), r["result"]
        name = pre["protocol"]
        rows.append({"protocol": name, "label": PROTOCOLS[name].label, "N": pre["N"], "exposures": pre["exposures"],
                     "seed": pre["seed"], "test": float(np.mean(list(res["qa_test"].values()))),
                     "train": float(np.mean(list(res["qa_train"].values()))),
                     "memorized": float(np.mean(list(res["memorized_test"].values()))),
                     "paper": PROTOCOLS[name].paper / 100})
    out = pd.DataFrame(rows, columns=["protocol", "label", "N", "exposures", "seed", "test", "train", "memorized",
                                      "paper"])
    order = {name: k for k, name in enumerate(PROTOCOLS)}
    return out.sort_values(["N", "exposures", "protocol", "seed"], key=lambda c: c.map(order) if c.name == "protocol"
                           else c, ignore_index=True)


def summary(records: Iterable[Mapping[str, Any]], series: str = "main") -> pd.DataFrame:
    """Per protocol (and N, exposures): mean and min-max over seeds of the held-out accuracy, and the
    means of the training-half accuracy and of the memorized values."""
    runs = protocols_table(records, series)
    if not len(runs):
        return runs
    grouped = runs.groupby(["protocol", "N", "exposures"], sort=False)
    out = grouped.agg(label=("label", "first"), test=("test", "mean"), test_min=("test", "min"),
                      test_max=("test", "max"), train=("train", "mean"), memorized=("memorized", "mean"),
                      paper=("paper", "first"), seeds=("seed", "count")).reset_index()
    return out


def attributes_table(records: Iterable[Mapping[str, Any]], half: str = "qa_test") -> pd.DataFrame:
    """Held-out (``half="qa_test"``) or training-half QA accuracy per protocol (rows) and attribute
    (columns), mean over seeds, main series."""
    rows = []
    for r in records:
        if r["config"].get("series") == "main":
            rows.append({"protocol": _pretrain_config(r)["protocol"], **r["result"][half]})
    frame = pd.DataFrame(rows, columns=["protocol", *QA_ATTRIBUTES])
    return frame.groupby("protocol", sort=False).mean().reindex([p for p in PROTOCOLS if p in set(frame.protocol)])


def probes_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Probe rows of every probed run, with ``protocol`` (``"<protocol>: <group>"`` for a group other
    than everyone), ``seed``, ``layer``, ``attribute`` (the target) and ``read_at`` (a P row's position's
    attribute, "name" for Q)."""
    rows = []
    for r in records:
        for row in r["result"].get("probes", []):
            pre = _pretrain_config(r)
            group = row.get("group", "everyone")
            probed = pre["protocol"] if group == "everyone" else f"{pre['protocol']}: {group}"
            rows.append({**row, "protocol": probed, "seed": pre["seed"], "attribute": row["target"],
                         "layer": "embedding" if row["hook"] == "hook_embed" else
                         f"block {row['hook'].split('.')[1]}",
                         "read_at": row["position"].removeprefix("before_value/") if row["site"] == "P" else "name"})
    return pd.DataFrame(rows)


def probe_summary(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per protocol, site and attribute, the last layer's held-out probe accuracy and selectivity (mean
    over seeds): P at the token before the attribute itself and at the token before the first
    attribute's value (in the sentence that opens with the name), Q at the bare name."""
    last = probes_table(records)
    if not len(last):
        return last
    parts = []
    own = last[(last.site == "P") & (last.read_at == last.attribute)].assign(site="P (before the attribute)")
    first = last[(last.site == "P") & (last.read_at == QA_ATTRIBUTES[0])].assign(site="P (first sentence)")
    q = last[last.site == "Q"].assign(site="Q (bare name)")
    for part in (own, first, q):
        parts.append(part.groupby(["protocol", "site", "attribute"], sort=False)[
            ["accuracy", "control_accuracy", "selectivity", "chance"]].mean().reset_index())
    return pd.concat(parts, ignore_index=True)


def probe_means(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`probe_summary` averaged over attributes: one row per (protocol, site)."""
    s = probe_summary(records)
    if not len(s):
        return s
    return s.groupby(["protocol", "site"], sort=False)[["accuracy", "selectivity", "chance"]].mean().reset_index()


def _mean(table_: pd.DataFrame, protocol: str, column: str = "test") -> float | None:
    part = table_[table_.protocol == protocol] if len(table_) else table_
    return float(part[column].mean()) if len(part) else None


def checks(records: Sequence[Mapping[str, Any]], expect: Expect) -> list[dict[str, Any]]:
    """What the claim cell asserts (``Expect``), each with the measured value."""
    runs = protocols_table(records)
    rows = []
    single, augmented = _mean(runs, "single"), _mean(runs, "augmented")
    if single is not None and augmented is not None:
        rows.append({"check": f"held-out QA: augmented − single ≥ {expect.margin:g}", "lab": augmented - single,
                     "holds": augmented - single >= expect.margin})
    for name in ("single", "augmented"):
        value = _mean(runs, name, "memorized")
        if value is not None:
            rows.append({"check": f"{name}: test half's values reproduced in its biographies ≥ "
                                  f"{expect.memorized_min:g}", "lab": value, "holds": value >= expect.memorized_min})
    if len(runs):
        worst = runs.groupby("protocol", sort=False)["train"].mean()
        rows.append({"check": f"every protocol answers ≥ {expect.train_min:g} of the training half", "lab":
                     float(worst.min()), "holds": float(worst.min()) >= expect.train_min})
    mixed = _mean(runs, "mixed")
    if mixed is not None and single is not None:
        rows.append({"check": f"held-out QA: mixed − single ≥ {expect.mixed_min:g}", "lab": mixed - single,
                     "holds": mixed - single >= expect.mixed_min})
    return rows


def claims(records: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Part 3.1's held-out QA accuracies next to ours, for ``labkit.tables.paper_vs_lab``, and its
    Q-probing contrast. The paper's scale is 100k people and GPT-2-sized models; "reproduces" here
    means the direction, clearly: single below 20%, the other protocols at least 10 points above it,
    Q-probing at least 0.05 higher after augmentation."""
    runs = protocols_table(records or [])
    single = _mean(runs, "single")
    rows = []
    for name, protocol in PROTOCOLS.items():
        lab = _mean(runs, name)
        expect = (0.0, 0.2) if name == "single" else ((single or 0.0) + 0.1, 1.0)
        rows.append({"claim": f"{protocol.label}: held-out QA accuracy", "paper": protocol.paper / 100,
                     "lab": lab, "expect": expect, "fmt": ".1%",
                     "note": "below 20%" if name == "single" else "≥ 10 points above single"})
    means = probe_means(records or [])
    q = means[means.site == "Q (bare name)"].set_index("protocol") if len(means) else None
    gap = (float(q.accuracy["augmented"] - q.accuracy["single"])
           if q is not None and {"single", "augmented"} <= set(q.index) else None)
    rows.append({"claim": "Q-probing at the bare name, last layer: augmented − single (mean of 6 attributes)",
                 "paper": "≈ +0.9 (≈ 100% vs low)", "lab": gap, "expect": (0.05, None), "fmt": "+.2f",
                 "note": "reproduces when ≥ +0.05"})
    return rows


def precomputed(path: str | None = None) -> dict[str, Any] | None:
    """The committed cpu-full results, or None when absent."""
    return load_results(path or PRECOMPUTED)


def provenance_line(results: Mapping[str, Any] | None) -> str:
    return base_provenance_line(results, NAME)


_FORMATS = {"test": ".1%", "test_min": ".1%", "test_max": ".1%", "train": ".1%", "memorized": ".1%",
            "paper": ".1%"}


def summary_view(records: Iterable[Mapping[str, Any]], series: str = "main") -> Table:
    """:func:`summary` as chapter 8 shows it."""
    columns = {"label": "protocol", "N": "N", "exposures": "exposures", "seeds": "seeds",
               "test": "held-out QA", "test_min": "min", "test_max": "max", "train": "training-half QA",
               "memorized": "test half stored", "paper": "paper (held-out)"}
    return table(summary(records, series), columns=columns, formats=_FORMATS)


def attributes_view(records: Iterable[Mapping[str, Any]], half: str = "qa_test") -> Table:
    frame = attributes_table(records, half).reset_index()
    frame["protocol"] = [PROTOCOLS[p].label for p in frame.protocol]
    return table(frame, formats={a: ".1%" for a in QA_ATTRIBUTES})


def probes_view(records: Iterable[Mapping[str, Any]]) -> Table:
    s = probe_summary(records)
    if not len(s):
        return table(s)
    wide = s.pivot_table(index=["site", "attribute"], columns="protocol", values="accuracy", sort=False)
    wide = wide.rename(columns=probed_label).reset_index()
    chance = s.groupby(["site", "attribute"], sort=False)["chance"].mean().values
    wide["chance"] = chance
    return table(wide, formats={c: ".1%" for c in wide.columns if c not in ("site", "attribute")})


def answers_view(records: Iterable[Mapping[str, Any]], person_rank: int = 0) -> Table:
    """Each main protocol's generated answers (seed 0) to the six questions about one QA-test person,
    next to the truth: what held-out accuracy counts."""
    rows = []
    for r in records:
        pre = _pretrain_config(r)
        if r["config"].get("series") != "main" or pre["seed"] != 0:
            continue
        people = sorted({a["person"] for a in r["result"]["answers"]})
        for a in r["result"]["answers"]:
            if a["person"] == people[person_rank]:
                rows.append({"protocol": SHORT[pre["protocol"]], "question": a["question"], "answer": a["answer"],
                             "truth": a["truth"], "right": "✓" if a["answer"] == a["truth"] else "✗"})
    return table(rows)


def texts_view(config: Mapping[str, Any], person: int = 0, renderings: int = 2) -> Table:
    """One person's biography in each rendering the protocols train on (plain; the first
    ``renderings`` augmented ones) and one QA pair: what the model reads."""
    pre = config["model_config"] if config.get("method") == "saved" else config
    plain = make_dataset({**pre, "multi": 1, "permute": False})
    augmented = make_dataset({**pre, "multi": PROFILES["cpu-full"].sizes.multi, "permute": True})
    rows = [{"text": "biography, single (the only one)", "content": plain.text(person)}]
    rows += [{"text": f"biography, multi5 + permute #{e + 1}", "content": augmented.text(person, e)}
             for e in range(renderings)]
    rows += [{"text": f"QA pair ({a})", "content": plain.qa_text(person, a)} for a in ("birth_city", "employer")]
    return table(rows)


def grid_view(configs: Iterable[Mapping[str, Any]]) -> Table:
    """One row per protocol of a grid (first seed): people, the QA halves, records and tokens per
    exposure, the information of the biographies and the model's parameters."""
    from labkit.experiments.models import param_count

    rows, seen = [], set()
    for config in configs:
        pre = config["model_config"] if config.get("method") == "saved" else config
        key = (pre["protocol"], pre["N"], pre["exposures"])
        if key in seen:
            continue
        seen.add(key)
        data, bios, split = pretraining_data(pre)
        batch = data.exposure(0)
        count = param_count(pre, bios)
        rows.append({"protocol": SHORT[pre["protocol"]], "N": pre["N"], "QA-train people": len(split.train),
                     "QA-test people": len(split.test), "records / exposure": data.n_items,
                     "tokens / exposure": int((batch.tokens != 0).sum()), "exposures": pre["exposures"],
                     "information (bits)": bios.information_bits(), "P": count.total,
                     "P non-embedding": count.non_embedding, "series": pre["series"],
                     "source": "committed model" if config.get("method") == "saved" else "trained here"})
    return table(rows, formats={"information (bits)": ",.0f", "P": ",", "P non-embedding": ",",
                                "tokens / exposure": ","})


def summary_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """What ``python -m labkit sweep extraction`` prints: :func:`summary` of both series."""
    return pd.concat([summary(records, "main"), summary(records, "scale")], ignore_index=True)


def provenance_view(results: Mapping[str, Any] | None) -> Table:
    from labkit.experiments import capacity

    return capacity.provenance_view(results, NAME)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


#: Short names of the protocols on figure axes.
SHORT = {"single": "single", "augmented": "multi5 + permute", "mixed": "mixed training",
         "celebrity": "celebrity"}


def probed_label(name: str) -> str:
    """A probed model's short name: the protocol's, with its group ("celebrity (minority): celebrities")."""
    protocol, _, group = name.partition(": ")
    return f"{SHORT[protocol]}: {group}" if group else SHORT[protocol]


def figure_protocols(runs_by_label: Mapping[str, Sequence[Mapping[str, Any]] | None], *,
                     title: str = "Held-out QA accuracy by protocol") -> go.Figure:
    """Grouped bars: held-out QA accuracy per protocol for each set of records (this run, the committed
    cpu-full run; min-max over seeds as error bars) and the paper's."""
    from labkit import plots

    series: dict[str, list[float | None]] = {"paper (allenzhu2023part31)": [p.paper / 100 for p in PROTOCOLS.values()]}
    ranges: dict[str, list[tuple[float, float] | None]] = {}
    for label, records in runs_by_label.items():
        s = summary(records or []).set_index("protocol") if records else None
        if s is None or not len(s):
            continue
        series[label] = [float(s.test[p]) if p in s.index else None for p in PROTOCOLS]
        ranges[label] = [(float(s.test_min[p]), float(s.test_max[p])) if p in s.index else None for p in PROTOCOLS]
    categories = [SHORT[p] + (" (minority)" if p == "celebrity" else "") for p in PROTOCOLS]
    return plots.grouped_bars(categories, series, title=title, text_format=".0%",
                              y_title="exact-match accuracy, QA-test half", ranges=ranges)


def figure_probes(records: Sequence[Mapping[str, Any]], *,
                  title: str = "Where the attributes are linearly readable (last layer)") -> go.Figure:
    """Grouped bars: held-out probe accuracy per probing site (mean over the six attributes) for each
    probed protocol, with the mean chance level as a reference line."""
    from labkit import plots

    means = probe_means(records)
    sites = list(dict.fromkeys(means.site))
    series = {}
    for p, part in means.groupby("protocol", sort=False):
        by_site = dict(zip(part.site, part.accuracy, strict=True))
        series[probed_label(p)] = [by_site.get(site) for site in sites]
    return plots.grouped_bars(sites, series, title=title, text_format=".0%",
                              y_title="probe accuracy (mean of 6 attributes)",
                              hlines={"chance (majority class)": float(means.chance.mean())})


def figure_scale(records: Sequence[Mapping[str, Any]], *,
                 title: str = "Finding the scale: held-out QA accuracy, single vs augmented") -> go.Figure:
    """Held-out accuracy of the single and augmented protocols at every (N, exposures) that ran."""
    from labkit import plots

    runs = pd.concat([protocols_table(records, "scale"), protocols_table(records, "main")], ignore_index=True)
    runs = runs[runs.protocol.isin(["single", "augmented"])]
    mean = runs.groupby(["protocol", "N", "exposures"], sort=False).test.mean().reset_index()
    points = sorted({(int(n), int(e)) for n, e in zip(mean.N, mean.exposures, strict=True)})
    series = {}
    for p, part in mean.groupby("protocol", sort=False):
        value = {(int(n), int(e)): t for n, e, t in zip(part.N, part.exposures, part.test, strict=True)}
        series[SHORT[p]] = [value.get(point) for point in points]
    return plots.grouped_bars([f"N={n}, {e} exp." for n, e in points], series, title=title, text_format=".0%",
                              y_title="exact-match accuracy, QA-test half")
