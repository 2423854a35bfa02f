"""Multi-label metrics (scikit-learn), per-label decision thresholds chosen on validation, and the one-vs-rest
TF-IDF + logistic-regression baseline."""

from typing import Dict, Sequence

import numpy as np
from sklearn import metrics as skm

BASELINE_METHOD = "one-vs-rest TF-IDF (word 1-2 grams, sublinear tf) + logistic regression, thresholds on val"
IMAGE_BASELINE_METHOD = "one-vs-rest logistic regression on 16x16 RGB pixels, thresholds on val"
DEFAULT_THRESHOLD = 0.5


def choose_thresholds(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  """Per label, the threshold that maximises that label's F1 on these (validation) examples.

  Candidates are the midpoints between consecutive distinct probabilities, so the chosen threshold lies between
  examples rather than on one. A label with no positive example among them keeps 0.5.

  Args:
    y_true: [N, L] 0/1.
    probabilities: [N, L].

  Returns:
    [L] float thresholds; a label is predicted when its probability is >= its threshold.
  """
  y_true, probabilities = np.asarray(y_true).astype(bool), np.asarray(probabilities, np.float64)
  thresholds = np.full(y_true.shape[1], DEFAULT_THRESHOLD)
  for j in range(y_true.shape[1]):
    positives = int(y_true[:, j].sum())
    if positives == 0:
      continue
    values = np.unique(probabilities[:, j])
    candidates = np.concatenate([(values[:-1] + values[1:]) / 2, values[-1:]])
    order = np.argsort(-probabilities[:, j], kind="stable")
    p, t = probabilities[order, j], y_true[order, j]
    best, best_f1 = DEFAULT_THRESHOLD, -1.0
    for c in candidates:
      predicted = p >= c
      tp = int((predicted & t).sum())
      f1 = 2 * tp / (int(predicted.sum()) + positives)
      if f1 > best_f1 + 1e-12:
        best, best_f1 = float(c), f1
    thresholds[j] = best
  return thresholds


def multilabel_metrics(y_true: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray,
                       label_names: Sequence[str]) -> Dict:
  """Scores multi-label predictions: a label is predicted where its probability reaches its threshold.

  Returns:
    A JSON-ready dict: micro_f1, macro_f1, samples_f1 (each with its precision and recall; samples-F1 scores an
    example with no true and no predicted label as 1), subset_accuracy (the
    whole label set right), hamming_loss, mean_average_precision (mean over labels with a positive example of
    scikit-learn's average precision, which reads the probabilities' ranking, not the thresholds), per_label
    {name: precision, recall, f1, support, average_precision, threshold}.
  """
  y_true = np.asarray(y_true).astype(int)
  probabilities = np.asarray(probabilities)
  y_pred = (probabilities >= np.asarray(thresholds)[None, :]).astype(int)
  result = {"num_examples": int(len(y_true)), "subset_accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "hamming_loss": float(skm.hamming_loss(y_true, y_pred))}
  for average in ("micro", "macro", "samples"):
    # An example with no true and no predicted label is right: samples-F1 scores it 1, not 0.
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=average,
                                                     zero_division=1.0 if average == "samples" else 0.0)
    result.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
  present = y_true.sum(axis=0) > 0
  ap = [float(skm.average_precision_score(y_true[:, j], probabilities[:, j])) if present[j] else None
        for j in range(y_true.shape[1])]
  result["mean_average_precision"] = float(np.mean([a for a in ap if a is not None])) if any(present) else 0.0
  p, r, f, support = skm.precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
  result["per_label"] = {name: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
                                "support": int(support[j]), "average_precision": ap[j],
                                "threshold": float(thresholds[j])}
                         for j, name in enumerate(label_names)}
  result["label_names"] = list(label_names)
  return result


def format_multilabel_table(result: Dict) -> str:
  names = result["label_names"]
  width = max(12, *(len(n) for n in names))
  lines = [f"{'label':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'AP':>7} {'thresh':>7} {'support':>8}"]
  for name in names:
    row = result["per_label"][name]
    ap = f"{row['average_precision']:7.4f}" if row["average_precision"] is not None else f"{'-':>7}"
    lines.append(f"{name:<{width}} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1']:9.4f} {ap} "
                 f"{row['threshold']:7.4f} {row['support']:8d}")
  for average in ("micro", "macro", "samples"):
    lines.append(f"{average + ' avg':<{width}} {result[average + '_precision']:9.4f} "
                 f"{result[average + '_recall']:9.4f} {result[average + '_f1']:9.4f}")
  lines.append(f"subset accuracy {result['subset_accuracy']:.4f}, Hamming loss {result['hamming_loss']:.4f}, "
               f"mAP {result['mean_average_precision']:.4f}")
  return "\n".join(lines)


def _ovr_probabilities(model, x, num_labels: int, trained: np.ndarray) -> np.ndarray:
  """[N, L] probabilities; a label constant in training gets its constant."""
  out = np.tile(trained.astype(float), (x.shape[0], 1))
  columns = [j for j in range(num_labels) if 0 < trained[j] < 1]
  if columns:
    out[:, columns] = model.predict_proba(x)
  return out


def _fit_ovr(features_train, y_train: np.ndarray, make_classifier):
  from sklearn.multiclass import OneVsRestClassifier  # pylint: disable=g-import-not-at-top
  rate = y_train.mean(axis=0)
  columns = [j for j in range(y_train.shape[1]) if 0 < rate[j] < 1]
  model = OneVsRestClassifier(make_classifier()).fit(features_train, y_train[:, columns]) if columns else None
  return model, rate


def baseline(train_x, y_train: np.ndarray, val_x, y_val: np.ndarray, test_x, *, kind: str = "text"):
  """Fits the one-vs-rest baseline on train, picks its thresholds on val, and scores test.

  Args:
    train_x, val_x, test_x: texts (kind="text") or [N, D] pixel features (kind="image").
    y_train, y_val: [N, L] 0/1.

  Returns:
    (method, test probabilities [N, L], thresholds [L]).
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  y_train = np.asarray(y_train).astype(int)
  if kind == "text":
    from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)).fit(list(train_x))
    transform, method = lambda x: vectorizer.transform(list(x)), BASELINE_METHOD
  else:
    from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
    scaler = StandardScaler().fit(train_x)
    transform, method = scaler.transform, IMAGE_BASELINE_METHOD
  model, rate = _fit_ovr(transform(train_x), y_train, lambda: LogisticRegression(max_iter=1000, C=10.0))
  predict = lambda x: _ovr_probabilities(model, transform(x), y_train.shape[1], rate)
  thresholds = choose_thresholds(y_val, predict(val_x))
  return method, predict(test_x), thresholds
