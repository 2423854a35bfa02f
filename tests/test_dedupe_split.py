"""--dedupe: duplicate texts kept in one split, dropped, or left alone; counted in the summary and the manifest."""

import csv
import dataclasses
import types

import numpy as np
import pytest

from tfft.tasks import registry
from tfft.config import DataConfig
from tfft.data import split as split_lib
from tfft.data import text as text_data
from tfft.data.dedupe import group_ids
from tfft.report import summary
from tfft.rundir import write_manifest


def _examples(texts, labels):
  return text_data.Examples(list(texts), list(labels), [f"row:{i + 1}" for i in range(len(texts))], source="x")


# 60 unique texts, then 5 texts each repeated 4 more times in other spellings; labels interleaved.
UNIQUE = [f"review number {i} of the pile" for i in range(60)]
REPEATED = [f"A film I would watch {i} times" for i in range(5)]
SPELLINGS = [str, lambda t: t + "  ", lambda t: "  " + t.replace(" ", "\t"), str.upper, str]
TEXTS = UNIQUE + [spell(t) for t in REPEATED for spell in SPELLINGS]
LABELS = ["fresh" if i % 2 else "rotten" for i in range(len(TEXTS))]


def _where(split):
  return {int(i): name for name in split_lib.SPLITS for i in split[name]}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_keeps_every_group_in_the_split_of_its_first_example(seed):
  ids = group_ids(TEXTS)
  assert len(set(ids.tolist())) == 65  # each of the 5 repeated texts and its 4 respellings form one group
  split = split_lib.stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=seed, groups=ids)
  where = _where(split)
  assert sorted(where) == list(range(len(TEXTS)))  # every example is in exactly one split
  first = {}
  for i, g in enumerate(ids.tolist()):
    first.setdefault(g, i)
    assert where[i] == where[first[g]], (i, TEXTS[i])


def test_groups_of_single_examples_give_the_plain_split():
  plain = split_lib.stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=5)
  grouped = split_lib.stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=5,
                                       groups=np.arange(len(LABELS)))
  for name in split_lib.SPLITS:
    np.testing.assert_array_equal(plain[name], grouped[name])


def test_groups_are_stratified_by_their_first_members_label():
  # 10 groups per class of 3 copies each: a group-aware split still gets 20% of each class's groups into test.
  texts = [f"text {g}" for g in range(20) for _ in range(3)]
  labels = ["a" if g < 10 else "b" for g in range(20) for _ in range(3)]
  split = split_lib.stratified_split(labels, val_fraction=0.1, test_fraction=0.2, seed=0, groups=group_ids(texts))
  test_labels = [labels[i] for i in split["test"]]
  assert test_labels.count("a") == test_labels.count("b") == 6  # 2 groups of 3 per class


def test_split_examples_counts_duplicates_and_names_the_first_in_the_manifest(tmp_path):
  examples = _examples(TEXTS, LABELS)
  planned = split_lib.split_examples(examples, DataConfig(dataset="csv:x.csv"), seed=0)
  assert planned.info["duplicates"] == 20 and planned.info["across_splits"] == 0
  assert planned.duplicate_of[:60] == [""] * 60
  assert planned.duplicate_of[60:65] == ["", "row:61", "row:61", "row:61", "row:61"]
  write_manifest(tmp_path / "m.csv", examples.ids, examples.labels, planned.indices, planned.duplicate_of)
  rows = list(csv.DictReader((tmp_path / "m.csv").open()))
  assert list(rows[0]) == ["id", "label", "split", "duplicate_of"]
  assert rows[61]["duplicate_of"] == "row:61" and rows[61]["split"] == rows[60]["split"]


def test_off_splits_duplicates_apart_and_says_how_many_straddle(monkeypatch):
  warnings = []
  monkeypatch.setattr(split_lib.logging, "warning", lambda msg, *args: warnings.append(msg % args))
  examples = _examples(TEXTS, LABELS)
  crossing = [split_lib.split_examples(examples, DataConfig(dataset="csv:x.csv", dedupe="off"), seed=s)
              for s in range(6)]
  assert all(p.info["duplicates"] == 20 for p in crossing)
  straddling = [p for p in crossing if p.info["across_splits"]]
  assert straddling, "no seed put a duplicate in another split: the test cannot tell off from split"
  assert len(warnings) >= len(straddling) and "duplicate in another split" in warnings[0]
  line = summary.data_lines(straddling[0].info)[0]
  assert line.strip() == (f"duplicates: 20 text(s) repeat an earlier one, {straddling[0].info['across_splits']} "
                          "of them in another split (--dedupe=off)")


def test_drop_keeps_the_first_of_each_group_with_its_label(tmp_path):
  table = tmp_path / "x.csv"
  with table.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["text", "label"])
    writer.writerows([["Great film", "fresh"], ["dull", "rotten"], ["great   FILM", "rotten"], ["fine", "fresh"],
                      ["Dull", "fresh"], ["ok", "rotten"]])
  data = DataConfig(dataset=f"csv:{table}", dedupe="drop")
  examples = text_data.load_examples(data)
  assert examples.texts == ["Great film", "dull", "fine", "ok"]
  assert examples.labels == ["fresh", "rotten", "fresh", "rotten"]
  assert examples.ids == ["row:1", "row:2", "row:4", "row:6"]  # the ids of the manifest still name the rows
  assert examples.dropped_duplicates == 2
  assert len(text_data.load_examples(dataclasses.replace(data, dedupe="split"))) == 6


def test_summary_states_the_training_subset_and_the_duplicates():
  info = {"train_pool": 8951, "train_examples_per_class": 1500, "dedupe": "split", "duplicates": 56, "dropped": 0,
          "across_splits": 0}
  result = types.SimpleNamespace(split_sizes={"train": 3000, "val": 1280, "test": 2562}, skipped_files=0, phases=[],
                                 metrics={"accuracy": 0.8, "macro_f1": 0.8, "weighted_f1": 0.8}, model_dir="r",
                                 export_path="e", split_info=info)
  text = summary.format_summary(result, registry.target(registry.DEFAULT_KIND)).splitlines()
  at = text.index("data:     train=3000  val=1280  test=2562")
  assert text[at + 1] == ("          train: up to 1500 per class drawn from the train split's 8951 "
                          "(--train_examples_per_class)")
  assert text[at + 2] == ("          duplicates: 56 text(s) repeat an earlier one (up to whitespace and case); each "
                          "stays in its first's split (--dedupe=split)")
  assert summary.data_lines({**info, "dedupe": "drop", "dropped": 56, "duplicates": 0,
                             "train_examples_per_class": 0}) == [
      "          duplicates: dropped 56 text(s) repeating an earlier one (--dedupe=drop)"]
