"""bioS: synthetic biographies of N people (Physics of LMs Parts 3.1, 3.2, 3.3).

Each person has a unique full name (first / middle / last from pools of 400 / 400 / 1000, N0 = 1.6e8)
and independent uniform attributes: birth date (12 months × 28 days × 200 years, 1900-2099), birth city
(200, "City, ST"), university (300), major (100), employer (263; each has a fixed headquarters city, the
"company city", which is therefore not extra knowledge) and gender (2, told only by the pronouns).

A biography is six sentences, one per attribute (birth date, birth city, university, major, employer,
company city). Each sentence is drawn from **30 templates per attribute (180 in all)**, in
``pools/templates.txt``. The first sentence names the person; later ones use the pronoun. Why this
shape: it is the bioS of the papers, so the lab's numbers can be set next to theirs, and every fact sits
in a known token span, whose summed loss is what the bit meter (labkit.info, Def 4.3) reads.

Modes and augmentations (Part 3.1 / 3.3):
- ``mode="fresh"``: Part 3.3's bioS(N): template choice (and, with ``permute``, sentence order) is
  resampled at every exposure, deterministically in ``(seed, exposure index)``.
- ``mode="single"``: bioS^simple(N): fixed biographies. ``multi=M`` gives M fixed biographies per person
  (templates resampled per biography); exposure i shows biography ``i mod M`` of every person, so one
  exposure is always one sighting of each person's knowledge.
- ``permute``: sentence order shuffled (default: on in fresh mode, off in single mode).
- ``fullname``: pronouns replaced by the full name. The text then never tells the gender, so gender is
  dropped from the knowledge (no "value/gender" span, S0 without the factor 2).

Spans of an exposure (``TokenBatch.spans``): ``"name"`` (the three name tokens in the first sentence),
``"value/<attr>"`` for the five attributes and ``"value/company_city"`` (derived from the employer, not
counted as knowledge), and ``"value/gender"``: the first pronoun (the person slot of the second
sentence: He/She, His/Her, him/her), whose loss is how well the model knows the gender.
QA (Part 3.1): ``qa(attr)`` renders "What is the birth city of Anya Briar Forger? Answer: Princeton, NJ."
with the loss on the answer only.

Speed: rendering is vectorized: every biography is a row of 50 *pieces* (pre-tokenized template
fragments, name tokens, values) expanded into token ids by one gather; no per-person Python loop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import overload

import numpy as np
import torch

from labkit import info
from labkit.data import check_choice, check_int, loss_mask, rng_for
from labkit.data.base import TokenBatch
from labkit.info import BitsLearned
from labkit.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, split_words

POOLS_DIR = Path(__file__).resolve().parent / "pools"
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
N_DAYS, FIRST_YEAR, N_YEARS = 28, 1900, 200
GENDERS = ("male", "female")
#: Attributes with a sentence in every biography, in canonical (unpermuted) order.
SENTENCE_ATTRIBUTES = ("birth_date", "birth_city", "university", "major", "employer", "company_city")
#: Attributes that are knowledge (Def 4.3's S0); company city is a function of the employer.
KNOWLEDGE_ATTRIBUTES = ("birth_date", "birth_city", "university", "major", "employer", "gender")
MODES = ("fresh", "single")
QA_TEMPLATES: dict[str, str] = {
    "birth_date": "What is the birth date of {s}? Answer: {V}.",
    "birth_city": "What is the birth city of {s}? Answer: {V}.",
    "university": "Which university did {s} study at? Answer: {V}.",
    "major": "What major did {s} study? Answer: {V}.",
    "employer": "Which company did {s} work for? Answer: {V}.",
    "company_city": "Where did {s} work? Answer: {V}.",
}
# Person slots: subject at sentence start / inside, possessive at start / inside, object.
_SLOTS = "SsPpo"
_POSSESSIVE = (2, 3)
_PRONOUNS = {"male": ("He", "he", "His", "his", "him"), "female": ("She", "she", "Her", "her", "her")}
_TEMPLATE_RE = re.compile(r"^([^{}]*)\{([SsPpo])\}([^{}]*)\{V\}([^{}]*)$")
# Columns of one sentence in the piece matrix.
_PRE, _Q1, _Q2, _Q3, _Q4, _MID, _VAL, _POST = range(8)
_WIDTH = 8
_STREAM_PEOPLE, _STREAM_RENDER = 11, 12
_FIRST, _MIDDLE, _LAST = info.BIOS_NAME_POOLS
#: Argument of :meth:`Pools.load` -> (its file in ``pools/``, its default size). The sizes come from
#: labkit.info, where N0 and S0 are computed from the same numbers; a test checks every file is that long.
POOL_FILES: dict[str, tuple[str, int]] = {
    "first": ("first_names.txt", _FIRST),
    "middle": ("middle_names.txt", _MIDDLE),
    "last": ("last_names.txt", _LAST),
    "cities": ("cities.txt", info.BIOS_ATTRIBUTE_SIZES["birth_city"]),
    "universities": ("universities.txt", info.BIOS_ATTRIBUTE_SIZES["university"]),
    "majors": ("majors.txt", info.BIOS_ATTRIBUTE_SIZES["major"]),
    "employers": ("employers.txt", info.BIOS_ATTRIBUTE_SIZES["employer"]),
}


def _col(sentence: np.ndarray | int, part: int) -> np.ndarray | int:
    """Column of ``part`` of sentence ``sentence`` in a piece matrix (column 0 is BOS)."""
    return 1 + _WIDTH * sentence + part


@cache
def _read_pool(name: str) -> tuple[str, ...]:
    lines = tuple(s.strip() for s in (POOLS_DIR / name).read_text(encoding="utf-8").splitlines())
    return tuple(s for s in lines if s)


@cache
def load_templates() -> dict[str, tuple[str, ...]]:
    """Sentence templates per attribute from ``pools/templates.txt`` (validated: one person slot before {V})."""
    out: dict[str, list[str]] = {}
    current = None
    for line in (POOLS_DIR / "templates.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = out.setdefault(line[1:-1], [])
            continue
        if current is None:
            raise ValueError(f"template {line!r} appears before any [attribute] header")
        _parse_template(line)
        current.append(line)
    if tuple(out) != SENTENCE_ATTRIBUTES:
        raise ValueError(f"templates.txt has sections {tuple(out)}, expected {SENTENCE_ATTRIBUTES}")
    return {a: tuple(ts) for a, ts in out.items()}


def _parse_template(template: str) -> tuple[str, int, str, str]:
    """Split a template into (text before the person slot, slot kind, text between, text after {V})."""
    m = _TEMPLATE_RE.match(template)
    if m is None:
        raise ValueError(f"template {template!r} is not valid; allowed: exactly one person slot "
                         "({S} {s} {P} {p} {o}) before exactly one {V}")
    return m.group(1), _SLOTS.index(m.group(2)), m.group(3), m.group(4)


def date_string(code: int) -> str:
    """The text of birth-date code ``(month·28 + day)·200 + year`` (0-based), e.g. "March 3, 1950"."""
    rest, year = divmod(int(code), N_YEARS)
    month, day = divmod(rest, N_DAYS)
    return f"{MONTHS[month]} {day + 1}, {FIRST_YEAR + year}"


@dataclass(frozen=True)
class Pools:
    """The name and value lists bioS draws from (entries unique within each list).

    ``Pools.load()`` reads the committed lists in ``labkit/data/pools/``; ``Pools.load(first=100, ...)``
    takes a prefix of a list (smaller N0 or attribute sets for quick experiments). ``headquarters[i]``
    is the city of ``employers[i]``.
    """

    first: tuple[str, ...]
    middle: tuple[str, ...]
    last: tuple[str, ...]
    cities: tuple[str, ...]
    universities: tuple[str, ...]
    majors: tuple[str, ...]
    employers: tuple[str, ...]
    headquarters: tuple[str, ...]

    @classmethod
    def load(cls, first: int = POOL_FILES["first"][1], middle: int = POOL_FILES["middle"][1],
             last: int = POOL_FILES["last"][1], cities: int = POOL_FILES["cities"][1],
             universities: int = POOL_FILES["universities"][1], majors: int = POOL_FILES["majors"][1],
             employers: int = POOL_FILES["employers"][1]) -> Pools:
        """The committed pools, each cut to the given size (a prefix of the file; default: the paper's)."""
        def take(name: str, size: int) -> tuple[str, ...]:
            file = POOL_FILES[name][0]
            entries = _read_pool(file)
            return entries[: check_int(name, size, 1, len(entries), f"len({file})")]

        rows = [e.split("|") for e in take("employers", employers)]
        return cls(
            first=take("first", first),
            middle=take("middle", middle),
            last=take("last", last),
            cities=take("cities", cities),
            universities=take("universities", universities),
            majors=take("majors", majors),
            employers=tuple(r[0].strip() for r in rows),
            headquarters=tuple(r[1].strip() for r in rows),
        )

    def __post_init__(self) -> None:
        for name in ("first", "middle", "last", "cities", "universities", "majors", "employers"):
            entries = getattr(self, name)
            if not entries or len(set(entries)) != len(entries):
                raise ValueError(f"pool {name!r} must be non-empty with unique entries")
        if len(self.headquarters) != len(self.employers):
            raise ValueError("every employer needs exactly one headquarters city")

    @property
    def n_names(self) -> int:
        """N0: the number of distinct full names."""
        return len(self.first) * len(self.middle) * len(self.last)

    @cached_property
    def company_cities(self) -> tuple[str, ...]:
        """The distinct headquarters cities (values of "company_city"), sorted."""
        return tuple(sorted(set(self.headquarters)))

    @cached_property
    def employer_city(self) -> np.ndarray:
        """Company-city code of each employer code."""
        index = {c: i for i, c in enumerate(self.company_cities)}
        return np.array([index[c] for c in self.headquarters], dtype=np.int64)

    def attribute_sizes(self) -> dict[str, int]:
        """Number of possible values of each knowledge attribute (S0 is their product)."""
        return {"birth_date": len(MONTHS) * N_DAYS * N_YEARS, "birth_city": len(self.cities),
                "university": len(self.universities), "major": len(self.majors),
                "employer": len(self.employers), "gender": len(GENDERS)}

    def values(self, attribute: str) -> tuple[str, ...]:
        """The value strings of an attribute, indexed by value code."""
        attribute = check_choice("attribute", attribute, SENTENCE_ATTRIBUTES + ("gender",))
        if attribute == "birth_date":
            return _all_dates()
        return {"birth_city": self.cities, "university": self.universities, "major": self.majors,
                "employer": self.employers, "company_city": self.company_cities, "gender": GENDERS}[attribute]


@cache
def _all_dates() -> tuple[str, ...]:
    return tuple(date_string(c) for c in range(len(MONTHS) * N_DAYS * N_YEARS))


@dataclass(frozen=True)
class Person:
    """One person of a bioS population, as text."""

    index: int
    full_name: str
    birth_date: str
    birth_city: str
    university: str
    major: str
    employer: str
    company_city: str
    gender: str

    @property
    def pronoun(self) -> str:
        return "he" if self.gender == "male" else "she"


class People(Sequence[Person]):
    """N people stored as integer codes (vectorized use) with a :class:`Person` view per index.

    ``names``: (N, 3) first / middle / last pool indices. ``codes[attr]``: (N,) value codes for every
    knowledge attribute and "company_city" (index into ``pools.values(attr)``; gender 0 = male).
    """

    def __init__(self, pools: Pools, names: np.ndarray, codes: Mapping[str, np.ndarray]) -> None:
        self.pools = pools
        self.names = names
        self.codes = dict(codes)

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, i: int) -> Person: ...
    @overload
    def __getitem__(self, i: slice) -> list[Person]: ...

    def __getitem__(self, i: int | slice) -> Person | list[Person]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"person index {i} out of range for {n} people")
        i %= n
        values = {a: self.value(a, i) for a in SENTENCE_ATTRIBUTES + ("gender",)}
        return Person(index=i, full_name=self.full_name(i), **values)

    def full_name(self, i: int) -> str:
        f, m, last = self.names[i]
        return f"{self.pools.first[f]} {self.pools.middle[m]} {self.pools.last[last]}"

    def value(self, attribute: str, i: int) -> str:
        """The text of person i's value of ``attribute``."""
        return self.pools.values(attribute)[int(self.codes[attribute][i])]


