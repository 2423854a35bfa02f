"""The train job: load and split data, tokenize once, build the model, run the phases, score, export."""

import dataclasses
import functools
import os
import pathlib
import shutil
import time
from typing import Dict, List

import numpy as np
from absl import logging

from tfft.backbones import text as text_backbones
from tfft.config import Config, RunConfig, check_min_metric
from tfft.data import split as split_lib
from tfft.data import text as text_data
from tfft.errors import UserError
from tfft.state import PhaseResult, RunState

FLAGFILE = "flags.cfg"


@dataclasses.dataclass
class RunResult:
  """What a finished run reports: split sizes, per-phase parameter counts, test metrics and the export."""
  model_dir: str
  split_sizes: Dict[str, int]
  phases: List[PhaseResult]
  metrics: Dict
  export_path: str


def check_model_dir(run: RunConfig) -> pathlib.Path:
  """Checks the run directory without touching it, so a bad run leaves nothing behind.

  Raises:
    UserError: if the path is a file, or holds a finished run without --overwrite.
  """
  path = pathlib.Path(run.model_dir).expanduser()
  if path.exists() and not path.is_dir():
    raise UserError(f"--model_dir={run.model_dir} is a file; name a directory")
  if path.is_dir() and RunState(path).finished and not run.overwrite:
    raise UserError(f"--model_dir={run.model_dir} holds a finished run; pass --overwrite to start afresh or "
                    "choose another --model_dir")
  return path


def create_model_dir(path: pathlib.Path, run: RunConfig) -> pathlib.Path:
  """Creates the run directory, clearing a finished run first when --overwrite asks for it.

  Raises:
    UserError: if it cannot be created or written.
  """
  if run.overwrite and path.is_dir() and RunState(path).finished:
    shutil.rmtree(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"--model_dir={run.model_dir}: cannot create it ({e.strerror}); choose a writable path") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise UserError(f"--model_dir={run.model_dir} is not writable; choose a writable path")
  return path


def _persist_labels(model_dir: pathlib.Path, class_names: List[str]):
  path = model_dir / split_lib.LABELS
  if path.exists() and split_lib.read_labels(path) != class_names:
    raise UserError(f"--model_dir={model_dir} was started with other classes ({path}); use a new --model_dir "
                    "or --overwrite")
  split_lib.write_labels(path, class_names)


def build_model(config: Config, spec, *, pooling: str, num_classes: int, strategy, precision: str = "float32"):
  """Builds the untrained classifier a config describes, under `strategy` (train and tfft.export share this).

  Returns:
    (model, backbone, preprocessor).

  Raises:
    UserError: if the backbone cannot be loaded or --sequence_length exceeds it.
  """
  import keras  # pylint: disable=g-import-not-at-top

  keras.mixed_precision.set_global_policy(precision)
  preprocessor = text_backbones.load_preprocessor(spec, config.model.sequence_length)
  with strategy.scope():
    backbone = text_backbones.load_backbone(spec, dtype=None if precision == "float32" else precision)
    text_backbones.check_sequence_length(backbone, spec, config.model.sequence_length)
    model = head_builder(config, pooling=pooling, num_classes=num_classes)(backbone)
  return model, backbone, preprocessor


def trim_multiple(config: Config):
  """How scoring and serving cut a batch of windows: to a multiple of this many tokens, or not at all (None)."""
  return None if config.train.padding == "fixed" else config.train.pad_to_multiple_of


def head_builder(config: Config, *, pooling: str, num_classes: int):
  """The function that puts the configured head on a backbone (also used to rebuild a float32 copy)."""
  from tfft import modeling  # pylint: disable=g-import-not-at-top

  return functools.partial(modeling.build_text_classifier, num_classes=num_classes, pooling=pooling,
                           head_units=config.model.head_units, dropout=config.model.dropout, l1=config.model.l1,
                           l2=config.model.l2)


