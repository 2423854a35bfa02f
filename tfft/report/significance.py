"""Whether the model really beat the baseline: bootstrap intervals, the paired comparison, McNemar, and seed summaries.

numpy and scipy only (no TensorFlow, no scikit-learn import), so saved predictions can be re-scored anywhere; the
tests check every metric against scikit-learn.
"""

from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

METRICS = ("accuracy", "macro_f1")
VERDICTS = ("better", "worse", "no clear difference")
# Resample indices are drawn at most this many at a time (16 MB of int64), so a large test split bounds memory.
_CHUNK_ELEMENTS = 2_000_000


def _check_metric(metric: str):
  if metric not in METRICS:
    raise ValueError(f"metric={metric!r} is not one of {', '.join(METRICS)}")


def _check_resampling(n_resamples: int, confidence: float):
  if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
    raise ValueError(f"n_resamples={n_resamples!r} must be a positive integer")
  if not 0 < confidence < 1:
    raise ValueError(f"confidence={confidence!r} must lie strictly between 0 and 1")


def _encode(y_true, labels: Optional[Sequence], **preds) -> Tuple[np.ndarray, Tuple[np.ndarray, ...], int]:
  """Maps labels to 0..C-1 so that counts are bincounts; C is fixed for every resample.

  Without `labels`, the classes are those seen in y_true or any prediction on the full test split. `preds` are
  keyed by the caller's argument names, so that an error names the argument.
  """
  y_true = np.asarray(y_true)
  named = [("y_true", y_true)] + [(name, np.asarray(p)) for name, p in preds.items()]
  preds = tuple(a for _, a in named[1:])
  for name, a in named:
    if a.ndim != 1:
      raise ValueError(f"{name} must be 1-D class labels, got shape {a.shape}")
    if len(a) != len(y_true):
      raise ValueError(f"{name} has {len(a)} entries but y_true has {len(y_true)}")
  if len(y_true) == 0:
    raise ValueError("y_true is empty: there is nothing to resample")
  classes = np.unique(np.concatenate((y_true,) + preds)) if labels is None else np.unique(np.asarray(labels))
  if len(classes) == 0:
    raise ValueError("labels is empty: name every class")
  coded = []
  for a in (y_true,) + preds:
    pos = np.clip(np.searchsorted(classes, a), 0, len(classes) - 1)
    unknown = classes[pos] != a
    if unknown.any():
      raise ValueError(f"label {a[unknown][0].item()!r} is not in labels={classes.tolist()}")
    coded.append(pos)
  return coded[0], tuple(coded[1:]), len(classes)


def _score(y_true: np.ndarray, y_pred: np.ndarray, metric: str, n_classes: int) -> float:
  """The metric on the full split: the identity draw, so the point estimate and the draws share one formula."""
  return float(_draw_scores(y_true, y_pred, metric, n_classes, np.arange(len(y_true))[None])[0])


def _draw_scores(y_true: np.ndarray, y_pred: np.ndarray, metric: str, n_classes: int, idx: np.ndarray) -> np.ndarray:
  """The metric on each row of idx ([k, n] example indices), without a Python loop over the rows.

  macro-F1 is built from per-draw counts rather than k calls to scikit-learn, which would take seconds: per class,
  F1 = 2 TP / (true count + predicted count), 0 when a class is neither true nor predicted in a draw (scikit-learn's
  f1_score with labels=all classes, average="macro", zero_division=0, as in metrics.json), averaged over all C.
  """
  hit = y_true == y_pred
  k, n = idx.shape
  if metric == "accuracy":
    return np.count_nonzero(hit[idx], axis=1) / n
  stride = n_classes + 1  # slot C collects the misses in the TP count
  offsets = (np.arange(k) * stride)[:, None]

  def per_draw_counts(codes):
    return np.bincount((codes[idx] + offsets).ravel(), minlength=k * stride).reshape(k, stride)[:, :n_classes]

  tp = per_draw_counts(np.where(hit, y_true, n_classes))
  support = per_draw_counts(y_true) + per_draw_counts(y_pred)
  f1 = np.divide(2.0 * tp, support, out=np.zeros(tp.shape), where=support > 0)
  return f1.mean(axis=1)


