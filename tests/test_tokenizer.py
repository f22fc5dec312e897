"""Word-level tokenizer and block vocabularies: deterministic ids, round trips, span tracking."""

from __future__ import annotations

import pytest
import torch

from labkit.tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, BlockVocab, Tokenizer, split_words

TEXTS = [
    "Anya Briar Forger was born on March 3, 1950.",
    "Her birthplace is Princeton, NJ.",
    "Anya Briar Forger's alma mater is Princeton University.",
    "She obtained a bachelor's degree from Winston-Salem College.",
    "What is the birth city of Anya Briar Forger? Answer: Princeton, NJ.",
]


def test_special_ids_come_first_then_sorted_words():
    tok = Tokenizer(["zeta", "alpha", "Beta", "alpha"])
    assert (PAD_ID, BOS_ID, EOS_ID) == (0, 1, 2)
    assert tok.tokens == SPECIAL_TOKENS + ("Beta", "alpha", "zeta")
    assert tok.vocab_size == 6 and len(tok) == 6
    assert tok.id_of("alpha") == 4


def test_ids_do_not_depend_on_input_order():
    a = Tokenizer.from_texts(TEXTS)
    b = Tokenizer.from_texts(list(reversed(TEXTS)) + TEXTS)
    assert a.tokens == b.tokens


def test_split_words_keeps_punctuation_and_possessive_as_tokens():
    assert split_words("Forger's date: March 3, 1950.") == ["Forger", "'s", "date", ":", "March", "3", ",", "1950", "."]


@pytest.mark.parametrize("text", TEXTS)
def test_decode_inverts_encode(text):
    tok = Tokenizer.from_texts(TEXTS)
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids + [PAD_ID, PAD_ID])) == text


def test_unknown_word_raises_and_names_it():
    tok = Tokenizer.from_texts(TEXTS)
    with pytest.raises(ValueError, match="'Zanzibar'"):
        tok.encode("Anya was born on Zanzibar.")


def test_encode_spans_tracks_multi_token_entities():
    tok = Tokenizer.from_texts(TEXTS)
    pieces = [("Anya Briar Forger", "name"), (" was born on ", None), ("March 3, 1950", "date"), (".", None)]
    ids, spans = tok.encode_spans(pieces)
    assert ids == tok.encode("Anya Briar Forger was born on March 3, 1950.", bos=True, eos=True)
    assert spans == {"name": (1, 4), "date": (7, 11)}
    assert tok.decode(ids[slice(*spans["date"])]) == "March 3, 1950"
    with pytest.raises(ValueError, match="twice"):
        tok.encode_spans([("Anya", "x"), ("Briar", "x")])


def test_block_vocab_is_contiguous_and_decodes():
    vocab = BlockVocab([("n0_", 3), ("k", 2), ("t", 4)])
    assert vocab.vocab_size == 3 + 3 + 2 + 4
    assert (vocab.offset("n0_"), vocab.offset("k"), vocab.offset("t")) == (3, 6, 8)
    assert vocab.token(vocab.offset("t") + 3) == "t3"
    assert vocab.decode([BOS_ID, 4, 6, 9, EOS_ID]) == "n0_1 k0 t1"
    assert vocab.decode([BOS_ID, 4], skip_special=False) == "<bos> n0_1"
    with pytest.raises(ValueError, match="twice"):
        BlockVocab([("a", 1), ("a", 2)])