def sample_people(N: int, seed: int = 0, pools: Pools | None = None) -> People:
    """N people with distinct full names (drawn without replacement from the N0 names) and uniform,
    independent attributes. Deterministic in ``seed``."""
    pools = pools or Pools.load()
    N = check_int("N", N, 1, pools.n_names, "N0 (distinct full names)")
    rng = rng_for(seed, _STREAM_PEOPLE)
    flat = rng.choice(pools.n_names, size=N, replace=False).astype(np.int64)
    n_mid, n_last = len(pools.middle), len(pools.last)
    names = np.stack([flat // (n_mid * n_last), (flat // n_last) % n_mid, flat % n_last], axis=1)
    codes = {a: rng.integers(0, size, N, dtype=np.int64) for a, size in pools.attribute_sizes().items()}
    codes["company_city"] = pools.employer_city[codes["employer"]]
    return People(pools, names, codes)


class _Spec:
    """What rendering needs that depends only on the pools: the tokenizer and the piece table.

    A *piece* is a pre-tokenized run of ids (a template fragment, a name token, a value, a pronoun);
    ``flat[start[p] : start[p] + length[p]]`` are the ids of piece p, piece 0 is empty.
    """

    def __init__(self, pools: Pools) -> None:
        templates = {a: [_parse_template(t) for t in ts] for a, ts in load_templates().items()}
        qa = [_parse_template(QA_TEMPLATES[a]) for a in SENTENCE_ATTRIBUTES]
        values = {a: pools.values(a) for a in SENTENCE_ATTRIBUTES}
        words: list[str] = ["'s", *(p for g in GENDERS for p in _PRONOUNS[g])]
        words += [*pools.first, *pools.middle, *pools.last, *MONTHS]
        words += [str(d) for d in range(1, N_DAYS + 1)] + [str(FIRST_YEAR + y) for y in range(N_YEARS)]
        texts = [s for ts in [*templates.values(), qa] for t in ts for s in (t[0], t[2], t[3])]
        texts += [v for a, vs in values.items() if a != "birth_date" for v in vs] + [","]  # dates: words above
        self.tokenizer = Tokenizer(words + [w for t in texts for w in split_words(t)])

        self._pieces: list[list[int]] = [[]]
        self._index: dict[tuple[int, ...], int] = {(): 0}
        self.bos, self.eos = self._add_ids([BOS_ID]), self._add_ids([EOS_ID])
        self.apos = self._add("'s")
        self.pronoun = np.array([[self._add(p) for p in _PRONOUNS[g]] for g in GENDERS], dtype=np.int64)
        self.first, self.middle, self.last = (np.array([self._add(w) for w in pool], dtype=np.int64)
                                              for pool in (pools.first, pools.middle, pools.last))
        self.value = {a: np.array([self._add(v) for v in vs], dtype=np.int64) for a, vs in values.items()}
        self.n_templates = np.array([len(templates[a]) for a in SENTENCE_ATTRIBUTES], dtype=np.int64)
        width = int(self.n_templates.max())
        self.pre, self.kind, self.mid, self.post = (np.zeros((len(SENTENCE_ATTRIBUTES), width), np.int64)
                                                    for _ in range(4))
        for ai, a in enumerate(SENTENCE_ATTRIBUTES):
            for ti, (pre, kind, mid, post) in enumerate(templates[a]):
                self.pre[ai, ti], self.kind[ai, ti] = self._add(pre), kind
                self.mid[ai, ti], self.post[ai, ti] = self._add(mid), self._add(post)
        self.qa_pre = np.array([self._add(pre) for pre, _, _, _ in qa], dtype=np.int64)
        self.qa_kind = np.array([kind for _, kind, _, _ in qa], dtype=np.int64)
        self.qa_mid = np.array([self._add(mid) for _, _, mid, _ in qa], dtype=np.int64)
        self.qa_post = np.array([self._add(post) for _, _, _, post in qa], dtype=np.int64)
        self.length = np.array([len(p) for p in self._pieces], dtype=np.int64)
        self.start = np.cumsum(self.length) - self.length
        self.flat = np.array([i for p in self._pieces for i in p], dtype=np.int64)
        del self._pieces, self._index

    def _add_ids(self, ids: list[int]) -> int:
        key = tuple(ids)
        if key not in self._index:
            self._index[key] = len(self._pieces)
            self._pieces.append(ids)
        return self._index[key]

    def _add(self, text: str) -> int:
        return self._add_ids(self.tokenizer.encode(text))

    def template_pieces(self) -> np.ndarray:
        """Every piece id used by a biography template."""
        valid = np.arange(self.pre.shape[1])[None, :] < self.n_templates[:, None]
        return np.concatenate([self.pre[valid], self.mid[valid], self.post[valid]])

    def expand(self, pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of piece ids (n, c) -> (token ids padded with PAD (n, max_len), piece offsets, piece lengths).

        One vectorized gather: the j-th token of the whole batch comes from ``flat[start[piece] + k]``
        and goes to ``row·max_len + offset[piece] + k``.
        """
        n = pieces.shape[0]
        lens = self.length[pieces]
        offsets = np.cumsum(lens, axis=1) - lens
        max_len = int((offsets[:, -1] + lens[:, -1]).max())
        run = lens.ravel()
        total = int(run.sum())
        first = np.cumsum(run) - run
        step = np.arange(total, dtype=np.int64)
        src = np.repeat(self.start[pieces.ravel()] - first, run) + step
        dst = np.repeat((np.arange(n)[:, None] * max_len + offsets).ravel() - first, run) + step
        tokens = np.zeros(n * max_len, dtype=np.int64)
        tokens[dst] = self.flat[src]
        return tokens.reshape(n, max_len), offsets, lens

    def tokens_of(self, pieces: np.ndarray) -> np.ndarray:
        """The distinct token ids of a set of pieces."""
        tokens = self.expand(np.unique(pieces)[:, None])[0]
        return np.unique(tokens[tokens != PAD_ID])  # expand pads short pieces with PAD


@cache
def _spec(pools: Pools) -> _Spec:
    return _Spec(pools)


class BioS:
    """bioS(N) as a :class:`~labkit.data.base.TokenDataset` (see the module docstring).

    ``BioS(N, seed, mode="fresh")`` is Part 3.3's bioS(N); ``BioS(N, seed, mode="single")`` its
    bioS^simple(N); ``BioS(N, mode="single", multi=5, permute=True)`` Part 3.1's bioS multi5+permute.
    """

    kind = "bios"

    def __init__(self, N: int, seed: int = 0, mode: str = "fresh", multi: int = 1, permute: bool | None = None,
                 fullname: bool = False, pools: Pools | None = None) -> None:
        self.mode = check_choice("mode", mode, MODES)
        self.multi = check_int("multi", multi, 1)
        if self.mode == "fresh" and self.multi != 1:
            raise ValueError(f"multi={multi} is not valid with mode='fresh' (every exposure is a new biography); "
                             "allowed: multi=1, or mode='single' for M fixed biographies per person")
        self.seed = check_int("seed", seed, 0)
        self.permute = (self.mode == "fresh") if permute is None else bool(permute)
        self.fullname = bool(fullname)
        self.pools = pools or Pools.load()
        self.people = sample_people(N, seed, self.pools)
        self.n_items = len(self.people)
        self._spec = _spec(self.pools)
        self.tokenizer = self._spec.tokenizer
        self.vocab_size = self.tokenizer.vocab_size
        #: Attributes counted as knowledge (gender only when pronouns tell it).
        self.knowledge_attributes = tuple(a for a in KNOWLEDGE_ATTRIBUTES if a != "gender" or not self.fullname)
        sizes = self.pools.attribute_sizes()
        self.log2_S0 = float(sum(np.log2(sizes[a]) for a in self.knowledge_attributes))
        self._cache: tuple[int, TokenBatch] | None = None

    def __repr__(self) -> str:
        return (f"BioS(N={self.n_items}, seed={self.seed}, mode={self.mode!r}, multi={self.multi}, "
                f"permute={self.permute}, fullname={self.fullname})")

    # ---- rendering ----------------------------------------------------------------------------------

    def _variant(self, index: int) -> int:
        index = check_int("index", index, 0)
        return index % self.multi if self.mode == "single" else index

    def _draws(self, variant: int) -> tuple[np.ndarray, np.ndarray]:
        """Template index per (person, attribute) and sentence order per person for one rendering."""
        rng = rng_for(self.seed, _STREAM_RENDER, MODES.index(self.mode), variant)
        n, n_attr = self.n_items, len(SENTENCE_ATTRIBUTES)
        templates = np.stack([rng.integers(0, k, n, dtype=np.int64) for k in self._spec.n_templates], axis=1)
        if self.permute:
            order = np.argsort(rng.random((n, n_attr)), axis=1, kind="stable")
        else:
            order = np.broadcast_to(np.arange(n_attr), (n, n_attr))
        return templates, order

    def _render(self, rows: np.ndarray, pre: np.ndarray, kind: np.ndarray, mid: np.ndarray, post: np.ndarray,
                val: np.ndarray, name_mode: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sentences (n, J) of pieces for people ``rows`` -> expanded tokens, offsets and lengths."""
        spec = self._spec
        names = self.people.names[rows]
        gender = self.people.codes["gender"][rows][:, None]
        empty = np.zeros_like(pre)
        q1 = np.where(name_mode, spec.first[names[:, 0]][:, None], spec.pronoun[gender, kind])
        q2 = np.where(name_mode, spec.middle[names[:, 1]][:, None], empty)
        q3 = np.where(name_mode, spec.last[names[:, 2]][:, None], empty)
        q4 = np.where(name_mode & np.isin(kind, _POSSESSIVE), spec.apos, empty)
        n, J = pre.shape
        sentences = np.stack([pre, q1, q2, q3, q4, mid, val, post], axis=2).reshape(n, _WIDTH * J)
        ends = np.full((n, 1), spec.bos), np.full((n, 1), spec.eos)
        return spec.expand(np.concatenate([ends[0], sentences, ends[1]], axis=1))

    def _biographies(self, rows: np.ndarray, variant: int) -> TokenBatch:
        spec, codes = self._spec, self.people.codes
        templates, order = self._draws(variant)
        order, n = order[rows], len(rows)
        chosen = np.take_along_axis(templates[rows], order, axis=1)  # template of sentence j
        by_attr = np.stack([spec.value[a][codes[a][rows]] for a in SENTENCE_ATTRIBUTES], axis=1)
        name_mode = np.zeros(order.shape, dtype=bool)
        name_mode[:, 0] = True
        name_mode |= self.fullname
        tokens, offsets, lens = self._render(rows, spec.pre[order, chosen], spec.kind[order, chosen],
                                             spec.mid[order, chosen], spec.post[order, chosen],
                                             np.take_along_axis(by_attr, order, axis=1), name_mode)
        r = np.arange(n)[:, None]
        position = np.argsort(order, axis=1)  # sentence index of each attribute
        spans = {"name": np.stack([offsets[:, _col(0, _Q1)], offsets[:, _col(0, _Q4)]], axis=1)}
        for ai, a in enumerate(SENTENCE_ATTRIBUTES):
            c = _col(position[:, ai : ai + 1], _VAL)
            start = np.take_along_axis(offsets, c, axis=1)[:, 0]
            spans[f"value/{a}"] = np.stack([start, start + lens[r, c][:, 0]], axis=1)
        if not self.fullname:
            start = offsets[:, _col(1, _Q1)]
            spans["value/gender"] = np.stack([start, start + lens[:, _col(1, _Q1)]], axis=1)
        return _batch(tokens, spans)

    def exposure(self, index: int) -> TokenBatch:
        """Exposure ``index``: one biography of every person (person i in row i).

        Fresh mode renders new templates (and order, with ``permute``) per index; single mode cycles
        through the ``multi`` fixed biographies. Rows are padded to this exposure's longest biography.
        """
        variant = self._variant(index)
        if self._cache is None or self._cache[0] != variant:
            self._cache = (variant, self._biographies(np.arange(self.n_items), variant))
        return self._cache[1]

    def text(self, person: int, exposure: int = 0) -> str:
        """The biography of one person in exposure ``exposure``, as text."""
        person = check_int("person", person, 0, self.n_items - 1, "N - 1")
        batch = self._biographies(np.array([person]), self._variant(exposure))
        return self.tokenizer.decode(batch.tokens[0])

    def qa(self, attribute: str, people: Sequence[int] | np.ndarray | None = None) -> TokenBatch:
        """QA records "What is the birth city of X? Answer: Princeton, NJ." for ``people`` (default all).

        Row k is person ``people[k]``. Loss mask: the answer only (value, "." and EOS), as in QA
        finetuning. Spans: "name" (in the question) and "value/<attribute>" (the answer).
        """
        a = SENTENCE_ATTRIBUTES.index(check_choice("attribute", attribute, SENTENCE_ATTRIBUTES))
        rows = np.arange(self.n_items) if people is None else np.asarray(people, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_items):
            bad = rows[(rows < 0) | (rows >= self.n_items)][:5].tolist()
            raise ValueError(f"people containing {bad} is not valid; allowed: indices 0 <= i < N = {self.n_items}")
        spec, n = self._spec, len(rows)

        def column(v: np.ndarray | int) -> np.ndarray:
            return np.broadcast_to(np.asarray(v, dtype=np.int64).reshape(-1, 1), (n, 1))

        value = spec.value[attribute][self.people.codes[attribute][rows]]
        tokens, offsets, lens = self._render(rows, column(spec.qa_pre[a]), column(spec.qa_kind[a]),
                                             column(spec.qa_mid[a]), column(spec.qa_post[a]), column(value),
                                             np.ones((n, 1), dtype=bool))
        start = offsets[:, _col(0, _VAL)]
        spans = {"name": np.stack([offsets[:, _col(0, _Q1)], offsets[:, _col(0, _Q4)]], axis=1),
                 f"value/{attribute}": np.stack([start, start + lens[:, _col(0, _VAL)]], axis=1)}
        return _batch(tokens, spans, first_target=start)

    def qa_text(self, person: int, attribute: str) -> str:
        """One QA pair as text, e.g. "What is the birth city of Anya Briar Forger? Answer: Princeton, NJ."."""
        person = check_int("person", person, 0, self.n_items - 1, "N - 1")
        return self.tokenizer.decode(self.qa(attribute, [person]).tokens[0])

    # ---- accounting ---------------------------------------------------------------------------------

    def used_tokens(self) -> torch.Tensor:
        """Ids that can occur in any exposure: template words, pronouns, BOS/EOS, and the names and
        values of this population (not the whole pools, nor QA-only words)."""
        spec, codes = self._spec, self.people.codes
        pieces = [spec.template_pieces(), np.array([spec.bos, spec.eos, spec.apos]),
                  spec.first[self.people.names[:, 0]], spec.middle[self.people.names[:, 1]],
                  spec.last[self.people.names[:, 2]]]
        pieces += [spec.value[a][codes[a]] for a in SENTENCE_ATTRIBUTES]
        if not self.fullname:
            pieces.append(spec.pronoun.ravel())
        return torch.from_numpy(spec.tokens_of(np.concatenate(pieces)))

    def information_bits(self) -> float:
        """``log2 C(N0, N) + N·log2 S0`` (labkit.info.bios_information, exact form)."""
        return info.bios_information(self.n_items, self.pools.n_names, log2_S0=self.log2_S0)

    def bits_learned(self, entity_loss: Mapping[str, torch.Tensor]) -> BitsLearned:
        """Def 4.3 from per-person summed losses: p1 = "name", p2 = sum of the knowledge attributes'
        "value/<attr>" losses (company city excluded). Averages over the people given, scaled to N."""
        p1 = info.mean_loss(entity_loss, "name")
        p2 = sum(info.mean_loss(entity_loss, f"value/{a}") for a in self.knowledge_attributes)
        return info.bios_bits(self.n_items, p1, p2, self.pools.n_names, log2_S0=self.log2_S0)


def _batch(tokens: np.ndarray, spans: Mapping[str, np.ndarray], first_target: np.ndarray | int = 1) -> TokenBatch:
    """A TokenBatch from NumPy token ids and spans (loss on every non-PAD token from ``first_target``)."""
    t = torch.from_numpy(tokens)
    first = torch.from_numpy(first_target) if isinstance(first_target, np.ndarray) else first_target
    return TokenBatch(t, loss_mask(t, first), {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in spans.items()})
