"""The run's test report: the model's metrics beside a baseline fitted on the same split, its files and figures."""

import dataclasses
import io
from typing import Dict, List, Optional, Sequence

import numpy as np
from absl import logging

from tfft.config import Config
from tfft.report import baseline as baseline_lib
from tfft.report import metrics as metrics_lib
from tfft.report import significance as significance_lib
from tfft.report import plots
from tfft.rundir import PhaseResult, RunDir

CURVES_PNG = "training_curves.png"
# Bootstrap draws of the test split for every interval in the report: with 2000 the interval's ends move by less
# than 0.002 from one draw seed to another on a few hundred test examples.
N_RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class RunData:
  """A run's examples as the report needs them.

  Attributes:
    task: "text" or "image".
    inputs: per example, the text (a pair of texts for --task=pairs) or the image's file path (what the signature
      is fed, before encoding).
    ids: per example, its id in the split manifest.
    labels: per example, what the metrics compare: its class index, or its number (regression).
    split: split name -> example indices.
    class_names: names in class-index order.
  """
  task: str
  inputs: Sequence[str]
  ids: Sequence[str]
  labels: np.ndarray
  split: Dict[str, np.ndarray]
  class_names: Sequence[str]
  targets: Optional[object] = None  # tfft.tasks.api.Targets, for what a target reports beyond the labels

  def take(self, name: str) -> List[str]:
    return [self.inputs[i] for i in self.split[name]]


def _fit_baseline(data: RunData):
  train = data.split["train"]
  if data.task == "text":
    pairs = bool(data.inputs) and isinstance(data.inputs[0], tuple)
    return baseline_lib.PAIR_METHOD if pairs else baseline_lib.TEXT_METHOD, baseline_lib.text_baseline(
        data.take("train"), data.labels[train], data.take("test"), num_classes=len(data.class_names))
  return baseline_lib.IMAGE_METHOD.format(size=16), baseline_lib.image_baseline(
      _pixels(data.take("train")), data.labels[train], _pixels(data.take("test")), num_classes=len(data.class_names))


