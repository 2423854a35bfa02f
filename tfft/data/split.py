"""Deterministic stratified train/val/test splits (duplicates kept together), few-shot draws, class selection and
cross-split duplicates.

The files that persist a split (split_manifest.csv, labels.txt) are written by tfft.rundir."""

import collections
import dataclasses
import hashlib
import pathlib
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from absl import logging

from tfft.config import DataConfig
from tfft.data import dedupe
from tfft.data.text import natural_key
from tfft.errors import UserError

SPLITS = ("train", "val", "test")


def stratified_split(labels: Sequence[str], *, val_fraction: float, test_fraction: float, seed: int,
                     groups: Optional[Sequence[int]] = None) -> Dict[str, np.ndarray]:
  """Splits example indices per class into train/val/test.

  The result depends only on the labels in order, the fractions, the seed and the groups; every class appears in
  every split, and no index is in two splits.

  Args:
    labels: each example's label.
    val_fraction: fraction of each class for val.
    test_fraction: fraction of each class for test.
    seed: seed of the per-class shuffles.
    groups: a group id per example (e.g. tfft.data.dedupe.group_ids): the first example of each group is split,
      stratified by its label, and every other member follows it into its split. None (or all ids distinct) splits
      every example on its own.

  Returns:
    {"train": indices, "val": indices, "test": indices}, each sorted.

  Raises:
    UserError: when a class has too few examples (groups, with `groups`) to appear in all three splits.
  """
  if groups is not None:
    groups = np.asarray(groups)
    _, first = np.unique(groups, return_index=True)
    first = np.sort(first)
    parts = stratified_split(np.asarray(labels)[first], val_fraction=val_fraction, test_fraction=test_fraction,
                             seed=seed)
    return {name: np.flatnonzero(np.isin(groups, groups[first[parts[name]]])) for name in SPLITS}
  labels = np.asarray(labels)
  counts = collections.Counter(labels.tolist())
  n = len(labels)
  n_classes = len(counts)
  for name, fraction in (("val", val_fraction), ("test", test_fraction)):
    if int(np.floor(n * fraction)) < n_classes and int(np.ceil(n * fraction)) < n_classes:
      raise UserError(f"--{name}_fraction={fraction:g} gives {name} fewer examples ({n * fraction:.1f}) than classes "
                      f"({n_classes}); raise it or add examples")
  smallest, smallest_count = min(counts.items(), key=lambda kv: kv[1])
  if smallest_count < 3:
    raise UserError(f"class {smallest!r} has {smallest_count} example(s); each class needs at least 3 to appear in "
                    "train, val and test: add examples or drop the class")
  # Per class rather than sklearn's train_test_split, whose rounding can drop a small class from val or test
  # when one class dominates.
  rng = np.random.default_rng(seed)
  parts = {"train": [], "val": [], "test": []}
  for label in sorted(counts):
    members = rng.permutation(np.flatnonzero(labels == label))
    n_test = min(max(1, round(len(members) * test_fraction)), len(members) - 2)
    n_val = min(max(1, round(len(members) * val_fraction)), len(members) - n_test - 1)
    parts["test"].append(members[:n_test])
    parts["val"].append(members[n_test:n_test + n_val])
    parts["train"].append(members[n_test + n_val:])
  train, val, test = (np.concatenate(parts[name]) for name in SPLITS)
  return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


@dataclasses.dataclass(frozen=True)
class Split:
  """A run's split and what shaped it.

  Attributes:
    indices: split name -> sorted example indices.
    duplicate_of: text runs: per example, the id of the first example whose text equals it (tfft.data.dedupe's
      key); "" for a first or unique text. None for images.
    info: JSON-ready facts for the summary: dedupe (the policy), duplicates (texts that repeat an earlier one),
      dropped (duplicates --dedupe=drop removed), across_splits (duplicates in another split than their first),
      train_pool (train examples before --train_examples_per_class drew from them), train_examples_per_class.
  """
  indices: Dict[str, np.ndarray]
  duplicate_of: Optional[List[str]]
  info: Dict


