"""Classification and regression metrics (scikit-learn, scipy), their printed tables, and the report directory train
and evaluate write."""

import csv
import json
import pathlib
from typing import Dict, Optional, Sequence

import numpy as np
from sklearn import metrics as skm

from tfft import files
from tfft.report import plots
from tfft.report.scalars import CLASSIFICATION_SCALARS, TOP_K

METRICS_JSON = "metrics.json"
REPORT_TXT = "classification_report.txt"
CONFUSION_PNG = "confusion_matrix.png"
MISCLASSIFIED_CSV = "misclassified.csv"
# The misclassified table keeps only the most confident mistakes: they are the ones worth reading.
MISCLASSIFIED_LIMIT = 100
REGRESSION_METRICS = ("rmse", "mae", "r2", "pearson", "spearman")
SCATTER_PNG = "predicted_vs_true.png"
ERRORS_CSV = "largest_errors.csv"


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray,
                           class_names: Sequence[str], *, predicted: Optional[np.ndarray] = None) -> Dict:
  """Scores predictions with scikit-learn.

  Args:
    y_true: true class indices.
    probabilities: [N, C] predicted probabilities (or scores: only their ranking enters top-k and the AUCs).
    class_names: names in class-index order.
    predicted: the predicted class indices when they are not the argmax (a two-class --threshold).

  Returns:
    A JSON-ready dict: accuracy and top-k accuracy (k < C); precision, recall and F1, each micro, macro and
    weighted; the per-class report with support; the confusion matrix (rows true, columns predicted); for two
    classes, ROC-AUC and PR-AUC (average precision) of class 1, or None when the test split holds one class.
  """
  y_true = np.asarray(y_true)
  probabilities = np.asarray(probabilities)
  y_pred = probabilities.argmax(axis=-1) if predicted is None else np.asarray(predicted)
  labels = list(range(len(class_names)))
  result = {"num_examples": int(len(y_true)), "accuracy": float(skm.accuracy_score(y_true, y_pred))}
  for average in ("macro", "weighted", "micro"):
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                     zero_division=0)
    result.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
  for k in TOP_K:
    if k < len(class_names):
      result[f"top_{k}_accuracy"] = float(skm.top_k_accuracy_score(y_true, probabilities, k=k, labels=labels))
  if len(class_names) == 2:
    both = len(set(y_true.tolist())) == 2  # AUCs are undefined when the split holds one class
    result["positive_class"] = class_names[1]
    result["roc_auc"] = float(skm.roc_auc_score(y_true, probabilities[:, 1])) if both else None
    result["pr_auc"] = float(skm.average_precision_score(y_true, probabilities[:, 1])) if both else None
  report = skm.classification_report(y_true, y_pred, labels=labels, target_names=list(class_names),
                                     output_dict=True, zero_division=0)
  result["per_class"] = {name: {k: float(v) for k, v in report[name].items()} for name in class_names}
  result["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
  result["class_names"] = list(class_names)
  return result


def scalar_metrics(result: Dict) -> Dict[str, float]:
  """The metrics a quality gate or a baseline comparison can name, in report order; undefined ones left out."""
  return {name: result[name] for name in CLASSIFICATION_SCALARS if result.get(name) is not None}


def compare(model: Dict, baseline: Dict) -> Dict[str, float]:
  """model - baseline for every scalar metric both report."""
  base = scalar_metrics(baseline)
  return {name: value - base[name] for name, value in scalar_metrics(model).items() if name in base}


def format_table(result: Dict) -> str:
  """The per-class report and the headline numbers as a fixed-width table."""
  names = result["class_names"]
  width = max(12, *(len(n) for n in names))
  lines = [f"{'class':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
  for name in names:
    row = result["per_class"][name]
    lines.append(f"{name:<{width}} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1-score']:9.4f} "
                 f"{int(row['support']):8d}")
  for average in ("macro", "weighted"):
    lines.append(f"{average + ' avg':<{width}} {result[average + '_precision']:9.4f} "
                 f"{result[average + '_recall']:9.4f} {result[average + '_f1']:9.4f} {result['num_examples']:8d}")
  lines.append(f"{'accuracy':<{width}} {result['accuracy']:9.4f}")
  return "\n".join(lines)


def write_report(report_dir: pathlib.Path, result: Dict, *, y_true: Sequence[int], probabilities: np.ndarray,
                 inputs: Sequence[str], ids: Sequence[str]):
  """Writes the report files beside each other: metrics.json, classification_report.txt (scikit-learn's),
  confusion_matrix.png and misclassified.csv.

  Args:
    report_dir: an existing directory.
    result: classification_metrics of the predictions, plus anything else metrics.json should hold.
    y_true: true class indices.
    probabilities: [N, C] predicted probabilities.
    inputs: what each example is, as a user reads it: the text, or the image's file path.
    ids: each example's id in the split manifest.
  """

  class_names = result["class_names"]
  y_true = np.asarray(y_true)
  probabilities = np.asarray(probabilities)
  y_pred = probabilities.argmax(axis=-1)
  files.write_json(report_dir / METRICS_JSON, result)
  files.write_atomically(report_dir / REPORT_TXT, skm.classification_report(
      y_true, y_pred, labels=list(range(len(class_names))), target_names=list(class_names), digits=4,
      zero_division=0))
  plots.plot_confusion_matrix(report_dir / CONFUSION_PNG, np.array(result["confusion_matrix"]), class_names)
  _write_misclassified(report_dir / MISCLASSIFIED_CSV, y_true, probabilities, class_names, inputs, ids)


def _write_misclassified(path: pathlib.Path, y_true, probabilities, class_names, inputs, ids,
                         limit: Optional[int] = MISCLASSIFIED_LIMIT):
  y_pred = probabilities.argmax(axis=-1)
  confidence = probabilities.max(axis=-1)
  wrong = np.flatnonzero(y_pred != y_true)
  wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
  with files.atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "input", "true_label", "predicted_label", "confidence", "true_label_probability",
                     "probabilities"])
    for i in wrong:
      writer.writerow([ids[i], inputs[i], class_names[y_true[i]], class_names[y_pred[i]], f"{confidence[i]:.6f}",
                       f"{probabilities[i, y_true[i]]:.6f}",
                       json.dumps({name: round(float(p), 6) for name, p in zip(class_names, probabilities[i])})])


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> Dict:
  """Scores numeric predictions.

  Returns:
    A JSON-ready dict: num_examples, rmse, mae, r2 (scikit-learn's coefficient of determination), pearson and
    spearman (scipy's correlation coefficients; None when either side is constant, where they are undefined).
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top

  y_true = np.asarray(y_true, np.float64)
  y_pred = np.asarray(y_pred, np.float64)
  varied = len(y_true) > 1 and np.ptp(y_true) > 0 and np.ptp(y_pred) > 0
  return {"num_examples": int(len(y_true)),
          "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
          "mae": float(skm.mean_absolute_error(y_true, y_pred)),
          "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else None,
          "pearson": float(stats.pearsonr(y_true, y_pred)[0]) if varied else None,
          "spearman": float(stats.spearmanr(y_true, y_pred)[0]) if varied else None}


def format_regression_line(result: Dict) -> str:
  """rmse=… mae=… r2=… pearson=… spearman=… on one line (n/a for an undefined one)."""
  return "  ".join(f"{name}={'n/a' if result.get(name) is None else format(result[name], '.4f')}"
                   for name in REGRESSION_METRICS)


def format_regression_table(result: Dict) -> str:
  lines = [f"{'metric':<12} {'value':>9}"]
  lines += [f"{name:<12} {'n/a' if result.get(name) is None else format(result[name], '9.4f'):>9}"
            for name in REGRESSION_METRICS]
  lines.append(f"{'examples':<12} {result['num_examples']:9d}")
  return "\n".join(lines)


def write_regression_report(report_dir: pathlib.Path, result: Dict, *, y_true: Sequence[float],
                            y_pred: Sequence[float], inputs: Sequence[str], ids: Sequence[str]):
  """Writes metrics.json, predicted_vs_true.png (the scatter) and largest_errors.csv (the 100 largest absolute
  errors, largest first) into an existing directory."""

  y_true = np.asarray(y_true, np.float64)
  y_pred = np.asarray(y_pred, np.float64)
  files.write_json(report_dir / METRICS_JSON, result)
  plots.plot_predicted_vs_true(report_dir / SCATTER_PNG, y_true, y_pred, title=format_regression_line(result))
  error = np.abs(y_pred - y_true)
  worst = np.argsort(-error, kind="stable")[:MISCLASSIFIED_LIMIT]
  with files.atomic_path(report_dir / ERRORS_CSV) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "input", "true", "predicted", "abs_error"])
    for i in worst:
      value = inputs[i]
      writer.writerow([ids[i], " | ".join(value) if isinstance(value, tuple) else value, f"{y_true[i]:.6g}",
                       f"{y_pred[i]:.6g}", f"{error[i]:.6g}"])
