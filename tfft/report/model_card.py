"""The model card written into every export: data, backbone, phases, hyperparameters, test metrics, signature."""

import dataclasses
from typing import Dict, Sequence

from tfft.config import Config, parse_freeze
from tfft.report import metrics as metrics_lib, summary
from tfft.report.significance import METRICS, format_verdict
from tfft.rundir import PhaseResult

MODEL_CARD = "model_card.md"


def describe_freeze(policy) -> str:
  """A freezing policy in words, for the card's phase table."""
  if policy.kind == "all":
    return "backbone frozen, head trains"
  if policy.kind == "none":
    return "whole backbone and head train"
  if policy.kind == "from_layer":
    return f"backbone from layer `{policy.layer}` on and head train, the layers before it frozen"
  return f"top {policy.k} blocks and head train, the rest frozen"


def model_card(config: Config, data, *, metrics: Dict, parity: Dict, phases: Sequence[PhaseResult],
                backbone, contract: Sequence[str], signature: Dict) -> str:
  """The card as Markdown; `data` is the run's RunData, `backbone` the resolved --backbone spec."""
  from tfft.fit import recipe  # pylint: disable=g-import-not-at-top

  sizes = {name: len(indices) for name, indices in data.split.items()}
  source = getattr(backbone, "source", config.model.backbone)
  local = getattr(backbone, "local", True)
  lines = [f"# Model card: {config.run.name}", "",
           f"A {len(data.class_names)}-class {data.task} classifier fine-tuned with tfft.", "",
           "## Data", "",
           f"- Dataset: `{config.data.dataset}`",
           f"- Classes ({len(data.class_names)}, in output order): " + ", ".join(f"`{c}`" for c in data.class_names),
           "- Split (stratified per class, seed {}): ".format(config.train.seed)
           + ", ".join(f"{k} {v}" for k, v in sizes.items()) + " (manifest: `split_manifest.csv` in the run dir)",
           "", "## Backbone", "",
           f"- `--backbone={config.model.backbone}`",
           (f"- Weights: `--backbone_weights={config.model.backbone_weights}`" if data.task == "image" else
            f"- Weights: {'local checkpoint at' if local else 'downloaded through keras-hub from'} `{source}`"),
           "", "## Phases and freezing", "",
           "| phase | freezing | epochs run / planned | peak LR | trainable / frozen params | best |",
           "|---|---|---|---|---|---|"]
  planned = {p.name: p for p in recipe.plan_phases(config.train)}
  for phase in phases:
    plan = planned.get(phase.name)
    freeze = (describe_freeze(parse_freeze(phase.freeze)) if getattr(phase, "freeze", "") else
              describe_freeze(plan.freeze) if plan else "?")
    best = "n/a" if phase.best is None else f"{phase.monitor}={phase.best:.4f}"
    lines.append(f"| {phase.name} | {freeze} | {phase.epochs_run} / {plan.epochs if plan else '?'} | "
                 f"{plan.learning_rate if plan else '?'} | {phase.trainable_params:,} / {phase.frozen_params:,} | "
                 f"{best} |")
  if metrics.get("methods"):
    lines += ["", "## Fine-tuning methods", ""] + [f"- {line}" for line in metrics["methods"]]
  lines += ["", "## Hyperparameters", "", "| flag | value |", "|---|---|"]
  for section in (config.model, config.train):
    for field in dataclasses.fields(section):
      lines.append(f"| `--{field.name}` | `{getattr(section, field.name)}` |")
  lines += ["", "## Test metrics", "", f"On the {metrics['num_examples']} test examples:", "",
            "| metric | model |" + (" baseline | difference |" if "baseline" in metrics else ""),
            "|---|---|" + ("---|---|" if "baseline" in metrics else "")]
  for name, value in metrics_lib.scalar_metrics(metrics).items():
    row = f"| {name} | {value:.4f} |"
    if "baseline" in metrics and name in metrics["baseline"]:
      row += f" {metrics['baseline'][name]:.4f} | {metrics['baseline_difference'][name]:+.4f} |"
    elif "baseline" in metrics:
      row += " | |"
    lines.append(row)
  for line in summary.interval_lines(metrics):
    lines += ["", line]
  if "baseline" in metrics:
    lines += ["", f"Baseline: {metrics['baseline']['method']}, fitted on the same train split."]
    if "baseline_comparison" in metrics:
      lines += ["", "Paired on the same test examples (verdict `better` or `worse` only when the whole interval of "
                "the difference is on one side of 0):", ""]
      lines += [f"- {format_verdict(metrics['baseline_comparison'][name])}" for name in METRICS]
  if "calibration" in metrics:
    c = metrics["calibration"]
    lines += ["", f"Calibration: the export divides the logits by a temperature of {c['temperature']:.4g}, fitted on "
              f"the validation split (lowest NLL); on the test split the expected calibration error goes from "
              f"{c['ece_before']:.4f} to {c['ece_after']:.4f} ({c['bins']} bins) and the NLL from "
              f"{c['nll_before']:.4f} to {c['nll_after']:.4f}; the predicted class is unchanged."]
  lines += ["", f"Export parity: `serving_default` reproduced the trained model's probabilities on all "
                f"{parity['examples']} test examples (max difference {parity['max_abs_diff']:.2g}, tolerance "
                f"{parity['tolerance']:g}).",
            "", "## Signature `serving_default`", "", "| | name | dtype | shape |", "|---|---|---|---|"]
  for kind in ("inputs", "outputs"):
    for name, (dtype, shape) in sorted(signature[kind].items()):
      lines.append(f"| {kind[:-1]} | `{name}` | {dtype} | {shape} |")
  lines += ["", "## Preprocessing contract", ""] + [f"- {line}" for line in contract]
  lines += ["- Outputs: `probabilities` (float32 [N, C], in `labels.txt` order), `class_id` (int64 [N]) and "
            "`class_name` (string [N]).", ""]
  return "\n".join(lines)