def split_examples(examples, data: DataConfig, *, seed: int, strata: Optional[Sequence[str]] = None,
                   splitter: Optional[Callable] = None) -> Split:
  """The run's split: stratified per class (or per `strata`) with duplicate texts kept together (--dedupe=split)
  and so are the examples of one group (`examples.groups`, e.g. the pairs made from one article), then the
  few-shot draw of --train_examples_per_class; warns about any duplicate left across splits.

  Args:
    examples: the loaded examples (texts and labels, or images and labels).
    data: the data options.
    seed: --seed, for the split and the few-shot draw.
    strata: per example, the key to stratify on (tfft.tasks.api.Targets.strata); default its label.
    splitter: splitter(groups) -> {"train", "val", "test"} indices, for a target that stratifies its own way
      (multi-label and tagging: iterative stratification); it keeps each group in one split.

  Returns:
    The Split.

  Raises:
    UserError: when a class has too few examples to appear in train, val and test.
  """
  texts = getattr(examples, "texts", None)
  ids = dedupe.group_ids(texts) if texts is not None else None
  grouped = ids is not None and data.dedupe == "split"
  groups = ids if grouped else None
  fixed = getattr(examples, "groups", None)
  if fixed is not None:  # each example's own group, merged with its duplicates' groups
    groups = dedupe.merge_groups(fixed, groups) if groups is not None else dedupe.group_ids(list(map(str, fixed)))
  if splitter is not None:
    indices = splitter(groups)
  else:
    indices = stratified_split(examples.labels if strata is None else list(strata), val_fraction=data.val_fraction,
                               test_fraction=data.test_fraction, seed=seed, groups=groups)
  info = {"train_pool": int(len(indices["train"])), "train_examples_per_class": data.train_examples_per_class}
  if data.train_examples_per_class:
    indices["train"] = few_shot(indices["train"], examples.labels, data.train_examples_per_class, seed=seed)
  warn_duplicates(examples, indices, data.dataset)
  duplicate_of = None
  if ids is not None:
    _, first = np.unique(ids, return_index=True)
    duplicate_of = ["" if first[g] == i else examples.ids[first[g]] for i, g in enumerate(ids.tolist())]
    where = {int(i): name for name in SPLITS for i in indices[name]}
    info.update(dedupe=data.dedupe, duplicates=sum(1 for d in duplicate_of if d),
                dropped=int(getattr(examples, "dropped_duplicates", 0)),
                across_splits=sum(1 for i, g in enumerate(ids.tolist()) if first[g] != i and i in where
                                  and int(first[g]) in where and where[int(first[g])] != where[i]))
  return Split(indices, duplicate_of, info)


def select_classes(labels: Sequence[str], classes: Sequence[str], *, flag_value: str) -> np.ndarray:
  """Indices of the examples whose label is one of `classes` (--classes), in source order.

  Raises:
    UserError: naming a requested class the data does not have, and listing the ones it has.
  """
  present = set(labels)
  missing = [c for c in classes if c not in present]
  if missing:
    raise UserError(f"--classes={','.join(classes)}: {', '.join(map(repr, missing))} not in --dataset={flag_value}; "
                    f"its classes are: {', '.join(sorted(present))}")
  wanted = set(classes)
  return np.array([i for i, label in enumerate(labels) if label in wanted], dtype=np.int64)


def few_shot(train: np.ndarray, labels: Sequence[str], per_class: int, *, seed: int) -> np.ndarray:
  """Keeps `per_class` training examples of each class, drawn with `seed` (--train_examples_per_class).

  Val and test are left as they are, so a few-shot run is scored on the same full test split.

  Returns:
    The kept train indices, sorted.
  """
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  kept = [rng.permutation(train[labels[train] == label])[:per_class] for label in sorted(set(labels[train]))]
  return np.sort(np.concatenate(kept))