def intervals(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> Dict:
  """95% percentile bootstrap intervals of the test accuracy and macro-F1 (tfft.report.significance.bootstrap_ci).

  Args:
    y_true: true class indices of the test examples.
    y_pred: predicted class indices, same length.
    num_classes: number of classes; macro-F1 averages over all of them in every draw.

  Returns:
    A JSON-ready dict: accuracy and macro_f1, each [low, high]; confidence; method.
  """
  labels = range(num_classes)
  result = {metric: list(significance_lib.bootstrap_ci(y_true, y_pred, metric, n_resamples=N_RESAMPLES, seed=0,
                                                        labels=labels))
            for metric in significance_lib.METRICS}
  return {**result, "confidence": 0.95, "method": f"percentile bootstrap, {N_RESAMPLES} resamples of the test split"}


def compare_with_baseline(y_true: np.ndarray, y_pred: np.ndarray, baseline_pred: np.ndarray,
                          num_classes: int) -> Dict:
  """Model - baseline on the same test examples, per metric: paired bootstrap interval, McNemar's p and verdict.

  Args:
    y_true: true class indices of the test examples.
    y_pred: the model's predicted class indices.
    baseline_pred: the baseline's predicted class indices on the same examples, in the same order.
    num_classes: number of classes.

  Returns:
    {"accuracy": paired_comparison(...), "macro_f1": paired_comparison(...)}.
  """
  return {metric: significance_lib.paired_comparison(y_true, y_pred, baseline_pred, metric=metric,
                                                     n_resamples=N_RESAMPLES, seed=0, labels=range(num_classes))
          for metric in significance_lib.METRICS}


def report_test(run_dir: RunDir, config: Config, data: RunData, probabilities: np.ndarray, *,
                phases: Sequence[PhaseResult], rescore: Optional[Dict] = None, target) -> Dict:
  """Scores the test split, fits and scores the baseline, and writes the run's report and training curves.

  What is scored and written is the target's (tfft.tasks.api.Target): for classification
  metrics.json, classification_report.txt, confusion_matrix.png and misclassified.csv, then training_curves.png,
  into the run dir. With `rescore` (the run's metrics.json, for a re-export), the baseline it holds is reused
  rather than fitted again, and nothing is written.

  Args:
    probabilities: the model's served quantity on the test split, in-process (the target's `served`).

  Returns:
    The metrics (metrics.json's content); see the target's `report`.
  """
  test = data.split["test"]
  metrics = target.report(data, probabilities, config=config, rescore=rescore)
  if rescore is not None:
    return metrics
  target.write_report(run_dir.path, metrics, values=data.labels[test], served=probabilities,
                      inputs=[x if isinstance(x, (str, tuple)) else "(in memory; see id)" for x in data.take("test")],
                      ids=[data.ids[i] for i in test])

  histories = [(p.name, plots.read_history(run_dir.history(p.name))) for p in phases
               if run_dir.history(p.name).is_file()]
  plots.plot_training_curves(run_dir.path / CURVES_PNG, histories, metric=target.curve_metric)
  logging.info("test metrics:\n%s", "\n".join(target.table(metrics)[:1]))
  return metrics


def classification_report(data: RunData, probabilities: np.ndarray, *, config: Config,
                          rescore: Optional[Dict] = None) -> Dict:
  """Classification's test metrics beside the baseline.

  Returns:
    The model's metrics with "ci" (intervals), then "baseline" (with its own "ci"), "baseline_difference" (model -
    baseline) and "baseline_comparison" (compare_with_baseline: the paired intervals and verdicts).
  """
  test = data.split["test"]
  y_true = data.labels[test]
  num_classes = len(data.class_names)
  metrics = metrics_lib.classification_metrics(y_true, probabilities, data.class_names)
  metrics["split_sizes"] = {name: int(len(indices)) for name, indices in data.split.items()}
  y_pred = np.asarray(probabilities).argmax(axis=-1)
  metrics["ci"] = intervals(y_true, y_pred, num_classes)
  if rescore is not None:  # the same run's weights: its baseline and the comparison with it still hold
    metrics.update({k: v for k, v in rescore.items() if k.startswith("baseline")})
    return metrics
  if config.report.baseline != "none":
    method, scores = _fit_baseline(data)
    base = metrics_lib.classification_metrics(y_true, scores, data.class_names)
    baseline_pred = scores.argmax(axis=-1)
    metrics["baseline"] = {"method": method, **metrics_lib.scalar_metrics(base),
                           "ci": intervals(y_true, baseline_pred, num_classes),
                           "per_class": base["per_class"], "confusion_matrix": base["confusion_matrix"]}
    metrics["baseline_difference"] = metrics_lib.compare(metrics, base)
    metrics["baseline_comparison"] = compare_with_baseline(y_true, y_pred, baseline_pred, num_classes)
  return metrics


def regression_report(data: RunData, predictions: np.ndarray, *, config: Config,
                      rescore: Optional[Dict] = None) -> Dict:
  """Regression's test metrics (tfft.report.metrics.regression_metrics) beside TF-IDF + Ridge or pixels + Ridge.

  Returns:
    The model's metrics, then "baseline" (its metrics and method) and "baseline_difference" (model - baseline).
  """
  test = data.split["test"]
  metrics = metrics_lib.regression_metrics(data.labels[test], predictions)
  metrics["split_sizes"] = {name: int(len(indices)) for name, indices in data.split.items()}
  if data.targets is not None:
    metrics["standardisation"] = dict(data.targets.info)
  if rescore is not None:
    metrics.update({k: v for k, v in rescore.items() if k.startswith("baseline")})
    return metrics
  if config.report.baseline != "none":
    method, base_pred = _fit_regression_baseline(data)
    base = metrics_lib.regression_metrics(data.labels[test], base_pred)
    metrics["baseline"] = {"method": method, **base}
    metrics["baseline_difference"] = {name: metrics[name] - base[name] for name in metrics_lib.REGRESSION_METRICS}
  return metrics


def _fit_regression_baseline(data: RunData):
  train = data.split["train"]
  if data.task == "text":
    return baseline_lib.TEXT_REGRESSION_METHOD, baseline_lib.text_regression_baseline(
        data.take("train"), data.labels[train], data.take("test"))
  return baseline_lib.IMAGE_REGRESSION_METHOD.format(size=16), baseline_lib.image_regression_baseline(
      _pixels(data.take("train")), data.labels[train], _pixels(data.take("test")))


def _pixels(inputs):
  """Each input (an image file's path, or its encoded bytes for images held in memory) as RGB pixels."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return [np.asarray(Image.open(io.BytesIO(x) if isinstance(x, bytes) else x).convert("RGB")) for x in inputs]