def _index_chunks(n: int, n_resamples: int, seed: Optional[int]) -> Iterator[np.ndarray]:
  """Bootstrap draws of example indices, [k, n] at a time; the same (n, n_resamples, seed) gives the same draws."""
  rng = np.random.default_rng(seed)
  per_chunk = max(1, min(n_resamples, _CHUNK_ELEMENTS // n))
  for start in range(0, n_resamples, per_chunk):
    yield rng.integers(0, n, size=(min(per_chunk, n_resamples - start), n))


def resample_indices(n: int, *, n_resamples: int = 2000, seed: Optional[int] = 0) -> np.ndarray:
  """The example indices behind bootstrap_ci and paired_comparison with the same n, n_resamples and seed.

  Args:
    n: number of test examples.
    n_resamples: number of bootstrap draws.
    seed: seed of numpy's default generator.

  Returns:
    [n_resamples, n] int array; row b holds the indices of draw b, sampled with replacement.
  """
  return np.concatenate(list(_index_chunks(n, n_resamples, seed)))


def resample_scores(y_true, y_pred, metric: str, indices: np.ndarray, *, labels: Optional[Sequence] = None) -> np.ndarray:
  """The metric on each given resample, e.g. to plot the bootstrap distribution or to check it against scikit-learn.

  Args:
    y_true: true labels of the test examples.
    y_pred: predicted labels, same length.
    metric: one of METRICS.
    indices: [B, n] example indices, e.g. from resample_indices.
    labels: every class; defaults to those seen in y_true or y_pred.

  Returns:
    [B] float array of the metric on each row of indices.

  Raises:
    ValueError: on an unknown metric, mismatched lengths, or a label outside `labels`.
  """
  _check_metric(metric)
  y, (p,), n_classes = _encode(y_true, labels, y_pred=y_pred)
  return _draw_scores(y, p, metric, n_classes, np.atleast_2d(np.asarray(indices)))


def _percentile_interval(draws: np.ndarray, confidence: float) -> Tuple[float, float]:
  alpha = 1 - confidence
  low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
  return float(low) + 0.0, float(high) + 0.0  # + 0.0 turns -0.0 into 0.0, so an empty difference prints as +0.000


def bootstrap_ci(y_true, y_pred, metric: str, *, n_resamples: int = 2000, confidence: float = 0.95,
                 seed: Optional[int] = 0, labels: Optional[Sequence] = None) -> Tuple[float, float]:
  """Percentile bootstrap confidence interval of a metric of the test predictions.

  Percentile, not BCa: scipy.stats.bootstrap's BCa returns NaN when every draw scores the same (a model right on
  every test example), its jackknife costs n more evaluations, and drawing the indices here lets paired_comparison
  and the tests reuse exactly the same draws (resample_indices).

  Args:
    y_true: true labels of the test examples.
    y_pred: predicted labels, same length.
    metric: "accuracy" or "macro_f1" (scikit-learn's macro F1 over all classes, zero_division=0).
    n_resamples: number of bootstrap draws of the test examples.
    confidence: coverage of the interval, e.g. 0.95.
    seed: seed of the draws; the same seed gives the same interval.
    labels: every class, so that a draw missing a class still averages over all of them; defaults to the classes
      seen in y_true or y_pred.

  Returns:
    (low, high), the alpha/2 and 1 - alpha/2 quantiles of the metric over the draws.

  Raises:
    ValueError: on an unknown metric, empty or mismatched inputs, a label outside `labels`, or a bad
      n_resamples or confidence.
  """
  _check_metric(metric)
  _check_resampling(n_resamples, confidence)
  y, (p,), n_classes = _encode(y_true, labels, y_pred=y_pred)
  draws = np.concatenate([_draw_scores(y, p, metric, n_classes, idx)
                          for idx in _index_chunks(len(y), n_resamples, seed)])
  return _percentile_interval(draws, confidence)


def mcnemar_exact_p(model_only_right: int, baseline_only_right: int) -> float:
  """McNemar's exact test: two-sided binomial test of the discordant pairs against p = 1/2.

  The exact conditional p-value, not the mid-p: it is conservative, and it is the one a reader can check with any
  binomial table.

  Args:
    model_only_right: examples the model got right and the baseline wrong.
    baseline_only_right: examples the baseline got right and the model wrong.

  Returns:
    The p-value; 1.0 when there are no discordant pairs.
  """
  discordant = int(model_only_right) + int(baseline_only_right)
  if discordant == 0:
    return 1.0
  return float(stats.binomtest(int(model_only_right), discordant, 0.5, alternative="two-sided").pvalue)


def paired_comparison(y_true, pred_model, pred_baseline, *, metric: str = "accuracy", n_resamples: int = 2000,
                      confidence: float = 0.95, seed: Optional[int] = 0, labels: Optional[Sequence] = None) -> Dict:
  """Model minus baseline on the same test examples, with a paired bootstrap interval and a verdict.

  Each draw resamples the example indices once and scores both arms on it, so the interval keeps the correlation
  between the arms; an unpaired interval would treat them as independent and come out far wider.

  Args:
    y_true: true labels of the test examples.
    pred_model: the model's predicted labels.
    pred_baseline: the baseline's predicted labels on the same examples, in the same order.
    metric: "accuracy" or "macro_f1".
    n_resamples: number of paired bootstrap draws.
    confidence: coverage of the interval of the difference.
    seed: seed of the draws; the same seed gives the same result.
    labels: every class; defaults to the classes seen in y_true or either prediction.

  Returns:
    A JSON-ready dict: metric; model and baseline (the metric of each); difference (model - baseline); ci
    [low, high] of the difference (percentile); confidence; mcnemar_p (McNemar's exact p, mcnemar_exact_p) for
    accuracy, None for other metrics; n; discordant [model_only_right, baseline_only_right]; verdict, "better" when
    the interval lies entirely above 0, "worse" when entirely below, else "no clear difference"; method.

  Raises:
    ValueError: on an unknown metric, empty or mismatched inputs, a label outside `labels`, or a bad
      n_resamples or confidence.
  """
  _check_metric(metric)
  _check_resampling(n_resamples, confidence)
  y, (pm, pb), n_classes = _encode(y_true, labels, pred_model=pred_model, pred_baseline=pred_baseline)
  draws = np.concatenate([_draw_scores(y, pm, metric, n_classes, idx) - _draw_scores(y, pb, metric, n_classes, idx)
                          for idx in _index_chunks(len(y), n_resamples, seed)])
  low, high = _percentile_interval(draws, confidence)
  model, baseline = _score(y, pm, metric, n_classes), _score(y, pb, metric, n_classes)
  model_only = int(np.count_nonzero((pm == y) & (pb != y)))
  baseline_only = int(np.count_nonzero((pb == y) & (pm != y)))
  verdict = "better" if low > 0 else "worse" if high < 0 else "no clear difference"
  return {
      "metric": metric,
      "model": model,
      "baseline": baseline,
      "difference": model - baseline + 0.0,
      "ci": [low, high],
      "confidence": float(confidence),
      "mcnemar_p": mcnemar_exact_p(model_only, baseline_only) if metric == "accuracy" else None,
      "n": int(len(y)),
      "discordant": [model_only, baseline_only],
      "verdict": verdict,
      "method": f"paired bootstrap, {n_resamples} resamples",
  }


def _format_p(p: float) -> str:
  return "p<0.0001" if p < 0.0001 else f"p={p:.4f}"  # 4 decimals alone would print a tiny p as 0.0000


def format_verdict(result: Dict) -> str:
  """One summary line for a paired_comparison result.

  Args:
    result: the dict paired_comparison returned (or read back from JSON).

  Returns:
    e.g. "model - baseline: accuracy=+0.0540 (95% CI +0.031 to +0.077, paired bootstrap; McNemar p=0.0001): better".
  """
  low, high = result["ci"]
  mcnemar = "" if result.get("mcnemar_p") is None else f"; McNemar {_format_p(result['mcnemar_p'])}"
  return (f"model - baseline: {result['metric']}={result['difference']:+.4f} "
          f"({result['confidence'] * 100:g}% CI {low:+.3f} to {high:+.3f}, paired bootstrap{mcnemar}): "
          f"{result['verdict']}")


def seed_summary(values: Sequence[float], confidence: float = 0.95) -> Dict:
  """Mean and spread of one result over seeds, for the docs' seed tables.

  Args:
    values: the result of each seed, e.g. three test accuracies.
    confidence: coverage of the interval of the mean.

  Returns:
    A JSON-ready dict: mean; std (sample, ddof=1); n; ci [low, high], mean -/+ t_{(1+confidence)/2, n-1} * std /
    sqrt(n) from Student's t; confidence. std and ci are None for a single value, which says nothing of spread.

  Raises:
    ValueError: when values is empty or not finite, or confidence is outside (0, 1).
  """
  x = np.asarray(values, dtype=float).ravel()
  if x.size == 0:
    raise ValueError("values is empty: give the result of at least one seed")
  if not np.isfinite(x).all():
    raise ValueError(f"values must be finite, got {x.tolist()}")
  if not 0 < confidence < 1:
    raise ValueError(f"confidence={confidence!r} must lie strictly between 0 and 1")
  mean, n = float(x.mean()), int(x.size)
  if n == 1:
    return {"mean": mean, "std": None, "n": 1, "ci": None, "confidence": float(confidence)}
  std = float(x.std(ddof=1))
  half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / np.sqrt(n))
  return {"mean": mean, "std": std, "n": n, "ci": [mean - half, mean + half], "confidence": float(confidence)}
