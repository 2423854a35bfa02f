"""Publishing a trained model: score the test split, apply the quality gate, and export a version only after the
export itself has been loaded and checked against the model (parity), with its warmup requests and model card."""

import dataclasses
import pathlib
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from tfft import files
from tfft.config import Config
from tfft.errors import RunFailed
from tfft.files import write_atomically
from tfft.fit import recipe
from tfft.report import metrics as metrics_lib
from tfft.report import model_card as model_card_lib
from tfft.report import threshold as threshold_lib
from tfft.report import calibration, run_report
from tfft.rundir import PhaseResult, RunDir
from tfft.serving import loaded, tf_serving
from tfft.serving.parity import PARITY_ATOL
from tfft.tasks.api import Targets



def score_and_publish(task, model, prepared, *, config: Config, run_dir: RunDir, export_base: pathlib.Path,
                      phases: Sequence[PhaseResult], rescore: Optional[Dict] = None,
                      before_publish: Optional[Callable[[], None]] = None,
                      export_model=None, methods: Sequence[str] = (),
                      temperature: Optional[float] = None) -> Tuple[Dict, pathlib.Path]:
  """Scores the test split, writes the report, applies --min_metric, and publishes a parity-checked export.

  The one ending of both tfft.train and tfft.export (a re-export).

  Args:
    task: the run's task (tfft.tasks.api).
    model: the trained float32 model.
    prepared: what the task resolved from the run's data.
    config: the run's config.
    run_dir: the run directory.
    export_base: EXPORT_DIR/NAME, where the next version goes.
    phases: what each phase did, for the report and the model card.
    rescore: for a re-export, the run's metrics.json as training wrote it: its baseline is reused rather than
      fitted again, and the run's report is left as it is.
    before_publish: called once the export is complete and checked, just before it is published; it may raise
      (e.g. Preempted) to publish nothing.
    export_model: what to export when it is not `model` itself (a LoRA model's merged copy); the parity check
      compares it with `model`.
    methods: the fine-tuning methods in use, one line each, for metrics.json, the summary and the model card.
    temperature: --calibrate=temperature's T, fitted on the validation logits: the test is scored and the
      export serves softmax(logits / T); the report gets ECE before and after it and a reliability diagram.

  Returns:
    (metrics, the published version dir).

  Raises:
    RunFailed: if the gate is unmet or the export disagrees with the model; nothing is published.
  """
  target = task.target
  if target.tunes_on_validation:  # e.g. decision thresholds, chosen on val and baked into the export
    val = prepared.split["val"]
    prepared = dataclasses.replace(prepared, targets=target.tune(
        prepared.targets, np.asarray(task.predict_logits(model, prepared, val)), prepared.labels[val]))
  logits = np.asarray(task.predict_logits(model, prepared, prepared.split["test"]))
  calibrated = None
  if temperature is not None:
    calibrated = {"method": "temperature", "temperature": temperature, **calibration.report(
        logits, prepared.targets.values[prepared.split["test"]], temperature, run_dir.path)}
    logits = logits / np.float32(temperature)
    export_model = calibration.with_temperature(export_model or model, temperature)
  served = target.served(logits, prepared.targets)
  chosen = None
  if config.report.threshold != "argmax":  # a kind-only option: only the classification kinds have it
    prepared, chosen = _choose_threshold(task, model, prepared, config=config, temperature=temperature,
                                         test_probabilities=served)
  data = task.run_data(prepared)
  metrics = run_report.report_test(run_dir, config, data, served, phases=phases, rescore=rescore, target=target)
  if chosen:
    metrics["threshold"] = chosen
  if methods:
    metrics["methods"] = list(methods)
  if calibrated:
    metrics["calibration"] = calibrated
  check_gate(metrics, config.report.min_metric, model_dir=run_dir.path)
  path = export_checked(
      lambda finalize, metadata: task.export(export_model or model, prepared, export_base=export_base, finalize=finalize,
                                             metadata=metadata),
      config, data, model_dir=run_dir.path, probabilities=served, metrics=metrics, phases=phases,
      backbone=task.spec, contract=task.contract(), before_publish=before_publish, target=target)
  if rescore is None:
    files.write_json(run_dir.metrics, metrics)
  return metrics, path


