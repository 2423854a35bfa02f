"""The report's intervals and verdicts on fixed predictions, through to the summary text and the model card."""

import types

import numpy as np
import pytest

from tfft.tasks import registry
from tfft.report import run_report, summary

N = 200


def _right_on(y, right):
  """Binary predictions right exactly on the indices in `right`, wrong elsewhere."""
  pred = 1 - y
  pred[right] = y[right]
  return pred


def _metrics(y, model, baseline):
  """metrics.json's significance entries as report_test writes them, for fixed predictions."""
  return {"accuracy": float(np.mean(model == y)), "macro_f1": 0.0, "weighted_f1": 0.0,
          "ci": run_report.intervals(y, model, 2),
          "baseline": {"method": "fixed", "accuracy": float(np.mean(baseline == y)), "macro_f1": 0.0,
                       "weighted_f1": 0.0, "ci": run_report.intervals(y, baseline, 2)},
          "baseline_difference": {"accuracy": float(np.mean(model == y) - np.mean(baseline == y)), "macro_f1": 0.0,
                                  "weighted_f1": 0.0},
          "baseline_comparison": run_report.compare_with_baseline(y, model, baseline, 2)}


def _summary(metrics):
  result = types.SimpleNamespace(split_sizes={"train": 10, "val": 5, "test": N}, skipped_files=0, phases=[],
                                 metrics=metrics, model_dir="runs/x", export_path="saved_models/x/1")
  return summary.format_summary(result, registry.target(registry.DEFAULT_KIND))


Y = np.random.default_rng(0).integers(0, 2, N)
ORDER = np.random.default_rng(1).permutation(N)
CASES = {
    # right on 180 / 200 against 120 of those same 180: 60 discordant pairs, all for the model
    "better": (_right_on(Y, ORDER[:180]), _right_on(Y, ORDER[:120])),
    # both right on 140, wrong on different examples: 20 discordant pairs each way
    "no clear difference": (_right_on(Y, ORDER[:140]), _right_on(Y, ORDER[20:160])),
    "worse": (_right_on(Y, ORDER[:120]), _right_on(Y, ORDER[:180])),
}


@pytest.mark.parametrize("verdict", list(CASES))
def test_summary_states_the_verdict_for_accuracy_and_macro_f1(verdict):
  model, baseline = CASES[verdict]
  text = _summary(_metrics(Y, model, baseline))
  lines = [line for line in text.splitlines() if line.startswith("model - baseline: ")]
  assert [line.split("=")[0] for line in lines] == ["model - baseline: accuracy", "model - baseline: macro_f1"]
  assert all(line.endswith(f"): {verdict}") for line in lines), lines
  assert "paired bootstrap; McNemar p" in lines[0] and "McNemar" not in lines[1]


def test_intervals_bracket_the_test_accuracy_and_the_summary_prints_them():
  model, baseline = CASES["better"]
  m = _metrics(Y, model, baseline)
  low, high = m["ci"]["accuracy"]
  assert low < 0.9 < high and high - low < 0.1
  assert m["ci"]["macro_f1"][0] < m["ci"]["macro_f1"][1]
  line = next(line for line in _summary(m).splitlines() if "95% CI:" in line)
  assert line == (f"          95% CI: accuracy {low:.3f} to {high:.3f}, macro_f1 {m['ci']['macro_f1'][0]:.3f} to "
                  f"{m['ci']['macro_f1'][1]:.3f} (percentile bootstrap, 2000 resamples of the test split)")


def test_the_verdict_follows_the_paired_interval_not_the_two_separate_ones():
  """Two overlapping per-arm intervals can still give a clear paired gain: the arms err on the same examples."""
  y = Y
  model, baseline = _right_on(y, ORDER[:150]), _right_on(y, ORDER[:138])  # 12 discordant, all for the model
  m = _metrics(y, model, baseline)
  assert m["ci"]["accuracy"][0] < m["baseline"]["ci"]["accuracy"][1]  # the separate intervals overlap
  assert m["baseline_comparison"]["accuracy"]["verdict"] == "better"


def test_an_older_report_without_the_comparison_keeps_the_difference_line():
  model, baseline = CASES["better"]
  m = _metrics(Y, model, baseline)
  del m["baseline_comparison"], m["ci"]
  text = _summary(m)
  assert "model - baseline: accuracy=+0.3000  macro_f1=+0.0000" in text and "CI" not in text
