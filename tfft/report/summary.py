"""The summaries the commands print on stdout when they finish."""

from typing import Dict, List

from tfft.report.significance import format_verdict, METRICS


def format_summary(result, target) -> str:
  """tfft.train's summary of a finished run (a tfft.fit.job.RunResult): split sizes, parameters per phase, test
  scores beside the baseline (as the run's `target` words them), export parity, and where the run dir and the
  export are."""
  lines = ["", "tfft summary", "============",
           "data:     " + "  ".join(f"{k}={v}" for k, v in result.split_sizes.items())]
  lines += data_lines(getattr(result, "split_info", {}))
  if result.skipped_files:
    lines.append(f"skipped:  {result.skipped_files} file(s) that do not decode as images (paths in the log)")
  for phase in result.phases:
    best = "n/a" if phase.best is None else f"{phase.best:.4f}"
    lines.append(f"phase {phase.name:<9} trainable={phase.trainable_params:,}  frozen={phase.frozen_params:,}  "
                 f"epochs={phase.epochs_run}  best {phase.monitor}={best}  {phase.seconds:.0f}s")
  lines += list(getattr(result, "methods", []) or result.metrics.get("methods", []))
  lines += [*target.summary_lines(result.metrics),
            f"run dir:  {result.model_dir}",
            f"export:   {result.export_path}"]
  return "\n".join(lines)


def data_lines(info: Dict) -> List[str]:
  """The lines under `data:`: a training set drawn from the train split, and duplicate texts.

  Args:
    info: tfft.data.split.Split.info.

  Returns:
    Zero to two lines, indented under `data:`.
  """
  lines, pad = [], " " * 10
  if info.get("train_examples_per_class"):
    lines.append(f"{pad}train: up to {info['train_examples_per_class']} per class drawn from the train split's "
                 f"{info['train_pool']} (--train_examples_per_class)")
  if info.get("dropped"):
    lines.append(f"{pad}duplicates: dropped {info['dropped']} text(s) repeating an earlier one (--dedupe=drop)")
  elif info.get("duplicates") and info.get("dedupe") == "split":
    lines.append(f"{pad}duplicates: {info['duplicates']} text(s) repeat an earlier one (up to whitespace and case); "
                 "each stays in its first's split (--dedupe=split)")
  elif info.get("duplicates"):
    lines.append(f"{pad}duplicates: {info['duplicates']} text(s) repeat an earlier one, {info['across_splits']} of "
                 "them in another split (--dedupe=off)")
  return lines


def interval_lines(metrics: Dict, *, indent: int = 0) -> List[str]:
  """The line with the bootstrap intervals of the test accuracy and macro-F1, if the metrics hold them.

  Args:
    metrics: a report's metrics (metrics.json's content), with "ci" as tfft.report.run_report.intervals writes it.
    indent: spaces before the line, to sit under the line it qualifies.

  Returns:
    [] or one line, e.g. "95% CI: accuracy 0.936 to 0.973, macro_f1 0.935 to 0.972 (percentile bootstrap, …)".
  """
  ci = metrics.get("ci")
  if not ci:
    return []
  ranges = ", ".join(f"{name} {ci[name][0]:.3f} to {ci[name][1]:.3f}" for name in METRICS)
  return [" " * indent + f"{ci['confidence'] * 100:g}% CI: {ranges} ({ci['method']})"]


def baseline_lines(metrics: Dict) -> List[str]:
  """Classification: the baseline, model - baseline (a verdict per metric) and parity lines of train's summary."""
  lines = []
  if "baseline" in metrics:
    b, d = metrics["baseline"], metrics["baseline_difference"]
    lines.append(f"baseline: accuracy={b['accuracy']:.4f}  macro_f1={b['macro_f1']:.4f}  weighted_f1="
                 f"{b['weighted_f1']:.4f}  ({b['method']})")
    comparison = metrics.get("baseline_comparison")
    if comparison:
      lines += [format_verdict(comparison[name]) for name in METRICS]
    else:  # a report written before the paired comparison existed
      lines.append(f"model - baseline: accuracy={d['accuracy']:+.4f}  macro_f1={d['macro_f1']:+.4f}  "
                   f"weighted_f1={d['weighted_f1']:+.4f}")
  return lines + calibration_lines(metrics) + parity_lines(metrics)


def threshold_lines(metrics: Dict) -> List[str]:
  """Train's summary line on a two-class --threshold: where it is, how it was chosen, the test at it."""
  if "threshold" not in metrics:
    return []
  t = metrics["threshold"]
  return [f"threshold: {t['positive_class']} when p >= {t['threshold']:.4g} (--threshold={t['rule']}, on "
          f"validation); test at it: accuracy={t['test']['accuracy']:.4f}  macro_f1={t['test']['macro_f1']:.4f}  "
          f"{t['positive_class']} precision={t['test']['precision']:.4f} recall={t['test']['recall']:.4f}"]


def calibration_lines(metrics: Dict) -> List[str]:
  """The calibration line of train's summary, if the run fitted a temperature."""
  if "calibration" not in metrics:
    return []
  c = metrics["calibration"]
  return [f"calibration: temperature {c['temperature']:.3g} (fitted on validation); test ECE "
          f"{c['ece_before']:.4f} -> {c['ece_after']:.4f}, NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f} "
          f"({c['reliability_diagram']})"]


def parity_lines(metrics: Dict) -> List[str]:
  """The export parity line of train's summary, if the metrics hold it."""
  if "export_parity" not in metrics:
    return []
  p = metrics["export_parity"]
  if "same_texts" in p:  # generation: the export's texts equal the in-process ones
    return [f"parity:   serving_default writes the same texts on {p['same_texts']} of {p['of']} test prompts"]
  what = p.get("output", "probabilities")
  delta = "dp" if what == "probabilities" else f"d{what}"
  of = f" of {p['of']}" if p.get("of", 0) > p["examples"] else ""
  return [f"parity:   serving_default matches on {p['examples']}{of} test examples "
          f"(max |{delta}| {p['max_abs_diff']:.1e} <= {p['tolerance']:g})"]


def shorten(value, width: int) -> str:
  """An input (a text, or a pair of texts) on one line of at most `width` characters, for the commands' tables."""
  text = " ".join((" | ".join(value) if isinstance(value, (tuple, list)) else str(value)).split())
  return text if len(text) <= width else text[:width - 1] + "…"
