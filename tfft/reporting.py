"""After training: the test report with its baseline, the quality gate, and an export checked before it is published."""

import dataclasses
import io
import pathlib
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from absl import logging

from tfft import baseline as baseline_lib
from tfft import metrics as metrics_lib
from tfft import served, serving_kit
from tfft.config import Config, ModelConfig
from tfft.errors import RunFailed
from tfft.state import PhaseResult

CURVES_PNG = "training_curves.png"
MODEL_CARD = "model_card.md"
# Served and in-process probabilities differ by float round-off only (~1e-7); preprocessing skew moves them by far more.
PARITY_ATOL = 1e-4


@dataclasses.dataclass(frozen=True)
class RunData:
  """A run's examples as the report needs them.

  Attributes:
    task: "text" or "image".
    inputs: per example, the text or the image's file path (what the signature is fed, before encoding).
    ids: per example, its id in the split manifest.
    labels: per example, its class index.
    split: split name -> example indices.
    class_names: names in class-index order.
  """
  task: str
  inputs: Sequence[str]
  ids: Sequence[str]
  labels: np.ndarray
  split: Dict[str, np.ndarray]
  class_names: Sequence[str]

  def take(self, name: str) -> List[str]:
    return [self.inputs[i] for i in self.split[name]]


def _fit_baseline(data: RunData):
  train = data.split["train"]
  if data.task == "text":
    return baseline_lib.TEXT_METHOD, baseline_lib.text_baseline(
        data.take("train"), data.labels[train], data.take("test"), num_classes=len(data.class_names))
  from PIL import Image  # pylint: disable=g-import-not-at-top

  # Each input is an image file's path, or its encoded bytes for images held in memory.
  pixels = lambda inputs: [np.asarray(Image.open(io.BytesIO(x) if isinstance(x, bytes) else x).convert("RGB"))
                           for x in inputs]
  return baseline_lib.IMAGE_METHOD.format(size=16), baseline_lib.image_baseline(
      pixels(data.take("train")), data.labels[train], pixels(data.take("test")), num_classes=len(data.class_names))


def report_test(model_dir: pathlib.Path, config: Config, data: RunData, probabilities: np.ndarray, *,
                phases: Sequence[PhaseResult]) -> Dict:
  """Scores the test split, fits and scores the baseline, and writes the run's report and training curves.

  Writes metrics.json, classification_report.txt, confusion_matrix.png, misclassified.csv and
  training_curves.png into the run dir.

  Returns:
    The metrics (metrics.json's content): the model's, then "baseline" and "baseline_difference" (model - baseline).
  """
  test = data.split["test"]
  y_true = data.labels[test]
  metrics = metrics_lib.classification_metrics(y_true, probabilities, data.class_names)
  metrics["split_sizes"] = {name: int(len(indices)) for name, indices in data.split.items()}
  if config.report.baseline != "none":
    method, scores = _fit_baseline(data)
    base = metrics_lib.classification_metrics(y_true, scores, data.class_names)
    metrics["baseline"] = {"method": method, **metrics_lib.scalar_metrics(base),
                           "per_class": base["per_class"], "confusion_matrix": base["confusion_matrix"]}
    metrics["baseline_difference"] = metrics_lib.compare(metrics, base)
  metrics_lib.write_report(model_dir, metrics, y_true=y_true, probabilities=probabilities,
                           inputs=[x if isinstance(x, str) else "(in memory; see id)" for x in data.take("test")],
                           ids=[data.ids[i] for i in test])
  from tfft import plots  # pylint: disable=g-import-not-at-top

  histories = [(p.name, plots.read_history(model_dir / f"history_{p.name}.csv")) for p in phases
               if (model_dir / f"history_{p.name}.csv").is_file()]
  plots.plot_training_curves(model_dir / CURVES_PNG, histories, metric="accuracy")
  logging.info("test metrics:\n%s", metrics_lib.format_table(metrics))
  return metrics


def check_gate(metrics: Dict, gates, *, model_dir: pathlib.Path):
  """Raises RunFailed, before anything is exported, if a --min_metric gate is unmet."""
  unmet = [f"{name}={metrics[name]:.4f} < {threshold:g}" for name, threshold in gates
           if metrics.get(name) is None or metrics[name] < threshold]
  if unmet:
    raise RunFailed(f"quality gate unmet on the test split: {', '.join(unmet)} (--min_metric); no export written; "
                    f"the checkpoints and report stay in {model_dir}")


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


def text_contract(preprocessor, model: ModelConfig) -> List[str]:
  """The text export's preprocessing contract, for the model card."""
  tokenizer = getattr(preprocessor, "tokenizer", None)
  lines = ["Input: a batch of raw UTF-8 strings, shape [N]; the client does no cleaning, lowercasing or tokenizing.",
           f"Tokenizer (in the graph, TF Text ops): {type(tokenizer).__name__}"
           + (f", lowercase={getattr(tokenizer, 'lowercase', 'n/a')}, vocabulary size "
              f"{tokenizer.vocabulary_size()}" if tokenizer is not None else "") + ".",
           f"Packing: [CLS] tokens [SEP], truncated and padded to {model.sequence_length} tokens.",
           ("Long texts: the first window only." if model.eval_windows == 1 else
            f"Long texts: up to {model.eval_windows} windows of {model.sequence_length} tokens, logits averaged.")]
  return lines


