"""The two-class decision threshold: parsing --threshold, choosing it on the validation split, deciding with it."""

import re
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from tfft.errors import UserError

ARGMAX = "argmax"


def parse_rule(value: str) -> Tuple[str, Optional[float]]:
  """--threshold's text as (kind, number): ("argmax", None), ("fixed", T), ("f1", None) or ("precision", R).

  Raises:
    UserError: naming --threshold when the text has another form.
  """
  text = value.strip().lower()
  if text in (ARGMAX, "f1"):
    return text, None
  match = re.fullmatch(r"precision@([0-9.]+)", text)
  number = match.group(1) if match else text
  try:
    number = float(number)
  except ValueError:
    number = None
  if number is not None and 0.0 < number < 1.0:
    return ("precision" if match else "fixed"), number
  raise UserError(f"--threshold={value!r}: use argmax, a probability strictly between 0 and 1 (e.g. 0.5), f1 "
                  "(the threshold of highest F1 of the positive class on validation) or precision@R with R in "
                  "(0, 1) (the lowest threshold reaching precision R on validation)")


def positive_index(class_names: Sequence[str], positive_class: str) -> int:
  """The positive class's index: --positive_class, or the second class in labels.txt.

  Raises:
    UserError: when --positive_class names no class of the run.
  """
  if not positive_class:
    return 1
  if positive_class not in class_names:
    raise UserError(f"--positive_class={positive_class!r} is not a class of this run; its classes are "
                    f"{', '.join(class_names)}")
  return list(class_names).index(positive_class)


def choose(p_positive: np.ndarray, is_positive: np.ndarray, rule: str) -> Dict:
  """Chooses the threshold --threshold names on the validation split's positive-class probabilities.

  An example is predicted positive when its probability is >= the threshold. f1: the candidate (each distinct
  validation probability) of highest F1, the higher on ties. precision@R: the lowest candidate whose precision is
  >= R; when none reaches it, the one of highest precision, with `reached` False (the job warns).

  Returns:
    {"threshold", "rule", and on validation "precision", "recall", "f1" at it (precision@R also "reached")}.
  """
  kind, number = parse_rule(rule)
  p = np.asarray(p_positive, np.float64)
  y = np.asarray(is_positive, bool)
  if kind == "fixed":
    threshold, extra = float(number), {}
  else:
    candidates = np.unique(p)
    if not len(candidates):
      candidates = np.array([0.5])
    predicted = p[None, :] >= candidates[:, None]  # [candidates, examples]
    tp = (predicted & y).sum(axis=1).astype(np.float64)
    npred = predicted.sum(axis=1)
    precision = np.divide(tp, npred, out=np.zeros_like(tp), where=npred > 0)
    recall = tp / max(int(y.sum()), 1)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    if kind == "f1":
      best = len(f1) - 1 - int(np.argmax(f1[::-1]))
      threshold, extra = float(candidates[best]), {}
    else:
      reached = np.flatnonzero(precision >= number)
      best = int(reached[0]) if len(reached) else int(np.argmax(precision))
      threshold, extra = float(candidates[best]), {"reached": bool(len(reached))}
  return {"threshold": threshold, "rule": rule, **at(p, y, threshold), **extra}


def at(p_positive: np.ndarray, is_positive: np.ndarray, threshold: float) -> Dict:
  """Precision, recall and F1 of the positive class when `p >= threshold` predicts it."""
  predicted, y = np.asarray(p_positive) >= threshold, np.asarray(is_positive, bool)
  tp = float((predicted & y).sum())
  precision = tp / predicted.sum() if predicted.sum() else 0.0
  recall = tp / y.sum() if y.sum() else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def decide(probabilities: np.ndarray, threshold: float, positive: int) -> np.ndarray:
  """The predicted class index of each row of two-class probabilities at the threshold."""
  probabilities = np.asarray(probabilities)
  return np.where(probabilities[:, positive] >= threshold, positive, 1 - positive).astype(np.int64)


def describe(info: Dict, class_names: Sequence[str]) -> str:
  """One sentence on the threshold and how it was chosen, for the summary and the model card."""
  kind, number = parse_rule(info["rule"])
  how = {"fixed": "fixed by --threshold", "f1": "chosen on the validation split for the highest F1 of the "
         "positive class", "precision": f"chosen on the validation split as the lowest reaching precision "
         f"{number:g}"}[kind]
  if info.get("reached") is False:
    how += " (not reached: the highest precision on validation instead)"
  return (f"`{class_names[info['positive']]}` is predicted when its probability is >= {info['threshold']:.4g} "
          f"(--threshold={info['rule']}: {how}; validation precision {info['precision']:.3f}, recall "
          f"{info['recall']:.3f}, F1 {info['f1']:.3f})")
