"""Deterministic stratified train/val/test splits, and the files that persist them (manifest, labels.txt)."""

import collections
import csv
import pathlib
from typing import Dict, List, Sequence

import numpy as np

from tfft.errors import UserError

SPLITS = ("train", "val", "test")
MANIFEST = "split_manifest.csv"
LABELS = "labels.txt"


def stratified_split(labels: Sequence[str], *, val_fraction: float, test_fraction: float,
                     seed: int) -> Dict[str, np.ndarray]:
  """Splits example indices per class into train/val/test.

  The result depends only on the labels in order, the fractions and the seed; every class appears in every
  split, and no index is in two splits.

  Returns:
    {"train": indices, "val": indices, "test": indices}, each sorted.

  Raises:
    UserError: when a class has too few examples to appear in all three splits.
  """
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


def write_manifest(path: pathlib.Path, ids: Sequence[str], labels: Sequence[str], split: Dict[str, np.ndarray]):
  """Writes which example went to which split, one row per example: id,label,split ("unused" if in none)."""
  where = {}
  for name in SPLITS:
    for i in split[name]:
      where[int(i)] = name
  tmp = path.with_name(path.name + ".tmp")
  with tmp.open("w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "label", "split"])
    for i, (example_id, label) in enumerate(zip(ids, labels)):
      writer.writerow([example_id, label, where.get(i, "unused")])
  tmp.replace(path)


def write_labels(path: pathlib.Path, class_names: Sequence[str]):
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
  tmp.replace(path)


def read_labels(path: pathlib.Path) -> List[str]:
  return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_manifest(path: pathlib.Path) -> Dict[str, str]:
  """Reads write_manifest's file back: example id -> split name."""
  with path.open(newline="", encoding="utf-8") as f:
    return {row["id"]: row["split"] for row in csv.DictReader(f)}


def cross_split_duplicates(keys: Sequence, split: Dict[str, np.ndarray]) -> List[Sequence[int]]:
  """Groups of examples with the same key (e.g. the same text or the same file bytes) found in more than one split.

  Such duplicates leak the test split into training, so scores read optimistic. Returns each group's indices.
  """
  where = {}
  for name in SPLITS:
    for i in split[name]:
      where.setdefault(keys[i], []).append((name, int(i)))
  return [[i for _, i in group] for group in where.values() if len({name for name, _ in group}) > 1]
