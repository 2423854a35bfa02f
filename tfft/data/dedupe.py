"""Duplicate texts: exact and whitespace/case-normalised groups, group ids for a group-aware split, and --dedupe=drop.

Pure Python and numpy, so it runs before TensorFlow is imported.
"""

from typing import Dict, List, Sequence

import numpy as np


def dedupe_key(text: str) -> str:
  """The text with runs of whitespace made one space, ends stripped, and case folded.

  casefold, not lower, so that e.g. "STRASSE" and "straße" meet; an exact duplicate always has the same key.
  """
  return " ".join(text.split()).casefold()


def merge_groups(first: Sequence, second: Sequence) -> np.ndarray:
  """Group ids under which two examples share a group when they share one in `first` or in `second` (and so on,
  transitively: the connected components), numbered 0, 1, 2, ... in order of each group's first example."""
  parent = list(range(len(first)))

  def find(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for grouping in (first, second):
    seen: Dict = {}
    for i, key in enumerate(grouping):
      j = seen.setdefault(key, i)
      root_i, root_j = find(i), find(j)
      if root_i != root_j:
        parent[max(root_i, root_j)] = min(root_i, root_j)
  roots: Dict[int, int] = {}
  return np.array([roots.setdefault(find(i), len(roots)) for i in range(len(first))], dtype=np.int64)


def group_ids(texts: Sequence[str]) -> np.ndarray:
  """A group id per example, shared by duplicates, so that a splitter can keep each group in one split.

  Args:
    texts: the examples' texts, in example order.

  Returns:
    [len(texts)] int64 array; ids are 0, 1, 2, ... in order of each group's first example, so a text with no
    duplicate has a group of its own and the ids depend only on the texts and their order.

  Raises:
    TypeError: when a text is not a str, naming its index.
  """
  ids: Dict[str, int] = {}
  out = np.empty(len(texts), dtype=np.int64)
  for i, text in enumerate(texts):
    if isinstance(text, tuple) and all(isinstance(t, str) for t in text):  # a pair of texts
      text = "\x00".join(text)
    if not isinstance(text, str):
      raise TypeError(f"texts[{i}] is {type(text).__name__} {text!r}, not str")
    out[i] = ids.setdefault(dedupe_key(text), len(ids))
  return out


def duplicate_groups(texts: Sequence[str]) -> List[List[int]]:
  """Groups of examples whose texts are equal, exactly or after normalising whitespace and case (dedupe_key).

  Args:
    texts: the examples' texts, in example order.

  Returns:
    Each group of two or more example indices, ascending, the groups ordered by their first index; [] when every
    text is unique.

  Raises:
    TypeError: when a text is not a str, naming its index.
  """
  ids = group_ids(texts)
  members: List[List[int]] = [[] for _ in range(int(ids.max()) + 1 if len(ids) else 0)]
  for i, g in enumerate(ids.tolist()):
    members[g].append(i)
  return [group for group in members if len(group) > 1]


def drop_duplicates(ids: Sequence[int]) -> np.ndarray:
  """The examples --dedupe=drop keeps: the first of each group, so the order and the first label seen survive.

  Args:
    ids: a group id per example, as group_ids returns (any integers: equal ids mean duplicates).

  Returns:
    Ascending int64 indices of the examples to keep, one per group.

  Raises:
    ValueError: when ids is not 1-D.
  """
  ids = np.asarray(ids)
  if ids.ndim != 1:
    raise ValueError(f"ids must be 1-D, one group id per example; got shape {ids.shape}")
  _, first = np.unique(ids, return_index=True)
  return np.sort(first).astype(np.int64)