def _describe_freeze(policy) -> str:
  if policy.kind == "all":
    return "backbone frozen, head trains"
  if policy.kind == "none":
    return "whole backbone and head train"
  return f"top {policy.k} blocks and head train, the rest frozen"


def _model_card(config: Config, data: RunData, *, metrics: Dict, parity: Dict, phases: Sequence[PhaseResult],
                backbone, contract: Sequence[str], signature: Dict) -> str:
  from tfft import training  # pylint: disable=g-import-not-at-top

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
  planned = {p.name: p for p in training.plan_phases(config.train)}
  for phase in phases:
    plan = planned.get(phase.name)
    freeze = _describe_freeze(plan.freeze) if plan else "?"
    best = "n/a" if phase.best is None else f"{phase.monitor}={phase.best:.4f}"
    lines.append(f"| {phase.name} | {freeze} | {phase.epochs_run} / {plan.epochs if plan else '?'} | "
                 f"{plan.learning_rate if plan else '?'} | {phase.trainable_params:,} / {phase.frozen_params:,} | "
                 f"{best} |")
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
  if "baseline" in metrics:
    lines += ["", f"Baseline: {metrics['baseline']['method']}, fitted on the same train split."]
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


def export_checked(export_fn: Callable, config: Config, data: RunData, *, model_dir: pathlib.Path,
                   probabilities: np.ndarray, metrics: Dict, phases: Sequence[PhaseResult], backbone,
                   contract: Sequence[str], write_metrics: bool = True) -> pathlib.Path:
  """Exports through `export_fn`, checking the complete export before it is published as a version.

  Before the rename that publishes it, the temporary export is loaded with TensorFlow alone and fed the raw test
  inputs through serving_default (check_parity); then the warmup requests (validation examples), model_card.md and
  tfft.json go into its assets.extra/. A failed check leaves no version behind.

  Args:
    export_fn: called as export_fn(finalize=..., metadata=...); writes the SavedModel, calls finalize(tmp_dir)
      before publishing, and returns the version dir (see serving.export_text_classifier).
    config: the run's config.
    data: the run's examples and split.
    model_dir: the run dir.
    probabilities: the in-process model's test probabilities.
    metrics: report_test's metrics.
    phases: the phases that ran.
    backbone: the resolved backbone spec (its `source` and `local` go into the model card).
    contract: the preprocessing contract, one sentence a line.
    write_metrics: add the parity result as "export_parity" to the run's metrics.json (train's own export).

  Returns:
    The published version dir.

  Raises:
    RunFailed: if the export disagrees with the in-process model.
  """
  test_values = served.as_bytes(data.task, data.take("test"))
  parity = {}

  def finalize(tmp: pathlib.Path):
    model = served.ServedModel(tmp)
    parity.update(check_parity(model.predict(test_values, batch_size=config.train.batch_size), probabilities,
                               data.labels[data.split["test"]], data.class_names))
    if config.report.warmup:
      serving_kit.write_warmup(tmp, served.as_bytes(data.task, data.take("val")), input_name=model.input_name,
                               model_name=config.run.name)
    (tmp / "assets.extra" / MODEL_CARD).write_text(_model_card(
        config, data, metrics=metrics, parity=parity, phases=phases, backbone=backbone, contract=contract,
        signature=model.signature))

  metadata = {"model_dir": str(model_dir.resolve()), "name": config.run.name, "dataset": config.data.dataset,
              "text_column": config.data.text_column, "label_column": config.data.label_column}
  path = export_fn(finalize=finalize, metadata=metadata)
  metrics["export_parity"] = parity
  if write_metrics:
    metrics_lib.write_json(model_dir / metrics_lib.METRICS_JSON, metrics)
  logging.info("export matches the trained model on %d test examples (max |dp| %.2g)", parity["examples"],
               parity["max_abs_diff"])
  return path


def summary_lines(metrics: Dict) -> List[str]:
  """The baseline and parity lines of train's summary."""
  lines = []
  if "baseline" in metrics:
    b, d = metrics["baseline"], metrics["baseline_difference"]
    lines.append(f"baseline: accuracy={b['accuracy']:.4f}  macro_f1={b['macro_f1']:.4f}  weighted_f1="
                 f"{b['weighted_f1']:.4f}  ({b['method']})")
    lines.append(f"model - baseline: accuracy={d['accuracy']:+.4f}  macro_f1={d['macro_f1']:+.4f}  "
                 f"weighted_f1={d['weighted_f1']:+.4f}")
  if "export_parity" in metrics:
    p = metrics["export_parity"]
    lines.append(f"parity:   serving_default matches on {p['examples']} test examples "
                 f"(max |dp| {p['max_abs_diff']:.1e} <= {p['tolerance']:g})")
  return lines