def run(config: Config, *, flagfile: str) -> RunResult:
  """Runs the whole train job for a validated config.

  Args:
    config: the validated run configuration.
    flagfile: the resolved flags, written to MODEL_DIR/flags.cfg so that the run can be repeated.

  Returns:
    The run's summary.

  Raises:
    UserError: for bad data, backbone or output paths.
  """
  model_dir = check_model_dir(config.run)
  examples = text_data.load_examples(config.data)
  class_names = text_data.sorted_class_names(examples.labels)
  check_min_metric(config.report.min_metric, len(class_names))
  labels = np.array([class_names.index(label) for label in examples.labels])
  split = split_lib.stratified_split(examples.labels, val_fraction=config.data.val_fraction,
                                     test_fraction=config.data.test_fraction, seed=config.train.seed)
  spec = text_backbones.resolve(config.model.backbone)
  pooling = spec.default_pooling if config.model.pooling == "auto" else config.model.pooling

  sizes = {name: int(len(split[name])) for name in split_lib.SPLITS}
  logging.info("%d examples of %d classes from %s; split %s", len(examples), len(class_names), examples.source, sizes)

  # Heavy imports only once the config, data and paths are known to be good.
  import keras  # pylint: disable=g-import-not-at-top
  from tfft import caching, distribute, modeling, reporting, serving, training, windows  # pylint: disable=g-import-not-at-top
  from tfft.data import tensors  # pylint: disable=g-import-not-at-top

  keras.utils.set_random_seed(config.train.seed)
  strategy = distribute.build_strategy(config.train.strategy, tpu=config.train.tpu)
  precision = config.train.mixed_precision
  model, backbone, preprocessor = build_model(config, spec, pooling=pooling, num_classes=len(class_names),
                                              strategy=strategy, precision=precision)
  blocks = text_backbones.transformer_blocks(backbone)
  phases = training.plan_phases(config.train)
  for phase in phases:  # a bad --freeze fails now, not after phase 1
    modeling.apply_freeze(model, backbone, phase.freeze, blocks=blocks)
  logging.info("backbone %s (%s pooling), sequence length %d", spec.flag_value, pooling,
               config.model.sequence_length)

  # Every check a user can fail has run: only now does the run write anything.
  create_model_dir(model_dir, config.run)
  (model_dir / FLAGFILE).write_text(flagfile)
  _persist_labels(model_dir, class_names)
  split_lib.write_manifest(model_dir / split_lib.MANIFEST, examples.ids, examples.labels, split)

  features = tensors.tokenize(preprocessor, examples.texts)
  batch = config.train.batch_size
  padding = {"padding": config.train.padding, "pad_to_multiple_of": config.train.pad_to_multiple_of}
  trim = trim_multiple(config)
  make = lambda name, **kw: tensors.make_dataset(features, labels, split[name], num_classes=len(class_names),
                                                 batch_size=batch, **{**padding, **kw})
  train_ds = make("train", shuffle=True, seed=config.train.seed)
  val_ds = make("val")
  steps_per_epoch = tensors.num_batches(features, split["train"], batch_size=batch, **padding)

  state = RunState(model_dir)
  top_k = config.train.freeze.k if config.train.freeze.kind == "top_k" else None
  cache = None
  if config.train.cache_features:
    cache = caching.FeatureCache(model, backbone, blocks, make, strategy=strategy, top_k=top_k)
  results = []
  for phase in phases:
    after = model_dir / "checkpoints" / f"after_{phase.name}.weights.h5"
    done = state.phase_result(phase.name)
    if done and after.exists():
      logging.info("phase %s finished in an earlier run; loading its weights", phase.name)
      model.load_weights(str(after))
      results.append(done)
      continue
    start = time.perf_counter()
    datasets = {"train_ds": train_ds, "val_ds": val_ds}
    plan = cache.plan(phase) if cache else None
    if plan:
      fit_model, inputs = plan
      cached = lambda name, **kw: tensors.make_dataset(
          inputs(name), labels[split[name]], np.arange(sizes[name]), num_classes=len(class_names),
          batch_size=batch, **{**padding, **kw})
      datasets = {"train_ds": cached("train", shuffle=True, seed=config.train.seed), "val_ds": cached("val"),
                  "fit_model": fit_model}
    result = training.run_phase(model, backbone, phase, steps_per_epoch=steps_per_epoch,
                                examples_per_epoch=sizes["train"], train=config.train,
                                model_dir=model_dir, strategy=strategy, blocks=blocks, **datasets)
    result.seconds = time.perf_counter() - start
    model.save_weights(str(after))
    state.mark_phase(result)
    results.append(result)
  del cache

  if precision != "float32":  # score and export the float32 model that TF Serving will run
    model = modeling.float32_copy(model, backbone, head_builder(config, pooling=pooling, num_classes=len(class_names)),
                                  strategy=strategy)
  logits = windows.predict_logits(model, preprocessor, [examples.texts[i] for i in split["test"]],
                                  config.model.eval_windows, batch_size=batch, pad_to_multiple_of=trim)
  probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
  # Report (with the baseline) and quality gate, then an export checked for parity before it is published.
  data = reporting.RunData("text", examples.texts, examples.ids, labels, split, class_names)
  metrics = reporting.report_test(model_dir, config, data, probabilities, phases=results)
  reporting.check_gate(metrics, config.report.min_metric, model_dir=model_dir)
  export_path = reporting.export_checked(
      functools.partial(serving.export_text_classifier, model, preprocessor, class_names,
                        export_base=pathlib.Path(config.run.export_dir).expanduser() / config.run.name,
                        eval_windows=config.model.eval_windows, pad_to_multiple_of=trim),
      config, data, model_dir=model_dir, probabilities=probabilities, metrics=metrics, phases=results,
      backbone=spec, contract=reporting.text_contract(preprocessor, config.model))
  state.mark_finished(str(export_path))
  return RunResult(str(model_dir), sizes, results, metrics, str(export_path))


def format_summary(result: RunResult) -> str:
  """The final summary the CLI prints: split sizes, parameters per phase, test scores and the export path."""
  lines = ["", "tfft summary", "============",
           "data:     " + "  ".join(f"{k}={v}" for k, v in result.split_sizes.items())]
  for phase in result.phases:
    best = "n/a" if phase.best is None else f"{phase.best:.4f}"
    lines.append(f"phase {phase.name:<9} trainable={phase.trainable_params:,}  frozen={phase.frozen_params:,}  "
                 f"epochs={phase.epochs_run}  best {phase.monitor}={best}  {phase.seconds:.0f}s")
  from tfft import reporting  # pylint: disable=g-import-not-at-top

  m = result.metrics
  lines += [f"test:     accuracy={m['accuracy']:.4f}  macro_f1={m['macro_f1']:.4f}  weighted_f1={m['weighted_f1']:.4f}",
            *reporting.summary_lines(m),
            f"run dir:  {result.model_dir}",
            f"export:   {result.export_path}"]
  return "\n".join(lines)
