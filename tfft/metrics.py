"""Classification metrics from scikit-learn, and their printed table."""

from typing import Dict, Sequence

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray,
                           class_names: Sequence[str]) -> Dict:
  """Scores predictions with scikit-learn.

  Args:
    y_true: true class indices.
    probabilities: [N, C] predicted probabilities.
    class_names: names in class-index order.

  Returns:
    A JSON-ready dict: accuracy; precision, recall and F1 (macro and weighted); the per-class report; the
    confusion matrix (rows true, columns predicted).
  """
  y_true = np.asarray(y_true)
  y_pred = np.asarray(probabilities).argmax(axis=-1)
  labels = list(range(len(class_names)))
  result = {"num_examples": int(len(y_true)), "accuracy": float(skm.accuracy_score(y_true, y_pred))}
  for average in ("macro", "weighted"):
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                     zero_division=0)
    result.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
  report = skm.classification_report(y_true, y_pred, labels=labels, target_names=list(class_names),
                                     output_dict=True, zero_division=0)
  result["per_class"] = {name: {k: float(v) for k, v in report[name].items()} for name in class_names}
  result["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
  result["class_names"] = list(class_names)
  return result


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