def cross_split_duplicates(keys: Sequence, split: Dict[str, np.ndarray]) -> List[Sequence[int]]:
  """Groups of examples with the same key (e.g. the same text or the same file bytes) found in more than one split.

  Such duplicates leak the test split into training, so scores read optimistic. Returns each group's indices.
  """
  where = {}
  for name in SPLITS:
    for i in split[name]:
      where.setdefault(keys[i], []).append((name, int(i)))
  return [[i for _, i in group] for group in where.values() if len({name for name, _ in group}) > 1]


def warn_duplicates(examples, split, dataset: str):
  """Warns when the same text, or the same image file content, is in more than one split."""
  texts = getattr(examples, "texts", None)
  if texts is not None:
    keys = [" ".join("\x00".join(t).split() if isinstance(t, tuple) else t.split()).lower() for t in texts]
  elif getattr(examples, "paths", None) is not None:
    keys = []
    for path in examples.paths:
      try:
        keys.append(hashlib.sha1(pathlib.Path(path).read_bytes()).hexdigest())
      except OSError:
        keys.append(path)
  else:
    keys = [hashlib.sha1(np.ascontiguousarray(p).tobytes()).hexdigest() for p in examples.pixels]
  groups = cross_split_duplicates(keys, split)
  if groups:
    ids = [examples.ids[i] for i in groups[0]]
    logging.warning("--dataset=%s: %d example(s) have a duplicate in another split (e.g. %s), so test scores read "
                    "optimistic; remove the duplicates from the data", dataset, sum(len(g) for g in groups),
                    ", ".join(ids))


def label_indices(labels: Sequence[str], class_names: Sequence[str], *, where: str) -> np.ndarray:
  """Class index of every label, in the model's labels.txt order.

  Raises:
    UserError: naming the labels that labels.txt does not hold.
  """
  position = {name: i for i, name in enumerate(class_names)}
  unknown = sorted(set(labels) - set(position), key=natural_key)
  if unknown:
    raise UserError(f"{where}: label(s) {', '.join(map(repr, unknown[:5]))}{' …' if len(unknown) > 5 else ''} are "
                    f"not in the model's labels.txt ({', '.join(class_names)}); use a dataset with the model's classes")
  return np.array([position[label] for label in labels], dtype=np.int64)


def label_set_split(y: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int,
                     groups=None) -> Dict[str, np.ndarray]:
  """Train/val/test by iterative stratification (Sechidis et al. 2011; the iterative-stratification package):
  test is drawn first, then val from the rest, each keeping every label's share as close as the data allows.

  With `groups` (a group id per example, e.g. tfft.data.dedupe.group_ids of the texts), the first example of each
  group is split and every other member follows it into its split, so duplicates never straddle two splits.

  Returns:
    {"train", "val", "test"} -> sorted indices.

  Raises:
    UserError: when val or test would be empty.
  """
  from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # pylint: disable=g-import-not-at-top
  if groups is not None:
    groups = np.asarray(groups)
    _, first = np.unique(groups, return_index=True)
    first = np.sort(first)
    parts = label_set_split(np.asarray(y)[first], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    return {name: np.flatnonzero(np.isin(groups, groups[first[parts[name]]])) for name in SPLITS}
  n = len(y)
  for name, fraction in (("val", val_fraction), ("test", test_fraction)):
    if int(round(n * fraction)) < 1:
      raise UserError(f"--{name}_fraction={fraction:g} leaves no {name} example of {n}; raise it or add examples")
  y = np.asarray(y).astype(int)
  rest, test = next(MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
                    .split(np.zeros(n), y))
  share = val_fraction / (1.0 - test_fraction)
  train, val = next(MultilabelStratifiedShuffleSplit(n_splits=1, test_size=share, random_state=seed + 1)
                    .split(np.zeros(len(rest)), y[rest]))
  parts = {"train": rest[train], "val": rest[val], "test": test}
  return {name: np.sort(parts[name]) for name in SPLITS}
