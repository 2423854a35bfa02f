"""Duplicate texts: the groups, the group ids a splitter keeps together, and what --dedupe=drop keeps."""

import numpy as np
import pytest

from tfft.data import dedupe

TEXTS = [
    "The cat sat.",          # 0
    "a dog",                 # 1
    "the  CAT\tsat.\n",      # 2: 0 up to whitespace and case
    "The cat sat.",          # 3: 0 exactly
    "a dog barked",          # 4: unique (a longer text is not a duplicate)
    "A DOG",                 # 5: 1 up to case
    "Straße",                # 6
    "STRASSE",               # 7: 6 under casefold (lower() would miss it)
    "thecat sat.",           # 8: unique (whitespace inside a word matters)
]


def test_duplicate_groups_exact_and_normalised():
  assert dedupe.duplicate_groups(TEXTS) == [[0, 2, 3], [1, 5], [6, 7]]


def test_no_duplicates_and_no_texts():
  assert dedupe.duplicate_groups(["a", "b", "c"]) == []
  assert dedupe.duplicate_groups([]) == []
  assert dedupe.group_ids([]).shape == (0,)
  assert dedupe.drop_duplicates(dedupe.group_ids([])).tolist() == []


def test_dedupe_key_is_the_documented_normalisation():
  for text in TEXTS + ["  Ünïcode  ÉÈ\u00a0x ", "\n\n"]:
    assert dedupe.dedupe_key(text) == " ".join(text.split()).casefold()


def test_group_ids_are_dense_in_first_seen_order():
  ids = dedupe.group_ids(TEXTS)
  assert ids.dtype == np.int64
  assert ids.tolist() == [0, 1, 0, 0, 2, 1, 3, 3, 4]
  # Every duplicate group shares one id and no two groups share one.
  for group in dedupe.duplicate_groups(TEXTS):
    assert len(set(ids[group].tolist())) == 1
  assert len(set(ids.tolist())) == len(TEXTS) - sum(len(g) - 1 for g in dedupe.duplicate_groups(TEXTS))


def test_drop_keeps_the_first_of_each_group_in_order():
  keep = dedupe.drop_duplicates(dedupe.group_ids(TEXTS))
  assert keep.tolist() == [0, 1, 4, 6, 8]
  kept = [TEXTS[i] for i in keep]
  assert dedupe.duplicate_groups(kept) == []  # nothing left to drop
  assert dedupe.drop_duplicates(dedupe.group_ids(kept)).tolist() == list(range(len(kept)))


def test_drop_takes_any_integer_ids():
  assert dedupe.drop_duplicates([7, 3, 7, -1, 3]).tolist() == [0, 1, 3]


def test_bad_inputs_name_the_problem():
  with pytest.raises(TypeError, match=r"texts\[1\] is NoneType None, not str"):
    dedupe.group_ids(["a", None])
  with pytest.raises(ValueError, match=r"ids must be 1-D.*\(1, 2\)"):
    dedupe.drop_duplicates([[0, 1]])
