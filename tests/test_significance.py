"""Significance on fixed predictions: the verdicts, the intervals, McNemar by hand, macro-F1 against scikit-learn."""

import json
import math
import re

import numpy as np
import pytest
from sklearn import metrics as skm

from tfft.report import significance as sig

N = 100


def _truth(n=N, classes=3, seed=0):
  return np.random.default_rng(seed).integers(0, classes, n)


def _right_on(y, right, classes=3):
  """Predictions right exactly on the indices in `right`, wrong (the next class) elsewhere."""
  pred = (y + 1) % classes
  pred[right] = y[right]
  return pred


def _better_case():
  """The model is right on 90/100, the baseline on 60 of those same 90: 30 discordant pairs, all for the model."""
  y = _truth()
  order = np.random.default_rng(1).permutation(N)  # scattered, so the right sets are not runs of indices
  return y, _right_on(y, order[:90]), _right_on(y, order[:60])


def _even_case():
  """Both right on 70/100, wrong on different examples: 15 discordant pairs each way."""
  y = _truth()
  return y, _right_on(y, np.r_[30:100]), _right_on(y, np.r_[0:15, 45:100])


def test_clear_gain_is_better_with_mcnemar_by_hand():
  y, model, baseline = _better_case()
  r = sig.paired_comparison(y, model, baseline)
  assert (r["model"], r["baseline"]) == (pytest.approx(0.90), pytest.approx(0.60))
  assert r["difference"] == pytest.approx(0.30)
  assert r["discordant"] == [30, 0]
  assert r["mcnemar_p"] == pytest.approx(2 * 0.5 ** 30)  # two-sided: both tails of Binomial(30, 1/2) at 0 and 30
  assert 0 < r["ci"][0] <= r["difference"] <= r["ci"][1]
  assert r["verdict"] == "better"
  assert r["n"] == N and r["confidence"] == 0.95 and r["method"] == "paired bootstrap, 2000 resamples"


def test_same_accuracy_different_errors_is_no_clear_difference():
  y, model, baseline = _even_case()
  r = sig.paired_comparison(y, model, baseline)
  assert r["difference"] == pytest.approx(0.0)
  assert r["discordant"] == [15, 15]
  assert r["mcnemar_p"] == pytest.approx(1.0)
  assert r["ci"][0] < 0 < r["ci"][1]
  assert r["verdict"] == "no clear difference"


def test_clear_loss_is_worse():
  y, model, baseline = _better_case()
  r = sig.paired_comparison(y, baseline, model)  # the arms swapped
  assert r["difference"] == pytest.approx(-0.30)
  assert r["discordant"] == [0, 30]
  assert r["ci"][0] <= r["difference"] <= r["ci"][1] < 0
  assert r["verdict"] == "worse"


def test_macro_f1_comparison_matches_sklearn_point_values_and_has_no_mcnemar():
  y, model, baseline = _better_case()
  r = sig.paired_comparison(y, model, baseline, metric="macro_f1")
  for arm, pred in (("model", model), ("baseline", baseline)):
    assert r[arm] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
  assert r["mcnemar_p"] is None
  assert r["ci"][0] <= r["difference"] <= r["ci"][1]
  assert r["verdict"] == "better"


def test_mcnemar_exact_p_against_the_binomial_by_hand():
  # 7 vs 2 discordant: P(X <= 2) for X ~ Binomial(9, 1/2), doubled.
  hand = 2 * sum(math.comb(9, k) for k in range(3)) / 2 ** 9
  assert hand == pytest.approx(92 / 512)
  assert sig.mcnemar_exact_p(7, 2) == pytest.approx(hand)
  assert sig.mcnemar_exact_p(2, 7) == pytest.approx(hand)
  assert sig.mcnemar_exact_p(0, 0) == 1.0
  # The same counts through paired_comparison: the model alone right on 7, the baseline alone on 2.
  y = _truth()
  model = _right_on(y, np.r_[0:50, 50:57])
  baseline = _right_on(y, np.r_[0:50, 57:59])
  r = sig.paired_comparison(y, model, baseline, n_resamples=200)
  assert r["discordant"] == [7, 2] and r["mcnemar_p"] == pytest.approx(hand)


def test_bootstrap_ci_contains_the_point_and_narrows_with_more_data():
  y, model, _ = _better_case()
  for metric, point in (("accuracy", skm.accuracy_score(y, model)),
                        ("macro_f1", skm.f1_score(y, model, average="macro", zero_division=0))):
    low, high = sig.bootstrap_ci(y, model, metric)
    assert low < point < high, metric
  wide = np.subtract(*sig.bootstrap_ci(y, model, "accuracy")[::-1])
  y4, m4 = np.tile(y, 4), np.tile(model, 4)
  narrow = np.subtract(*sig.bootstrap_ci(y4, m4, "accuracy")[::-1])
  assert narrow < 0.7 * wide  # ~1/sqrt(4) of the width: the interval reflects the sample size
  assert np.subtract(*sig.bootstrap_ci(y, model, "accuracy", confidence=0.8)[::-1]) < wide


