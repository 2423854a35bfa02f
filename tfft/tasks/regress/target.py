"""A number per example: the regression target (standardised for training, restored in the export)."""

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfft.errors import UserError
from tfft.report import metrics as metrics_lib
from tfft.report import run_report, summary
from tfft.report.summary import shorten
from tfft.tasks.api import Targets
from tfft.tasks.regress.spec import GATES, SPEC
from tfft.tasks.target_base import TargetBase


# Regression's split: the target's quantile bins, so that train, val and test each span its range.
REGRESSION_BINS = 5
SCORE = "score"


def parse_numbers(labels: Sequence[str], *, where: str, ids: Optional[Sequence[str]] = None) -> np.ndarray:
  """Each label as a finite float.

  Raises:
    UserError: naming the first row whose label is not a number.
  """
  values = np.empty(len(labels), dtype=np.float64)
  for i, label in enumerate(labels):
    try:
      values[i] = float(str(label).strip())
    except ValueError:
      values[i] = math.nan
    if not math.isfinite(values[i]):
      row = ids[i] if ids is not None else f"example {i + 1}"
      raise UserError(f"{where}: {row} has label {label!r}, which is not a number; --task=regress needs a numeric "
                      "label column (fix or drop the row)")
  return values


def quantile_strata(values: np.ndarray, bins: int = REGRESSION_BINS) -> Tuple[str, ...]:
  """Each value's quantile bin ("q0".."q{bins-1}"), fewer bins when the values have fewer distinct levels."""
  bins = max(1, min(bins, len(np.unique(values)), len(values) // 3))
  edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
  return tuple(f"q{b}" for b in np.searchsorted(edges, values, side="right"))


class RegressTarget(TargetBase):
  """A number per example: a linear head on the standardised target, MSE or Huber, restored to the data's units in
  the export; RMSE, MAE, R2, Pearson and Spearman; TF-IDF + Ridge (text) or pixels + Ridge (images)."""
  name = "regress"
  gates = GATES
  gates_note = " (higher is better)"
  parity_output = SCORE
  curve_metric = "rmse"  # on the standardised target
  monitors = SPEC.monitors
  stratified = f"on {REGRESSION_BINS} quantile bins of the target"
  tunes_on_validation = False

  def encode(self, labels: Sequence[str], *, where: str, names: Optional[Sequence[str]] = None,
             ids: Optional[Sequence[str]] = None) -> Targets:  # pylint: disable=unused-argument
    """Raises: UserError naming the first row whose label is not a number."""
    values = parse_numbers(labels, where=where, ids=ids)
    return Targets((SCORE,), values, quantile_strata(values))

  def fit(self, targets: Targets, train: np.ndarray) -> Targets:
    """Standardises with the training split's mean and standard deviation (1 for a constant target)."""
    y = targets.values[np.asarray(train)]
    std = float(y.std()) or 1.0
    return dataclasses.replace(targets, info={"mean": float(y.mean()), "std": std})

  def rows(self, targets: Targets, values: np.ndarray) -> np.ndarray:
    return ((np.asarray(values, dtype=np.float64) - targets.info["mean"]) / targets.info["std"]
            ).astype("float32")[:, None]



  def loss(self, train):
    import keras  # pylint: disable=g-import-not-at-top
    if train.loss == "huber":
      return keras.losses.Huber(delta=1.0)
    return keras.losses.MeanSquaredError()

  def keras_metrics(self):
    import keras  # pylint: disable=g-import-not-at-top
    return [keras.metrics.RootMeanSquaredError(name="rmse")]

  def served(self, logits: np.ndarray, targets: Targets) -> np.ndarray:
    """The prediction in the data's units, [N]."""
    return (np.asarray(logits, np.float64)[:, 0] * targets.info["std"] + targets.info["mean"]).astype(np.float32)

  def outputs(self, targets: Targets):
    """Logits -> `score` (float32 [N]) in the data's units: the standardisation is undone in the graph."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    mean, std = targets.info["mean"], targets.info["std"]

    def outputs(logits):
      return {SCORE: tf.cast(logits, tf.float32)[:, 0] * tf.constant(std, tf.float32) + tf.constant(mean, tf.float32)}

    return outputs

  def output_lines(self) -> List[str]:
    return ["- Output: `score` (float32 [N]) in the label's units; the model trains on the standardised label "
            "and the export restores its mean and standard deviation."]

  def describe(self, targets: Targets, modality: str) -> List[str]:
    info = targets.info
    return [f"A {modality} regression model fine-tuned with tfft.",
            f"- Target: a number per example; the training split's mean {info['mean']:.4g} and standard deviation "
            f"{info['std']:.4g} standardise it for training, and the export restores them"]

  def score(self, values, served, targets: Optional[Targets] = None) -> Dict:  # pylint: disable=unused-argument
    return metrics_lib.regression_metrics(values, served)

  def report(self, data, served: np.ndarray, *, config, rescore=None) -> Dict:
    return run_report.regression_report(data, served, config=config, rescore=rescore)

  def write_report(self, report_dir, metrics: Dict, *, values, served, inputs, ids):
    metrics_lib.write_regression_report(report_dir, metrics, y_true=values, y_pred=served, inputs=inputs, ids=ids)

  def table(self, metrics: Dict) -> List[str]:
    return [metrics_lib.format_regression_table(metrics)]

  def summary_lines(self, metrics: Dict) -> List[str]:
    lines = ["test:     " + metrics_lib.format_regression_line(metrics)]
    if "baseline" in metrics:
      lines.append(f"baseline: {metrics_lib.format_regression_line(metrics['baseline'])}  "
                   f"({metrics['baseline']['method']})")
      d = metrics["baseline_difference"]
      lines.append("model - baseline: " + "  ".join(f"{k}={d[k]:+.4f}" for k in d))
    return lines + summary.parity_lines(metrics)

  def card_lines(self, metrics: Dict) -> List[str]:
    if "baseline" not in metrics:
      return []
    return ["", f"Baseline: {metrics['baseline']['method']}, fitted on the same train split (lower rmse and mae are "
            "better; higher r2, pearson and spearman)."]

  def scalars(self, metrics: Dict) -> Dict[str, float]:
    return {name: metrics[name] for name in metrics_lib.REGRESSION_METRICS if metrics.get(name) is not None}

  def predictions(self, outputs: Dict[str, np.ndarray], names: Sequence[str], *, top_k: int) -> List[Dict]:
    del names, top_k  # a score per input: no classes to rank
    return [{SCORE: float(value)} for value in outputs[SCORE]]

  def format_rows(self, rows: Sequence[Dict], *, width: int = 48) -> str:
    lines = [f"{'input':<{width}}  {SCORE:>10}"]
    lines += [f"{shorten(row['input'], width):<{width}}  {row[SCORE]:10.4f}" for row in rows]
    return "\n".join(lines)
