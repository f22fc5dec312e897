"""QA data, the people split, mixed training and the celebrity population (labkit.data.extraction)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import raises_invalid

from labkit.data.base import TokenBatch, concat_batches
from labkit.data.bios import BioS, Pools
from labkit.data.extraction import QA_ATTRIBUTES, CelebrityBioS, MixedData, PeopleSplit, QAData
from labkit.tokenizer import EOS_ID, PAD_ID

POOLS = Pools.load(first=20, middle=20, last=20)


def bios(n: int = 30, **kw) -> BioS:
    return BioS(n, seed=3, mode="single", pools=POOLS, **kw)


def test_split_is_a_partition_deterministic_and_seeded():
    a, b = PeopleSplit.halves(101, seed=5), PeopleSplit.halves(101, seed=5)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert len(a.train) == 50 and len(a.test) == 51 and a.N == 101
    assert np.array_equal(np.sort(np.concatenate([a.train, a.test])), np.arange(101))
    assert not np.array_equal(a.train, PeopleSplit.halves(101, seed=6).train)


def test_split_rejects_overlap_and_degenerate_fractions():
    with raises_invalid("both halves"):
        PeopleSplit(np.array([0, 1]), np.array([1, 2]))
    with raises_invalid("train_fraction"):
        PeopleSplit.halves(3, train_fraction=0.1)


def test_no_leakage_between_halves():
    """The QA data of the training half never names a test person (no question or answer of theirs)."""
    data = bios(40)
    split = PeopleSplit.halves(40, seed=1)
    qa = QAData(data, split.train)
    train_names = {data.people.full_name(i) for i in split.train}
    test_names = {data.people.full_name(i) for i in split.test}
    assert set(qa.person_of_row.tolist()) == set(split.train.tolist())
    texts = [data.tokenizer.decode(t) for t in qa.exposure(0).tokens]
    assert len(texts) == 6 * len(split.train)
    for text in texts:
        assert any(name in text for name in train_names)
        assert not any(name in text for name in test_names)


def test_qa_rows_mask_and_spans():
    data = bios(12)
    people = [3, 7, 1]
    qa = QAData(data, people)
    batch = qa.exposure(0)
    assert qa.n_items == 18 and batch.tokens.shape[0] == 18
    for a in QA_ATTRIBUTES:
        rows = qa.rows(a)
        assert np.array_equal(qa.person_of_row[rows], people)
        for r, person in zip(rows, people, strict=True):
            s, e = batch.spans["answer"][r].tolist()
            assert data.tokenizer.decode(batch.tokens[r, s:e]) == data.people.value(a, person)
            ns, ne = batch.spans["name"][r].tolist()
            assert data.tokenizer.decode(batch.tokens[r, ns:ne]) == data.people.full_name(person)
            targets = batch.loss_mask[r].nonzero().flatten()
            # loss on the answer, the full stop and EOS only
            assert targets[0] == s and batch.tokens[r, targets[-1]] == EOS_ID and len(targets) == e - s + 2
            question = data.qa_text(person, a).split(" Answer: ")[0] + " Answer:"
            assert data.tokenizer.decode(batch.tokens[r, 1:s]) == question


def test_qa_information_and_bits():
    data = bios(10)
    qa = QAData(data, [0, 1])
    sizes = POOLS.attribute_sizes()
    expected = 2 * sum(np.log2(sizes[a]) for a in QA_ATTRIBUTES if a != "company_city")
    assert qa.information_bits() == pytest.approx(expected)
    perfect = qa.bits_learned({"answer": torch.zeros(qa.n_items)})
    assert perfect.bits == pytest.approx(expected)
    marginal = torch.tensor([np.log(sizes.get(QA_ATTRIBUTES[k], 1)) for k in qa.attribute_of_row])
    assert qa.bits_learned({"answer": marginal}).bits == pytest.approx(0.0, abs=1e-9)
    with raises_invalid("entity_loss['answer']"):
        qa.bits_learned({"answer": torch.zeros(3)})


def test_qa_rejects_bad_input():
    data = bios(10)
    with raises_invalid("attributes"):
        QAData(data, [0], attributes=("shoe_size",))
    with raises_invalid("people"):
        QAData(data, [])
    with raises_invalid("people"):
        QAData(data, [10]).exposure(0)


def test_mixed_data_has_every_bio_and_the_training_qa_once():
    data = bios(20)
    split = PeopleSplit.halves(20)
    qa = QAData(data, split.train)
    mixed = MixedData(data, qa)
    batch = mixed.exposure(0)
    assert mixed.n_items == 20 + 60 == batch.tokens.shape[0]
    bio, q = data.exposure(0), qa.exposure(0)
    assert torch.equal(batch.tokens[:20, : bio.tokens.shape[1]], bio.tokens)
    assert torch.equal(batch.tokens[20:, : q.tokens.shape[1]], q.tokens)
    assert torch.equal(batch.loss_mask[20:, : q.tokens.shape[1]], q.loss_mask)
    assert mixed.exposure(1) is batch  # single biographies: the same batch, staged once
    assert 0.2 < mixed.qa_token_share < 0.8
    assert mixed.information_bits() == data.information_bits()
    with pytest.raises(ValueError, match="same BioS"):
        MixedData(bios(20), qa)


def test_mixed_data_cycles_augmented_biographies():
    data = bios(10, multi=2, permute=True)
    mixed = MixedData(data, QAData(data, [0, 1]))
    a, b = mixed.exposure(0), mixed.exposure(1)
    assert not torch.equal(a.tokens[:10], b.tokens[:10]) and torch.equal(mixed.exposure(2).tokens, a.tokens)


def test_celebrity_rows_come_from_the_right_rendering():
    celebrities = [0, 2, 5]
    data = CelebrityBioS(8, celebrities, seed=3, pools=POOLS)
    plain = BioS(8, seed=3, mode="single", pools=POOLS)
    augmented = BioS(8, seed=3, mode="single", multi=5, permute=True, pools=POOLS)
    for e in (0, 1, 7):
        batch = data.exposure(e)
        for i in range(8):
            source = augmented.exposure(e) if i in celebrities else plain.exposure(0)
            n = source.tokens.shape[1]
            assert torch.equal(batch.tokens[i, :n], source.tokens[i])
            assert bool((batch.tokens[i, n:] == PAD_ID).all())
            for name, span in source.spans.items():
                assert torch.equal(batch.spans[name][i], span[i])
    assert data.information_bits() == plain.information_bits()
    with raises_invalid("celebrities"):
        CelebrityBioS(8, [8], pools=POOLS)


def test_concat_batches_pads_and_keeps_shared_spans():
    a = TokenBatch(torch.tensor([[1, 5, 2]]), torch.tensor([[False, True, True]]),
                   {"x": torch.tensor([[1, 2]]), "y": torch.tensor([[1, 3]])})
    b = TokenBatch(torch.tensor([[1, 6, 7, 8, 2]]), torch.ones(1, 5, dtype=torch.bool), {"x": torch.tensor([[2, 4]])})
    c = concat_batches([a, b])
    assert c.tokens.tolist() == [[1, 5, 2, PAD_ID, PAD_ID], [1, 6, 7, 8, 2]]
    assert c.loss_mask[0].tolist() == [False, True, True, False, False]
    assert set(c.spans) == {"x"} and c.spans["x"].tolist() == [[1, 2], [2, 4]]
    with raises_invalid("batches"):
        concat_batches([])


def test_registry_builds_augmented_bios_with_smaller_name_pools():
    from labkit.data.registry import context_length, data_keys, make_dataset

    keys = data_keys({"kind": "bios", "mode": "single", "multi": 5, "permute": True, "name_pools": [20, 20, 20]})
    assert keys == {"data": "bios", "mode": "single", "multi": 5, "permute": True, "name_pools": [20, 20, 20]}
    data = make_dataset({**keys, "N": 30, "seed": 4})
    assert (data.multi, data.permute, data.pools.n_names, data.seed) == (5, True, 8000, 4)
    assert context_length({**keys, "N": 30}, data) >= data.exposure(0).tokens.shape[1]
    assert data_keys({"kind": "bios"})["name_pools"] == [400, 400, 1000]
    with raises_invalid("name_pools"):
        make_dataset({**keys, "name_pools": [20, 20], "N": 5})
