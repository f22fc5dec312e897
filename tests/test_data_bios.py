"""bioS: pools, people, rendering modes, spans, QA, accounting, validation and speed."""

from __future__ import annotations

import functools
import math
import re
import time

import numpy as np
import pytest
import torch
from conftest import constant_losses, raises_invalid
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import info
from labkit.data import TokenDataset
from labkit.data.bios import (
    KNOWLEDGE_ATTRIBUTES,
    POOL_FILES,
    POOLS_DIR,
    QA_TEMPLATES,
    SENTENCE_ATTRIBUTES,
    BioS,
    Pools,
    _parse_template,
    date_string,
    load_templates,
    sample_people,
)
from labkit.info import LOG2_S0, bios_information
from labkit.tokenizer import BOS_ID, EOS_ID, PAD_ID

FAST = settings(max_examples=15)
SMALL = Pools.load(first=3, middle=2, last=4)  # N0 = 24: uniqueness is tested at full occupancy


@pytest.fixture(scope="module")
def fresh():
    return BioS(300, seed=3)


def span_text(data: BioS, batch, name: str, row: int) -> str:
    start, end = batch.spans[name][row].tolist()
    return data.tokenizer.decode(batch.tokens[row, start:end])


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.) ", text) if s]


# ---- pools and templates ---------------------------------------------------------------------------------


def test_pool_files_hold_at_least_the_sizes_labkit_info_counts():
    # every list in pools/ (bar the templates) backs one Pools.load argument
    assert {file for file, _ in POOL_FILES.values()} == {p.name for p in POOLS_DIR.glob("*.txt")} - {"templates.txt"}
    for name, (file, size) in POOL_FILES.items():
        lines = [s for s in (POOLS_DIR / file).read_text(encoding="utf-8").splitlines() if s.strip()]
        assert len(lines) >= size, f"{file} has {len(lines)} entries, labkit.info counts {size} ({name})"
    assert tuple(POOL_FILES[k][1] for k in ("first", "middle", "last")) == info.BIOS_NAME_POOLS


def test_pools_have_the_paper_sizes_and_unique_entries():
    pools = Pools.load()
    sizes = {name: len(getattr(pools, name)) for name in POOL_FILES}
    assert sizes == dict(first=400, middle=400, last=1000, cities=200, universities=300, majors=100, employers=263)
    assert pools.n_names == info.N0_BIOS == 160_000_000
    assert pools.attribute_sizes() == info.BIOS_ATTRIBUTE_SIZES  # the data and the bit accounting agree
    for name in sizes:
        entries = getattr(pools, name)
        assert len(set(entries)) == len(entries), name
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z .'-]*, [A-Z]{2}", c) for c in pools.cities)
    assert set(pools.headquarters) <= set(pools.cities)
    assert pools.attribute_sizes() == {
        "birth_date": 67200,
        "birth_city": 200,
        "university": 300,
        "major": 100,
        "employer": 263,
        "gender": 2,
    }


def test_pools_take_prefixes_and_validate_sizes():
    pools = Pools.load(first=10, last=20)
    assert pools.first == Pools.load().first[:10] and pools.n_names == 10 * 400 * 20
    with pytest.raises(
        ValueError, match=r"first=401 is not valid; allowed: 1 <= first <= len\(first_names.txt\) = 400"
    ):
        Pools.load(first=401)
    with pytest.raises(ValueError, match="majors=0 is not valid"):
        Pools.load(majors=0)


def test_at_least_twenty_distinct_templates_per_attribute():
    templates = load_templates()
    assert tuple(templates) == SENTENCE_ATTRIBUTES
    for attribute, ts in templates.items():
        assert len(set(ts)) == len(ts) >= 20, attribute
    assert sum(len(ts) for ts in templates.values()) == 180  # the count stated in the module docstring
    for t in QA_TEMPLATES.values():
        _parse_template(t)
    with pytest.raises(ValueError, match="person slot"):
        _parse_template("{V} belongs to {S}.")  # value before the person: not allowed


def test_date_strings():
    assert date_string(0) == "January 1, 1900"
    assert date_string(((2 * 28) + 2) * 200 + 50) == "March 3, 1950"
    assert date_string(67199) == "December 28, 2099"


# ---- people ----------------------------------------------------------------------------------------------


def test_people_are_deterministic_and_seed_dependent():
    a, b, c = sample_people(500, seed=1), sample_people(500, seed=1), sample_people(500, seed=2)
    assert np.array_equal(a.names, b.names) and all(np.array_equal(a.codes[k], b.codes[k]) for k in a.codes)
    assert not np.array_equal(a.names, c.names)


@FAST
@given(st.integers(1, 24), st.integers(0, 2**32))
def test_full_names_are_unique_even_when_every_name_is_taken(N, seed):
    people = sample_people(N, seed, SMALL)
    names = [people.full_name(i) for i in range(N)]
    assert len(set(names)) == N


