"""Report pieces on fixed inputs: metric values against scikit-learn, the report files, the PNGs, the baselines, the gate."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from conftest import make_texts
from tfft.report.scalars import CLASSIFICATION_SCALARS
from tfft import config, config_checks
from tfft.tasks import registry
from tfft.report import baseline, metrics, plots
from tfft.errors import UserError

NAMES4 = ["a", "b", "c", "d"]


def _fixed(n=40, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, n)
  logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[y]  # better than chance, far from perfect
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  return y, p


def test_multiclass_metrics_match_sklearn():
  y, p = _fixed()
  pred = p.argmax(1)
  m = metrics.classification_metrics(y, p, NAMES4)
  assert 0.3 < m["accuracy"] < 0.95  # the fixture is informative but imperfect, so the checks below can tell
  assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
  for average in ("micro", "macro", "weighted"):
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
      assert m[f"{average}_{name}"] == pytest.approx(fn(y, pred, average=average, zero_division=0)), (average, name)
  assert m["top_2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, p, k=2))
  assert m["top_3_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, p, k=3))
  assert m["top_2_accuracy"] > m["accuracy"]
  assert "top_5_accuracy" not in m and "roc_auc" not in m  # k >= classes, and not binary
  assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
  for i, name in enumerate(NAMES4):
    assert m["per_class"][name]["support"] == (y == i).sum()
    assert m["per_class"][name]["recall"] == pytest.approx(skm.recall_score(y, pred, labels=[i], average="macro"))
  json.dumps(m, allow_nan=False)


def test_binary_metrics_add_roc_and_pr_auc():
  y, p = _fixed(classes=2, seed=1)
  m = metrics.classification_metrics(y, p, ["neg", "pos"])
  assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p[:, 1]))
  assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p[:, 1]))
  assert m["positive_class"] == "pos" and "top_2_accuracy" not in m
  one_class = metrics.classification_metrics(np.zeros(4, int), p[:4], ["neg", "pos"])
  assert one_class["roc_auc"] is None and "roc_auc" not in metrics.scalar_metrics(one_class)


def test_every_gate_metric_is_reported_for_some_task():
  reported = set(metrics.scalar_metrics(metrics.classification_metrics(*_fixed(classes=6), list("abcdef"))))
  reported |= set(metrics.scalar_metrics(metrics.classification_metrics(*_fixed(classes=2), ["x", "y"])))
  assert reported == set(CLASSIFICATION_SCALARS)


def test_compare_is_model_minus_baseline():
  y, p = _fixed()
  worse = np.roll(p, 1, axis=1)
  model, base = (metrics.classification_metrics(y, q, NAMES4) for q in (p, worse))
  diff = metrics.compare(model, base)
  assert diff["macro_f1"] == pytest.approx(model["macro_f1"] - base["macro_f1"]) and diff["macro_f1"] > 0


def _assert_png(path, min_bytes=10_000):
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert path.stat().st_size > min_bytes, path.stat().st_size
  with Image.open(path) as image:
    image.verify()
    assert min(image.size) > 200, image.size


def test_write_report(tmp_path):
  y, p = _fixed()
  m = metrics.classification_metrics(y, p, NAMES4)
  inputs = [f"text {i}" for i in range(len(y))]
  metrics.write_report(tmp_path, m, y_true=y, probabilities=p, inputs=inputs, ids=[f"id{i}" for i in range(len(y))])
  assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == m["accuracy"]
  assert (tmp_path / "classification_report.txt").read_text() == skm.classification_report(
      y, p.argmax(1), target_names=NAMES4, digits=4, zero_division=0)
  _assert_png(tmp_path / "confusion_matrix.png")
  rows = list(csv.DictReader((tmp_path / "misclassified.csv").open()))
  wrong = np.flatnonzero(p.argmax(1) != y)
  assert len(rows) == len(wrong) > 0
  confidence = [float(r["confidence"]) for r in rows]
  assert confidence == sorted(confidence, reverse=True)
  first = rows[0]
  i = int(first["id"][2:])
  assert first["input"] == inputs[i] and first["true_label"] == NAMES4[y[i]] and first["true_label"] != first["predicted_label"]
  assert json.loads(first["probabilities"])[first["predicted_label"]] == pytest.approx(confidence[0], abs=1e-6)


def test_training_curves_from_csv_logs(tmp_path):
  head = tmp_path / "history_head.csv"
  head.write_text("epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n"
                  "0,0.4,0.001,1.2,0.5,1.1\n1,0.6,0.001,0.9,0.6,0.8\n"
                  "1,0.62,0.001,0.88,0.61,0.79\n")  # a resumed epoch repeats; its last row wins
  fine = tmp_path / "history_finetune.csv"
  fine.write_text("epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n0,0.8,5e-05,0.5,0.7,0.6\n"
                  "1,0.9,2.5e-05,0.3,0.8,0.5\n2,0.95,0.0,0.2,0.85,0.45\n")
  columns = plots.read_history(head)
  assert columns["accuracy"] == [0.4, 0.62] and columns["learning_rate"] == [0.001, 0.001]
  out = tmp_path / "training_curves.png"
  plots.plot_training_curves(out, [("head", columns), ("finetune", plots.read_history(fine))])
  _assert_png(out)


def test_text_baseline_learns_the_tiny_task():
  train, test = make_texts(12, seed=0), make_texts(5, seed=1)
  classes = sorted({label for _, label in train})
  y_train = [classes.index(label) for _, label in train]
  y_test = np.array([classes.index(label) for _, label in test])
  p = baseline.text_baseline([t for t, _ in train], y_train, [t for t, _ in test], num_classes=3)
  assert p.shape == (15, 3) and np.allclose(p.sum(1), 1)
  assert (p.argmax(1) == y_test).mean() == 1.0  # word-disjoint classes



def test_pair_baseline_reads_how_much_the_two_texts_share():
  """The words of each pair are drawn at random from a large vocabulary, so no word tells the label; only the
  overlap of the two texts does (a matching pair's b is drawn from a's words): the cosine column."""
  rng = np.random.default_rng(0)
  vocabulary = [f"w{i}" for i in range(3000)]

  def pairs(n):
    out, labels = [], []
    for i in range(n):
      a = list(rng.choice(vocabulary, 12, replace=False))
      match = i % 2 == 0
      b = list(rng.choice(a, 6, replace=False)) if match else list(rng.choice(vocabulary, 6, replace=False))
      out.append((" ".join(a), " ".join(b)))
      labels.append(int(match))
    return out, np.array(labels)

  (train, y_train), (test, y_test) = pairs(200), pairs(100)
  p = baseline.text_baseline(train, y_train, test, num_classes=2)
  assert (p.argmax(1) == y_test).mean() >= 0.95

def test_image_baseline_on_small_arrays():
  rng = np.random.default_rng(0)

  def images(n, channel):
    out = rng.integers(0, 120, size=(n, 20, 24, 3)).astype(np.uint8)
    out[..., channel] += 100  # each class tints one channel; sizes differ from the 16x16 the baseline uses
    return list(out)

  train = images(10, 0) + images(10, 2)
  test = images(5, 0) + images(5, 2)
  p = baseline.image_baseline(train, [0] * 10 + [1] * 10, test, num_classes=3)
  assert p.shape == (10, 3) and np.allclose(p.sum(1), 1) and np.all(p[:, 2] == 0)  # class 2 was never seen
  assert p.argmax(1).tolist() == [0] * 5 + [1] * 5
  assert baseline.image_features([np.zeros((5, 7, 1), np.uint8)]).shape == (1, 16 * 16 * 3)


def test_min_metric_parsing():
  assert config.parse_min_metric(["macro_f1:0.9", "accuracy:0.5"]) == (("macro_f1", 0.9), ("accuracy", 0.5))
  for bad, needle in (("macro_f1", "NAME:VALUE"), ("macro_f1:high", "[0, 1]"), ("accuracy:1.5", "[0, 1]"),
                      ("accuracy:nan", "[0, 1]")):
    with pytest.raises(UserError, match="--min_metric"):
      config.parse_min_metric([bad])
    with pytest.raises(UserError) as e:
      config.parse_min_metric([bad])
    assert needle in str(e.value)
  # Which names a run may gate on is its kind's: validation rejects a name no kind reports.
  unknown = config.Config(report=config.ReportConfig(min_metric=config.parse_min_metric(["f1:0.9"])))
  with pytest.raises(UserError, match="--min_metric") as e:
    registry.validate(unknown)
  assert "unknown metric 'f1'" in str(e.value)
  config_checks.check_min_metric((("roc_auc", 0.9),), 2)
  with pytest.raises(UserError, match="binary tasks only"):
    config_checks.check_min_metric((("roc_auc", 0.9),), 3)
  with pytest.raises(UserError, match="needs more than 3 classes"):
    config_checks.check_min_metric((("top_3_accuracy", 0.9),), 3)
