"""The stratified split, the few-shot draw, class order, and the warning about duplicates across splits."""

import collections

import numpy as np
import pytest

from tfft.data import split as split_lib
from tfft.data.text import natural_key
from tfft.errors import UserError

FRACTIONS = {"val": 0.1, "test": 0.2, "train": 0.7}


def _labels(counts):
  """Labels interleaved across classes, so that a split that ignored the labels would not stratify by luck."""
  pools = {name: count for name, count in counts.items()}
  labels = []
  while any(pools.values()):
    for name in counts:
      if pools[name]:
        labels.append(name)
        pools[name] -= 1
  return labels


LABELS = _labels({"business": 20, "sport": 30, "tech": 50})


def _split(labels=LABELS, seed=0, val_fraction=0.1, test_fraction=0.2):
  return split_lib.stratified_split(labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)


def test_same_seed_same_split():
  a, b = _split(seed=3), _split(seed=3)
  for name in split_lib.SPLITS:
    np.testing.assert_array_equal(a[name], b[name])


def test_different_seed_different_split():
  a, b = _split(seed=3), _split(seed=4)
  assert any(not np.array_equal(a[name], b[name]) for name in split_lib.SPLITS)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_split_is_leak_free_and_covers_everything(seed):
  s = _split(seed=seed)
  train, val, test = (set(s[name].tolist()) for name in split_lib.SPLITS)
  assert not train & val and not train & test and not val & test
  assert train | val | test == set(range(len(LABELS)))
  for name in split_lib.SPLITS:
    assert list(s[name]) == sorted(s[name])


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_split_is_stratified(seed):
  s = _split(seed=seed)
  labels = np.asarray(LABELS)
  totals = collections.Counter(LABELS)
  for name in split_lib.SPLITS:
    got = collections.Counter(labels[s[name]].tolist())
    for label, total in totals.items():
      expected = total * FRACTIONS[name]
      assert abs(got[label] - expected) <= 1, (name, label, got[label], expected)


def test_every_class_in_every_split_at_the_minimum():
  # 3 examples per class is the documented minimum: exactly one per split.
  labels = _labels({"a": 3, "b": 3, "c": 3, "d": 3})
  s = _split(labels, val_fraction=1 / 3, test_fraction=1 / 3)
  for name in split_lib.SPLITS:
    assert sorted(np.asarray(labels)[s[name]].tolist()) == ["a", "b", "c", "d"]


def test_every_class_in_every_split_when_imbalanced():
  labels = _labels({"A": 100, "B": 3, "C": 3, "D": 3})
  s = _split(labels)
  for name in split_lib.SPLITS:
    assert set(np.asarray(labels)[s[name]].tolist()) == {"A", "B", "C", "D"}, name


def test_class_with_fewer_than_three_examples():
  labels = _labels({"a": 10, "b": 10, "rare": 2})
  with pytest.raises(UserError, match=r"^class 'rare' has 2 example\(s\)"):
    _split(labels, val_fraction=0.2, test_fraction=0.2)


@pytest.mark.parametrize("val_fraction,test_fraction,flag", [
    (0.05, 0.2, "--val_fraction=0.05"),  # 30 * 0.05 = 1.5 examples for 3 classes.
    (0.2, 0.05, "--test_fraction=0.05"),
])
def test_fraction_too_small_for_one_example_per_class(val_fraction, test_fraction, flag):
  labels = _labels({"a": 10, "b": 10, "c": 10})
  with pytest.raises(UserError, match=f"^{flag} "):
    _split(labels, val_fraction=val_fraction, test_fraction=test_fraction)


def test_natural_key_tells_every_name_apart():
  assert natural_key("2") != natural_key("02")