@FAST
@given(st.integers(1, 400), st.integers(0, 2**32))
def test_every_value_is_in_range(N, seed):
    people = sample_people(N, seed)
    sizes = people.pools.attribute_sizes()
    for attribute, size in sizes.items():
        codes = people.codes[attribute]
        assert codes.shape == (N,) and codes.min() >= 0 and codes.max() < size
    assert np.array_equal(people.codes["company_city"], people.pools.employer_city[people.codes["employer"]])
    assert (people.names >= 0).all() and (people.names < [400, 400, 1000]).all()


def test_person_view():
    people = sample_people(5, seed=0)
    p = people[2]
    assert p.full_name == people.full_name(2) and len(p.full_name.split()) == 3
    assert p.company_city == people.pools.headquarters[people.pools.employers.index(p.employer)]
    assert p.gender in ("male", "female") and p.pronoun == {"male": "he", "female": "she"}[p.gender]
    assert people[-1] == people[4] and people[1:3] == [people[1], people[2]]
    with pytest.raises(IndexError):
        people[5]


def test_more_people_than_names_is_rejected():
    with pytest.raises(ValueError, match=r"N=25 is not valid; allowed: 1 <= N <= N0 \(distinct full names\) = 24"):
        sample_people(25, pools=SMALL)
    with pytest.raises(ValueError, match="N=0 is not valid"):
        BioS(0)


# ---- rendering -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, permute, fullname",
    [("fresh", None, False), ("single", False, False), ("single", True, True), ("fresh", False, True)],
)
def test_spans_hold_each_persons_values(mode, permute, fullname):
    data = BioS(60, seed=5, mode=mode, permute=permute, fullname=fullname)
    assert isinstance(data, TokenDataset) and data.kind == "bios" and data.n_items == 60
    batch = data.exposure(2)
    assert batch.tokens.dtype == torch.int64 and batch.tokens.shape[0] == 60
    expected = {"name"} | {f"value/{a}" for a in SENTENCE_ATTRIBUTES} | (set() if fullname else {"value/gender"})
    assert set(batch.spans) == expected
    for i in range(60):
        person = data.people[i]
        text = data.tokenizer.decode(batch.tokens[i])
        first = sentences(text)[0]
        assert span_text(data, batch, "name", i) == person.full_name
        assert first.count(person.full_name) == 1 and batch.spans["name"][i, 0] >= 1
        for a in SENTENCE_ATTRIBUTES:
            assert span_text(data, batch, f"value/{a}", i) == getattr(person, a)
        pronouns = {"He", "he", "His", "his", "him", "She", "she", "Her", "her"}
        words = set(re.findall(r"\w+", text))
        if fullname:
            assert not words & pronouns and text.count(person.full_name) == 6
        else:
            assert text.count(person.full_name) == 1
            gender = span_text(data, batch, "value/gender", i)
            assert gender in (
                ("He", "he", "His", "his", "him") if person.gender == "male" else ("She", "she", "Her", "her")
            )
            # the gender span is the first pronoun: it starts the person slot of the second sentence
            assert batch.spans["value/gender"][i, 0] > batch.spans["name"][i, 1]
            assert not words & (
                {"She", "she", "Her", "her"} if person.gender == "male" else {"He", "he", "His", "his", "him"}
            )


def test_records_and_loss_mask():
    data = BioS(50, seed=0)
    batch = data.exposure(0)
    tokens, mask = batch.tokens, batch.loss_mask
    assert (tokens[:, 0] == BOS_ID).all()
    lengths = (tokens != PAD_ID).sum(1)
    assert (tokens[torch.arange(50), lengths - 1] == EOS_ID).all()
    assert torch.equal(mask, (tokens != PAD_ID) & (torch.arange(tokens.shape[1]) >= 1))
    assert lengths.max() == tokens.shape[1]  # padded to this exposure's longest biography only


def test_fresh_mode_rerenders_each_exposure_deterministically(fresh):
    a, b = fresh.exposure(0), fresh.exposure(1)
    assert not torch.equal(a.tokens[:, :20], b.tokens[:, :20])
    other = BioS(300, seed=3)
    assert torch.equal(other.exposure(7).tokens, fresh.exposure(7).tokens)  # order of rendering is irrelevant
    assert not torch.equal(BioS(300, seed=4).exposure(0).tokens[:, :20], a.tokens[:, :20])
    # permuted by default in fresh mode: the attributes do not always come in canonical order
    starts = torch.stack([a.spans[f"value/{x}"][:, 0] for x in SENTENCE_ATTRIBUTES], 1)
    assert not (starts.diff(dim=1) > 0).all()


