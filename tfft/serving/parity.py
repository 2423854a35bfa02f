"""The export's parity check: its outputs against the in-process model's on the same test examples."""

from typing import Dict, Sequence

import numpy as np

from tfft.errors import RunFailed
from tfft.report import metrics as metrics_lib

# Served and in-process probabilities differ by float round-off only (~1e-7); preprocessing skew moves them by far more.
PARITY_ATOL = 1e-4


def check_parity(served_probabilities: np.ndarray, probabilities: np.ndarray, y_true: np.ndarray,
                 class_names: Sequence[str], *, atol: float = PARITY_ATOL) -> Dict:
  """Compares the export's probabilities with the in-process model's on the same test examples.

  Returns:
    The comparison, for metrics.json and the model card.

  Raises:
    RunFailed: naming preprocessing skew, when they differ beyond float tolerance.
  """
  diff = float(np.abs(served_probabilities - probabilities).max()) if len(probabilities) else 0.0
  keras_metrics = metrics_lib.classification_metrics(y_true, probabilities, class_names)
  export_metrics = metrics_lib.classification_metrics(y_true, served_probabilities, class_names)
  changed = int((served_probabilities.argmax(-1) != probabilities.argmax(-1)).sum())
  if diff > atol:
    raise RunFailed(
        f"the exported SavedModel disagrees with the trained model on the {len(y_true)} test examples through "
        f"serving_default: max |probability difference| {diff:.3g} > {atol:g}, {changed} predictions differ, "
        f"accuracy {export_metrics['accuracy']:.4f} exported vs {keras_metrics['accuracy']:.4f} in training; "
        "likely cause: preprocessing skew between training and the export's graph (tokenizer, lowercasing, "
        "sequence length, image size or normalisation); no export written")
  return {"examples": int(len(y_true)), "max_abs_diff": diff, "tolerance": atol,
          "accuracy_export": export_metrics["accuracy"], "accuracy_keras": keras_metrics["accuracy"],
          "macro_f1_export": export_metrics["macro_f1"], "macro_f1_keras": keras_metrics["macro_f1"]}


def check_value_parity(served: np.ndarray, in_process: np.ndarray, *, output: str, scale: float = 1.0,
                       atol: float = PARITY_ATOL) -> Dict:
  """Compares one numeric output of the export (e.g. regression's `score`) with the in-process model's.

  The tolerance is `atol` times `scale` (the target's standard deviation), so it does not depend on the data's units.

  Raises:
    RunFailed: naming preprocessing skew, when they differ beyond float tolerance.
  """
  served, in_process = np.asarray(served, np.float64), np.asarray(in_process, np.float64)
  diff = float(np.abs(served - in_process).max()) if len(in_process) else 0.0
  tolerance = atol * scale
  if diff > tolerance:
    raise RunFailed(
        f"the exported SavedModel disagrees with the trained model on the {len(in_process)} test examples through "
        f"serving_default: max |{output} difference| {diff:.3g} > {tolerance:g}; likely cause: preprocessing skew "
        "between training and the export's graph (tokenizer, lowercasing, sequence length, image size or "
        "normalisation); no export written")
  return {"examples": int(len(in_process)), "output": output, "max_abs_diff": diff, "tolerance": tolerance}
