"""The model card written into every export: data, backbone, phases, hyperparameters, test metrics, signature."""

import dataclasses
from typing import Dict, Sequence

from tfft.config import Config, parse_freeze
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
               backbone, contract: Sequence[str], signature: Dict, target, planned: Sequence) -> str:
  """The card as Markdown; `data` is the run's RunData (with its Targets), `backbone` the resolved --backbone spec,
  `target` the run's target (tfft.tasks.api.Target), `planned` the phases the run planned (tfft.fit.recipe.Phase)."""

  opening, labels_line = target.describe(data.targets, data.task)
  sizes = {name: len(indices) for name, indices in data.split.items()}
  source = getattr(backbone, "source", config.model.backbone)
  local = getattr(backbone, "local", True)
  lines = [f"# Model card: {config.run.name}", "",
           opening, "",
           "## Data", "",
           f"- Dataset: `{config.data.dataset}`",
           labels_line,
           f"- Split (stratified {target.stratified}, seed {config.train.seed}): "
           + ", ".join(f"{k} {v}" for k, v in sizes.items()) + " (manifest: `split_manifest.csv` in the run dir)",
           "", "## Backbone", "",
           f"- `--backbone={config.model.backbone}`",
           (f"- Weights: `--backbone_weights={config.model.backbone_weights}`" if data.task == "image" else
            f"- Weights: {'local checkpoint at' if local else 'downloaded through keras-hub from'} `{source}`"),
           "", "## Phases and freezing", "",
           "| phase | freezing | epochs run / planned | peak LR | trainable / frozen params | best |",
           "|---|---|---|---|---|---|"]
  planned = {p.name: p for p in planned}
  for phase in phases:
    plan = planned.get(phase.name)
    freeze = (describe_freeze(parse_freeze(phase.freeze)) if getattr(phase, "freeze", "") else
              describe_freeze(plan.freeze) if plan else "?")
    best = "n/a" if phase.best is None else f"{phase.monitor}={phase.best:.4f}"
    lines.append(f"| {phase.name} | {freeze} | {phase.epochs_run} / {getattr(phase, 'planned_epochs', 0) or (plan.epochs if plan else '?')} | "
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
  for name, value in target.scalars(metrics).items():
    row = f"| {name} | {value:.4f} |"
    if "baseline" in metrics and name in metrics["baseline"]:
      row += f" {metrics['baseline'][name]:.4f} | {metrics['baseline_difference'][name]:+.4f} |"
    elif "baseline" in metrics:
      row += " | |"
    lines.append(row)
  lines += target.card_lines(metrics)
  what = "probabilities" if target.parity_output == "probabilities" else f"`{target.parity_output}`"
  on = (f"{parity.get('sample', 'a sample of')} {parity['examples']} of the {parity['of']} test examples"
        if parity.get("of", 0) > parity["examples"] else f"all {parity['examples']} test examples")
  lines += ["", f"Export parity: `serving_default` reproduced the trained model's {what} on {on} (max difference "
                f"{parity['max_abs_diff']:.2g}, tolerance {parity['tolerance']:g}).",
            "", "## Signature `serving_default`", "", "| | name | dtype | shape |", "|---|---|---|---|"]
  for kind in ("inputs", "outputs"):
    for name, (dtype, shape) in sorted(signature[kind].items()):
      lines.append(f"| {kind[:-1]} | `{name}` | {dtype} | {shape} |")
  lines += ["", "## Preprocessing contract", ""] + [f"- {line}" for line in contract]
  lines += target.output_lines() + [""]
  return "\n".join(lines)