def test_single_mode_repeats_and_multi_cycles():
    single = BioS(40, seed=1, mode="single")
    assert torch.equal(single.exposure(0).tokens, single.exposure(5).tokens)
    starts = torch.stack([single.exposure(0).spans[f"value/{x}"][:, 0] for x in SENTENCE_ATTRIBUTES], 1)
    assert (starts.diff(dim=1) > 0).all()  # canonical order without permute
    multi = BioS(40, seed=1, mode="single", multi=3)
    e0, e1, e3 = (multi.exposure(i).tokens for i in (0, 1, 3))
    assert torch.equal(e0, e3) and not torch.equal(e0[:, :20], e1[:, :20])


def test_text_and_qa(fresh):
    i = 17
    person = fresh.people[i]
    assert fresh.text(i, exposure=4) == fresh.tokenizer.decode(fresh.exposure(4).tokens[i])
    assert (
        fresh.qa_text(i, "birth_city") == f"What is the birth city of {person.full_name}? Answer: {person.birth_city}."
    )
    qa = fresh.qa("major")
    row = qa.tokens[i]
    start, end = qa.spans["value/major"][i].tolist()
    assert fresh.tokenizer.decode(row[start:end]) == person.major
    assert fresh.tokenizer.decode(row[slice(*qa.spans["name"][i].tolist())]) == person.full_name
    targets = qa.loss_mask[i].nonzero().flatten().tolist()
    assert targets == list(range(start, end + 2))  # the answer, its full stop and EOS
    sub = fresh.qa("university", people=[5, 2])
    assert fresh.tokenizer.decode(sub.tokens[1]).endswith(f"Answer: {fresh.people[2].university}.")
    with pytest.raises(ValueError, match="attribute='shoe_size' is not valid"):
        fresh.qa("shoe_size")
    with pytest.raises(ValueError, match="indices 0 <= i < N = 300"):
        fresh.qa("major", people=[300])


def test_used_tokens_cover_every_exposure_and_no_pad(fresh):
    used = fresh.used_tokens()
    assert torch.equal(used, used.unique()) and PAD_ID not in used.tolist()
    seen = torch.cat([fresh.exposure(i).tokens.flatten() for i in range(5)]).unique()
    assert set(seen.tolist()) - {PAD_ID} <= set(used.tolist())
    assert len(used) < fresh.vocab_size  # names and values of absent people, QA words: unused rows
    small = BioS(3, seed=0, mode="single")
    assert len(small.used_tokens()) < len(used)


# ---- accounting ------------------------------------------------------------------------------------------


def test_information_and_bits_learned_limits(fresh):
    N = fresh.n_items
    assert fresh.information_bits() == pytest.approx(bios_information(N))
    ln = math.log
    full = functools.partial(constant_losses, N)

    sizes = fresh.pools.attribute_sizes()
    oracle = {"name": full(ln(N))} | {f"value/{a}": full(0.0) for a in SENTENCE_ATTRIBUTES}
    oracle["value/gender"] = full(0.0)
    assert fresh.bits_learned(oracle).bits == pytest.approx(bios_information(N, exact=False), rel=1e-9)
    nothing = {"name": full(ln(fresh.pools.n_names))}
    nothing |= {f"value/{a}": full(ln(sizes[a])) for a in KNOWLEDGE_ATTRIBUTES}
    nothing["value/company_city"] = full(0.0)  # derived: never counted
    assert fresh.bits_learned(nothing).bits == pytest.approx(0.0, abs=1e-6)
    # a subset of people gives the same estimate when their losses are the same
    assert fresh.bits_learned({k: v[:10] for k, v in oracle.items()}).bits == pytest.approx(
        fresh.bits_learned(oracle).bits
    )
    with pytest.raises(ValueError, match="'value/gender' is missing"):
        fresh.bits_learned({k: v for k, v in oracle.items() if k != "value/gender"})


def test_fullname_mode_drops_gender_from_the_knowledge():
    data = BioS(20, seed=0, fullname=True)
    assert data.knowledge_attributes == KNOWLEDGE_ATTRIBUTES[:-1]
    assert data.information_bits() == pytest.approx(bios_information(20, log2_S0=LOG2_S0 - 1))


# ---- validation and speed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="bogus"), "mode='bogus' is not valid; allowed: 'fresh', 'single'"),
        (dict(mode="fresh", multi=2), "multi=2 is not valid with mode='fresh'"),
        (dict(mode="single", multi=0), "multi=0 is not valid; allowed: multi >= 1"),
        (dict(seed=-1), "seed=-1 is not valid"),
        (dict(N=160_000_001), "N=160000001 is not valid; allowed: 1 <= N <= N0"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with raises_invalid(message):
        BioS(**(dict(N=10) | kwargs))


def test_invalid_exposure_index(fresh):
    with pytest.raises(ValueError, match="index=-1 is not valid"):
        fresh.exposure(-1)


def test_100k_people_sampled_and_tokenized_within_budget():
    start = time.perf_counter()
    data = BioS(100_000, seed=11)
    batch = data.exposure(0)
    elapsed = time.perf_counter() - start
    assert batch.tokens.shape[0] == 100_000
    assert elapsed < 10.0, f"{elapsed:.1f} s"