def _rare_class_case():
  """40 examples where class 3 is true once and predicted twice, so many resamples miss it."""
  rng = np.random.default_rng(5)
  y = rng.integers(0, 3, 40)
  y[7] = 3
  pred = np.where(rng.random(40) < 0.7, y, rng.integers(0, 3, 40))
  pred[[7, 20]] = 3
  return y, pred


@pytest.mark.parametrize("metric", sig.METRICS)
def test_resample_scores_equal_sklearn_on_the_same_indices(metric):
  y, pred = _rare_class_case()
  labels = [0, 1, 2, 3]
  idx = sig.resample_indices(len(y), n_resamples=30, seed=2)
  assert idx.shape == (30, 40)
  missing = [b for b in range(30) if 3 not in y[idx[b]] and 3 not in pred[idx[b]]]
  assert missing  # the check below covers draws with a class absent from both truth and prediction
  ours = sig.resample_scores(y, pred, metric, idx, labels=labels)
  for b in range(30):
    yt, yp = y[idx[b]], pred[idx[b]]
    if metric == "accuracy":
      theirs = skm.accuracy_score(yt, yp)
    else:
      theirs = skm.f1_score(yt, yp, labels=labels, average="macro", zero_division=0)
    assert ours[b] == pytest.approx(theirs, abs=1e-12), b


@pytest.mark.parametrize("metric", sig.METRICS)
def test_bootstrap_ci_is_the_percentile_interval_of_resample_indices(metric, monkeypatch):
  # A small chunk forces many chunks of draws; resample_indices must still be exactly the draws behind the CI.
  monkeypatch.setattr(sig, "_CHUNK_ELEMENTS", 700)
  y, pred = _rare_class_case()
  scores = sig.resample_scores(y, pred, metric, sig.resample_indices(len(y), n_resamples=500, seed=4))
  expected = np.quantile(scores, [0.05, 0.95])
  assert sig.bootstrap_ci(y, pred, metric, n_resamples=500, confidence=0.9, seed=4) == pytest.approx(expected)


def test_same_seed_same_result_and_another_seed_another():
  y, model, baseline = _even_case()
  first = sig.paired_comparison(y, model, baseline, metric="macro_f1", seed=7)
  assert sig.paired_comparison(y, model, baseline, metric="macro_f1", seed=7) == first
  assert sig.paired_comparison(y, model, baseline, metric="macro_f1", seed=8)["ci"] != first["ci"]
  assert sig.bootstrap_ci(y, model, "accuracy", seed=3) == sig.bootstrap_ci(y, model, "accuracy", seed=3)
  assert sig.bootstrap_ci(y, model, "accuracy", seed=3) != sig.bootstrap_ci(y, model, "accuracy", seed=4)


@pytest.mark.parametrize("metric", sig.METRICS)
def test_identical_predictions_give_a_zero_width_interval(metric):
  y, model, _ = _better_case()
  r = sig.paired_comparison(y, model, model.copy(), metric=metric)
  assert r["difference"] == 0.0 and r["ci"] == [0.0, 0.0]
  assert r["discordant"] == [0, 0]
  assert r["verdict"] == "no clear difference"
  assert "+0.0000" in sig.format_verdict(r) and "-0.000" not in sig.format_verdict(r)
  # Both arms predicting one class everywhere: also no difference, and no crash on the empty classes.
  const = np.zeros(N, dtype=int)
  assert sig.paired_comparison(y, const, const, metric=metric)["ci"] == [0.0, 0.0]


def test_a_perfect_model_has_a_zero_width_interval_at_one():
  y = _truth()
  assert sig.bootstrap_ci(y, y, "accuracy") == (1.0, 1.0)
  assert sig.bootstrap_ci(y, y, "macro_f1") == (1.0, 1.0)