def _choose_threshold(task, model, prepared, *, config: Config, temperature: Optional[float],
                      test_probabilities: np.ndarray):
  """--threshold: chosen on the validation split's (calibrated) probabilities; the test scored at it.

  Returns:
    (prepared with the threshold in its Targets.info, where the export's outputs read it; metrics.json's
    "threshold": the rule, the value, the positive class, validation and test scores at it).
  """
  import dataclasses  # pylint: disable=g-import-not-at-top
  r, names = config.report, list(prepared.targets.names)
  positive = threshold_lib.positive_index(names, r.positive_class)
  val = prepared.split["val"]
  val_logits = np.asarray(task.predict_logits(model, prepared, val))
  if temperature is not None:
    val_logits = val_logits / np.float32(temperature)
  val_probabilities = task.target.served(val_logits, prepared.targets)
  chosen = threshold_lib.choose(val_probabilities[:, positive], prepared.labels[val] == positive, r.threshold)
  if chosen.get("reached") is False:
    logging.warning("--threshold=%s: no threshold reaches that precision on the %d validation examples; using the "
                    "one of highest precision (%.3f) at %.4g", r.threshold, len(val), chosen["precision"],
                    chosen["threshold"])
  test = prepared.split["test"]
  y_test = prepared.labels[test]
  predicted = threshold_lib.decide(test_probabilities, chosen["threshold"], positive)
  scores = metrics_lib.classification_metrics(y_test, test_probabilities, names, predicted=predicted)
  result = {**chosen, "positive": positive, "positive_class": names[positive],
            "validation": {k: chosen[k] for k in ("precision", "recall", "f1")},
            "test": {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
                     **threshold_lib.at(test_probabilities[:, positive], y_test == positive, chosen["threshold"]),
                     "confusion_matrix": scores["confusion_matrix"]}}
  for key in ("precision", "recall", "f1"):
    del result[key]
  logging.info("--threshold=%s: %s", r.threshold, threshold_lib.describe(chosen | {"positive": positive}, names))
  info = {**prepared.targets.info, "threshold": chosen["threshold"], "positive": positive,
          "threshold_rule": r.threshold}
  return dataclasses.replace(prepared, targets=dataclasses.replace(prepared.targets, info=info)), result


def check_gate(metrics: Dict, gates, *, model_dir: pathlib.Path):
  """Raises RunFailed, before anything is exported, if a --min_metric gate is unmet."""
  unmet = [f"{name}={metrics[name]:.4f} < {threshold:g}" for name, threshold in gates
           if metrics.get(name) is None or metrics[name] < threshold]
  if unmet:
    raise RunFailed(f"quality gate unmet on the test split: {', '.join(unmet)} (--min_metric); no export written; "
                    f"the checkpoints and report stay in {model_dir}")


def export_checked(export_fn: Callable, config: Config, data: run_report.RunData, *, model_dir: pathlib.Path,
                   probabilities: np.ndarray, metrics: Dict, phases: Sequence[PhaseResult], backbone,
                   contract: Sequence[str], before_publish: Optional[Callable[[], None]] = None,
                   target) -> pathlib.Path:
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
    probabilities: the in-process model's test outputs that the parity check compares: the target's `served`
      (classification: the probabilities).
    metrics: report_test's metrics.
    phases: the phases that ran.
    backbone: the resolved backbone spec (its `source` and `local` go into the model card).
    contract: the preprocessing contract, one sentence a line.
    before_publish: called on the complete, checked export just before the rename; raising aborts it.
    target: the run's target (tfft.tasks.api.Target).

  Returns:
    The published version dir.

  Raises:
    RunFailed: if the export disagrees with the in-process model.
  """
  parity = {}
  if data.targets is None:  # the labels as classification encodes them, for the model card
    data = dataclasses.replace(data, targets=Targets(tuple(data.class_names), data.labels, ()))

  def finalize(tmp: pathlib.Path):
    model = loaded.ExportedModel(tmp, target)
    parity.update(target.check_parity(model, data, probabilities, batch_size=config.train.batch_size,
                                      atol=PARITY_ATOL))
    if config.report.warmup:
      tf_serving.write_warmup(tmp, loaded.as_bytes(data.task, data.take("val")), input_name=model.input_name,
                              model_name=config.run.name, input_names=model.input_names)
    write_atomically(tmp / "assets.extra" / model_card_lib.MODEL_CARD, model_card_lib.model_card(
        config, data, metrics=metrics, parity=parity, phases=phases, backbone=backbone, contract=contract,
        signature=model.signature, target=target, planned=recipe.plan_phases(config.train)))
    if before_publish:
      before_publish()

  metadata = {"model_dir": str(model_dir.resolve()), "name": config.run.name, "dataset": config.data.dataset,
              "text_column": config.data.text_column, "label_column": config.data.label_column}
  if target.writes_target_key:  # classification exports keep the keys they always had
    metadata.update(target=config.data.task, pair_columns=list(config.data.pair_columns))
    if data.targets is not None:  # what the target learnt from the data (multi-label: its thresholds)
      metadata.update(data.targets.info)
  elif data.targets is not None and "threshold" in data.targets.info:  # --threshold: two-class decisions
    metadata.update({k: data.targets.info[k] for k in ("threshold", "positive", "threshold_rule")})
  path = export_fn(finalize=finalize, metadata=metadata)
  metrics["export_parity"] = parity
  logging.info("export matches the trained model on %d test examples (max |d %s| %.2g)", parity["examples"],
               target.parity_output, parity["max_abs_diff"])
  return path
