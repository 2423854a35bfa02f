"""Multi-label below the train job: label sets, thresholds and metrics against hand-computed values, the
iterative-stratification split, the baseline, and the export's outputs."""

import numpy as np
import pytest

from tfft.tasks.multilabel import data as multilabel
from tfft.data import split as split_lib
from tfft.errors import UserError
from tfft.tasks.multilabel import metrics as mm

Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
P = np.array([[.9, .2, .6], [.4, .7, .1], [.6, .3, .2], [.1, .6, .4]])


def test_thresholds_maximise_each_labels_f1_on_validation():
  # Label b: probabilities .2 .7 .3 .6, positives at .7 and .3. Midpoints .25 .45 .65 (and .7): F1 .8 .5 .67 .67.
  assert mm.choose_thresholds(Y, P).tolist() == pytest.approx([0.5, 0.25, 0.5])
  assert mm.choose_thresholds(np.zeros((3, 1)), np.ones((3, 1)) * .9).tolist() == [0.5]  # no positive: 0.5


def test_metrics_against_hand_counts():
  m = mm.multilabel_metrics(Y, P, [0.5, 0.5, 0.5], ["a", "b", "c"])
  # Predicted: [a c] [b] [a] [b]. Label b: tp 1, fp 1, fn 1; a and c exact. 2 of 12 cells wrong.
  assert m["micro_f1"] == pytest.approx(0.8)
  assert m["macro_f1"] == pytest.approx((1 + 0.5 + 1) / 3)
  assert m["samples_f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
  assert m["subset_accuracy"] == pytest.approx(0.5)
  assert m["hamming_loss"] == pytest.approx(2 / 12)
  # AP: a 1, b (1 + 2/3) / 2, c 1.
  assert m["mean_average_precision"] == pytest.approx((1 + 5 / 6 + 1) / 3)
  assert m["per_label"]["b"] == {"precision": .5, "recall": .5, "f1": .5, "support": 2,
                                 "average_precision": pytest.approx(5 / 6), "threshold": .5}
  # An example with no true and no predicted label counts as right in samples-F1.
  assert mm.multilabel_metrics(np.zeros((1, 2)), np.zeros((1, 2)), [.5, .5], ["a", "b"])["samples_f1"] == 1.0


def test_label_sets_and_their_errors():
  sets = multilabel.split_label_sets(["a|b", " b ", "c|a|a"], ["row:1", "row:2", "row:3"], separator="|", flag="f")
  assert sets == [("a", "b"), ("b",), ("c", "a")]
  names = multilabel.label_names_of(sets)
  assert names == ("a", "b", "c")
  assert multilabel.indicators_of(sets, names).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
  with pytest.raises(UserError, match="example row:2 has an empty label set"):
    multilabel.split_label_sets(["a", " | "], ["row:1", "row:2"], separator="|", flag="f")
  with pytest.raises(UserError, match="column 'b' holds 'yes'"):
    multilabel.indicator_table([{"a": "1", "b": "yes"}], ["a", "b"], ["row:1"], flag="f")


def test_split_is_stratified_disjoint_and_seeded():
  rng = np.random.default_rng(0)
  y = (rng.random((400, 4)) < [0.5, 0.2, 0.1, 0.05]).astype(int)
  split = split_lib.label_set_split(y, val_fraction=0.1, test_fraction=0.2, seed=3)
  assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(400))
  assert len(split["test"]) == 80 and len(split["val"]) == 40
  for name in ("val", "test"):  # every label's share within 1.5 points of the whole set's
    assert np.abs(y[split[name]].mean(0) - y.mean(0)).max() < 0.015
  again = split_lib.label_set_split(y, val_fraction=0.1, test_fraction=0.2, seed=3)
  assert all((split[k] == again[k]).all() for k in split)


def test_baseline_learns_word_labels():
  texts = ["red cat", "blue dog", "red dog", "blue cat", "cat", "dog", "red", "blue"] * 6
  y = np.array([[1 if w in t.split() else 0 for w in ("red", "blue", "cat")] for t in texts])
  _, probabilities, thresholds = mm.baseline(texts, y, texts[:8], y[:8], ["red cat", "blue"])
  assert ((probabilities >= thresholds).astype(int).tolist()) == [[1, 0, 1], [0, 1, 0]]


def test_served_labels_are_those_over_threshold_most_probable_first():
  import tensorflow as tf
  from tfft.tasks.multilabel.export import multilabel_outputs
  logits = tf.math.log(tf.constant([[.9, .3, .6], [.1, .1, .1]]) / (1 - tf.constant([[.9, .3, .6], [.1, .1, .1]])))
  out = multilabel_outputs(["a", "b", "c"], [0.5, 0.25, 0.7])(logits)
  assert np.allclose(out["probabilities"].numpy(), [[.9, .3, .6], [.1, .1, .1]], atol=1e-6)
  assert out["labels"].numpy().tolist() == [[b"a", b"b", b""], [b"", b"", b""]]
  assert out["num_labels"].numpy().tolist() == [2, 0]