def test_single_class_in_y_true():
  y = np.zeros(N, dtype=int)
  assert sig.bootstrap_ci(y, y, "macro_f1") == (1.0, 1.0)  # classes seen: only 0
  # With all three classes named, the two never seen score F1 0, as scikit-learn's zero_division=0 does.
  third = skm.f1_score(y, y, labels=[0, 1, 2], average="macro", zero_division=0)
  assert third == pytest.approx(1 / 3)
  assert sig.bootstrap_ci(y, y, "macro_f1", labels=[0, 1, 2]) == pytest.approx((third, third))
  model, baseline = y.copy(), y.copy()
  model[:3] = 1  # right on 97
  baseline[:25] = 2  # right on 75, a subset of the model's
  for metric in sig.METRICS:
    r = sig.paired_comparison(y, model, baseline, metric=metric, labels=[0, 1, 2])
    assert r["ci"][0] <= r["difference"] <= r["ci"][1], metric
  r = sig.paired_comparison(y, model, baseline, metric="macro_f1", labels=[0, 1, 2])
  assert r["model"] == pytest.approx(skm.f1_score(y, model, labels=[0, 1, 2], average="macro", zero_division=0))
  assert sig.paired_comparison(y, model, baseline)["verdict"] == "better"


def test_string_labels_work_like_integers():
  y, model, baseline = _better_case()
  names = np.array(["business", "sport", "tech"])
  as_text = sig.paired_comparison(names[y], names[model], names[baseline], metric="macro_f1")
  assert as_text == sig.paired_comparison(y, model, baseline, metric="macro_f1")


def test_result_is_json_ready():
  y, model, baseline = _better_case()
  for metric in sig.METRICS:
    r = sig.paired_comparison(y, model, baseline, metric=metric)
    assert json.loads(json.dumps(r, allow_nan=False)) == r
    assert all(type(v) in (str, int, float, list, type(None)) for v in r.values())


def test_format_verdict_golden_lines():
  result = {"metric": "accuracy", "difference": 0.054, "ci": [0.031, 0.077], "confidence": 0.95,
            "mcnemar_p": 0.0001, "verdict": "better"}
  assert sig.format_verdict(result) == (
      "model - baseline: accuracy=+0.0540 (95% CI +0.031 to +0.077, paired bootstrap; McNemar p=0.0001): better")
  result.update(mcnemar_p=2e-9)
  assert "McNemar p<0.0001)" in sig.format_verdict(result)
  result.update(metric="macro_f1", difference=-0.0123, ci=[-0.05, 0.021], confidence=0.9, mcnemar_p=None,
                verdict="no clear difference")
  assert sig.format_verdict(result) == (
      "model - baseline: macro_f1=-0.0123 (90% CI -0.050 to +0.021, paired bootstrap): no clear difference")


def test_format_verdict_of_a_real_result():
  y, model, baseline = _better_case()
  line = sig.format_verdict(sig.paired_comparison(y, model, baseline))
  assert line.startswith("model - baseline: accuracy=+0.3000 (95% CI +0.")
  assert line.endswith("paired bootstrap; McNemar p<0.0001): better")


def test_seed_summary_against_a_hand_computation():
  s = sig.seed_summary([0.90, 0.92, 0.94])
  assert s["mean"] == pytest.approx(0.92) and s["std"] == pytest.approx(0.02) and s["n"] == 3
  half = 4.302653 * 0.02 / math.sqrt(3)  # t_{0.975, 2} from a t table
  assert s["ci"] == pytest.approx([0.92 - half, 0.92 + half], rel=1e-6)
  assert json.loads(json.dumps(s, allow_nan=False)) == s
  assert sig.seed_summary([0.5, 0.5])["ci"] == pytest.approx([0.5, 0.5])
  one = sig.seed_summary([0.8])
  assert one["mean"] == 0.8 and one["std"] is None and one["ci"] is None


@pytest.mark.parametrize("call, message", [
    (lambda: sig.bootstrap_ci([0, 1], [0, 1], "f1"), "metric='f1' is not one of accuracy, macro_f1"),
    (lambda: sig.bootstrap_ci([0, 1], [0], "accuracy"), "y_pred has 1 entries but y_true has 2"),
    (lambda: sig.bootstrap_ci([], [], "accuracy"), "y_true is empty"),
    (lambda: sig.bootstrap_ci([0, 5], [0, 1], "accuracy", labels=[0, 1]), "label 5 is not in labels=[0, 1]"),
    (lambda: sig.bootstrap_ci([0, 1], [0, 1], "accuracy", n_resamples=0), "n_resamples=0"),
    (lambda: sig.paired_comparison([0, 1], [0, 1], [1, 1], confidence=1.0), "confidence=1.0"),
    (lambda: sig.paired_comparison([0, 1], [0, 1], [[1, 1]]), "pred_baseline must be 1-D"),
    (lambda: sig.seed_summary([]), "values is empty"),
    (lambda: sig.seed_summary([0.9, float("nan")]), "must be finite"),
])
def test_bad_inputs_name_the_value(call, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    call()
