"""The train job, for text and images alike: load and split data, build the model, run the phases, score, export."""

import dataclasses
import functools
import hashlib
import os
import pathlib
import shutil
import tempfile
import time
from typing import Dict, List

import numpy as np
from absl import logging

from tfft import tasks
from tfft.config import Config, RunConfig, check_min_metric
from tfft.data import split as split_lib
from tfft.data import text as text_data
from tfft.errors import UserError
from tfft.state import PhaseResult, RunState
from tfft.testhooks import pause_point

FLAGFILE = "flags.cfg"


@dataclasses.dataclass
class RunResult:
  """What a finished run reports: split sizes, per-phase parameter counts, test metrics and the export."""
  model_dir: str
  split_sizes: Dict[str, int]
  phases: List[PhaseResult]
  metrics: Dict
  export_path: str
  skipped_files: int = 0


# Flags that fix the split, the model or the data order: an interrupted run resumes only with the same values.
RESUME_FLAGS = ("dataset", "text_column", "label_column", "image_column", "classes", "val_fraction", "test_fraction",
                "examples_per_class", "train_examples_per_class", "seed", "backbone", "sequence_length", "pooling",
                "train_windows", "head_units", "image_size", "freeze", "batch_size", "cache_features", "padding")
RUN_FILES = (FLAGFILE, "run_state.json")


def _flag_values(flagfile: str) -> Dict[str, str]:
  lines = (line.strip() for line in flagfile.splitlines())
  return dict(line[2:].split("=", 1) for line in lines if line.startswith("--") and "=" in line)


def check_model_dir(run: RunConfig, *, flagfile: str = "") -> pathlib.Path:
  """Checks the run directory without touching it, so a bad run leaves nothing behind.

  Raises:
    UserError: if the path is a file; holds a finished run without --overwrite; holds files that are not a tfft
      run; or holds an interrupted run whose split, model or data order flags differ from these.
  """
  path = pathlib.Path(run.model_dir).expanduser()
  if path.exists() and not path.is_dir():
    raise UserError(f"--model_dir={run.model_dir} is a file; name a directory")
  if not path.is_dir():
    return path
  is_run = any((path / name).exists() for name in RUN_FILES)
  if not is_run and any(path.iterdir()):
    raise UserError(f"--model_dir={run.model_dir} holds files that are not a tfft run; choose a new or empty "
                    "directory, so that nothing there is overwritten")
  if RunState(path).finished and not run.overwrite:
    raise UserError(f"--model_dir={run.model_dir} holds a finished run; pass --overwrite to start afresh or "
                    "choose another --model_dir")
  if is_run and not run.overwrite and (path / FLAGFILE).is_file() and flagfile:
    before, now = _flag_values((path / FLAGFILE).read_text()), _flag_values(flagfile)
    for name in RESUME_FLAGS:
      if name in before and name in now and before[name] != now[name]:
        raise UserError(f"--model_dir={run.model_dir} holds an interrupted run started with --{name}={before[name]} "
                        f"(now {now[name]}); re-run with --flagfile={path / FLAGFILE} to resume it, or pass "
                        "--overwrite to start afresh, or choose another --model_dir")
  return path


def create_model_dir(path: pathlib.Path, run: RunConfig) -> pathlib.Path:
  """Creates the run directory, clearing an earlier run first when --overwrite asks for it.

  Raises:
    UserError: if it cannot be created or written.
  """
  if run.overwrite and path.is_dir() and any((path / name).exists() for name in RUN_FILES):
    shutil.rmtree(path)  # only a tfft run dir (check_model_dir refuses others), finished or interrupted
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"--model_dir={run.model_dir}: cannot create it ({e.strerror}); choose a writable path") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise UserError(f"--model_dir={run.model_dir} is not writable; choose a writable path")
  return path


def check_export_base(run: RunConfig) -> pathlib.Path:
  """EXPORT_DIR/NAME, checked before anything runs: a file in the way would otherwise fail after training.

  Raises:
    UserError: if --export_dir or EXPORT_DIR/NAME is a file.
  """
  base = pathlib.Path(run.export_dir).expanduser()
  for path, flag in ((base, f"--export_dir={run.export_dir}"), (base / run.name, f"--export_dir/--name {base / run.name}")):
    if path.exists() and not path.is_dir():
      raise UserError(f"{flag} is a file; name a directory for the exports")
  return base / run.name


def _warn_duplicates(examples, split, dataset: str):
  """Warns when the same text, or the same image file content, is in more than one split."""
  texts = getattr(examples, "texts", None)
  if texts is not None:
    keys = [" ".join(t.split()).lower() for t in texts]
  elif getattr(examples, "paths", None) is not None:
    keys = []
    for path in examples.paths:
      try:
        keys.append(hashlib.sha1(pathlib.Path(path).read_bytes()).hexdigest())
      except OSError:
        keys.append(path)
  else:
    keys = [hashlib.sha1(np.ascontiguousarray(p).tobytes()).hexdigest() for p in examples.pixels]
  groups = split_lib.cross_split_duplicates(keys, split)
  if groups:
    ids = [examples.ids[i] for i in groups[0]]
    logging.warning("--dataset=%s: %d example(s) have a duplicate in another split (e.g. %s), so test scores read "
                    "optimistic; remove the duplicates from the data", dataset, sum(len(g) for g in groups),
                    ", ".join(ids))


def _persist_labels(model_dir: pathlib.Path, class_names: List[str]):
  path = model_dir / split_lib.LABELS
  if path.exists() and split_lib.read_labels(path) != class_names:
    raise UserError(f"--model_dir={model_dir} was started with other classes ({path}); use a new --model_dir "
                    "or --overwrite")
  split_lib.write_labels(path, class_names)


def run(config: Config, *, flagfile: str, _strategy=None, _scratch: bool = False) -> RunResult:
  """Runs the whole train job for a validated config, text or images (see tfft.tasks for what differs).

  Args:
    config: the validated run configuration.
    flagfile: the resolved flags, written to MODEL_DIR/flags.cfg so that the run can be repeated.

  Returns:
    The run's summary.

  Raises:
    UserError: for bad data, backbone, weights or output paths.
  """
  model_dir = check_model_dir(config.run, flagfile=flagfile)
  export_base = check_export_base(config.run)
  strategy = _strategy
  if strategy is None and config.train.strategy in ("multi_worker_mirrored", "tpu"):
    from tfft import distribute  # pylint: disable=g-import-not-at-top
    # Before any TensorFlow op runs (loading a tokenizer runs some): collectives are configured at startup.
    strategy = distribute.build_strategy(config.train.strategy, tpu=config.train.tpu,
                                         worker_hosts=config.train.worker_hosts, task_index=config.train.task_index)
  task = tasks.build_task(config)
  examples = task.load_examples()
  class_names = text_data.sorted_class_names(examples.labels)
  check_min_metric(config.report.min_metric, len(class_names))
  labels = np.array([class_names.index(label) for label in examples.labels])
  split = split_lib.stratified_split(examples.labels, val_fraction=config.data.val_fraction,
                                     test_fraction=config.data.test_fraction, seed=config.train.seed)
  if config.data.train_examples_per_class:
    split["train"] = split_lib.few_shot(split["train"], examples.labels, config.data.train_examples_per_class,
                                        seed=config.train.seed)

  _warn_duplicates(examples, split, config.data.dataset)
  sizes = {name: int(len(split[name])) for name in split_lib.SPLITS}
  logging.info("%d examples of %d classes from %s; split %s", len(examples), len(class_names), examples.source, sizes)

  # Heavy imports only once the config, data and paths are known to be good.
  import keras  # pylint: disable=g-import-not-at-top
  from tfft import caching, distribute, modeling, reporting, training  # pylint: disable=g-import-not-at-top
  from tfft.data import tensors  # pylint: disable=g-import-not-at-top

  keras.utils.set_random_seed(config.train.seed)
  strategy = strategy or distribute.build_strategy(config.train.strategy, tpu=config.train.tpu)
  if not distribute.is_chief(strategy) and not _scratch:
    # Every worker runs every step (checkpoint saves and exports included, which may need collectives), but only
    # the chief writes to the real paths; the others write to a temporary dir that is removed at the end.
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="tfft-worker-"))
    try:
      return run(dataclasses.replace(config, run=dataclasses.replace(
          config.run, model_dir=str(scratch / "run"), export_dir=str(scratch / "exports"), overwrite=False)),
          flagfile=flagfile, _strategy=strategy, _scratch=True)
    finally:
      shutil.rmtree(scratch, ignore_errors=True)
  model = task.build_model(len(class_names), strategy)  # under strategy.scope()
  backbone, blocks = task.backbone, task.blocks
  phases = training.plan_phases(config.train)
  for phase in phases:  # a bad --freeze fails now, not after phase 1
    modeling.apply_freeze(model, backbone, phase.freeze, blocks=blocks)

  # Every check a user can fail has run: only now does the run write anything.
  create_model_dir(model_dir, config.run)
  (model_dir / (FLAGFILE + ".tmp")).write_text(flagfile)
  (model_dir / (FLAGFILE + ".tmp")).replace(model_dir / FLAGFILE)
  _persist_labels(model_dir, class_names)
  split_lib.write_manifest(model_dir / split_lib.MANIFEST, examples.ids, examples.labels, split)

  batch = config.train.batch_size
  make = task.dataset_fn(examples, labels, split)
  # What training and validation batch: the examples, or (--train_windows) their windows.
  unit_labels, unit_split = task.training_units(labels, split)
  units = {name: len(indices) for name, indices in unit_split.items()}
  # After dataset_fn, which resolves --padding=auto for text.
  padding = {"padding": task.config.train.padding, "pad_to_multiple_of": config.train.pad_to_multiple_of}
  # Epoch e is shuffled with seed + e, so a resumed phase sees the order an uninterrupted one would.
  train_ds = lambda first, stop: make("train", shuffle=True, seed=config.train.seed, epochs=(first, stop))
  val_ds = make("val")
  steps_per_epoch = task.num_batches(unit_split["train"])

  state = RunState(model_dir)
  top_k = task.cache_top_k()
  cache = None
  if config.train.cache_features and top_k is not False:
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
    steps = steps_per_epoch
    plan = cache.plan(phase) if cache else None
    if plan:
      fit_model, inputs = plan
      cached = lambda name, **kw: tensors.make_dataset(
          inputs(name), unit_labels[unit_split[name]], np.arange(units[name]), num_classes=len(class_names),
          batch_size=batch, **{**padding, **kw})
      datasets = {"train_ds": lambda first, stop: cached("train", shuffle=True, seed=config.train.seed,
                                                         epochs=(first, stop)),
                  "val_ds": cached("val"), "fit_model": fit_model}
      steps = tensors.num_batches(inputs("train"), np.arange(units["train"]), batch_size=batch, **padding)
    result = training.run_phase(model, backbone, phase, steps_per_epoch=steps,
                                examples_per_epoch=units["train"], train=config.train,
                                model_dir=model_dir, strategy=strategy, blocks=blocks, **datasets)
    result.seconds = time.perf_counter() - start
    pause_point(f"phase_fitted:{phase.name}")
    training.save_weights_atomically(model, after)
    state.mark_phase(result)
    shutil.rmtree(model_dir / "backup" / phase.name, ignore_errors=True)  # the phase is done; its backup is not needed
    results.append(result)
  del cache
  task.save_artifacts(model, model_dir)

  if config.train.mixed_precision != "float32":  # score and export the float32 model TF Serving will run
    model = task.float32_model(model, strategy)
  pause_point("evaluate")
  logits = task.predict_logits(model, examples, split["test"], make)
  probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
  # Report (with the baseline) and quality gate, then an export checked for parity before it is published.
  data = task.run_data(examples, labels, split, class_names)
  metrics = reporting.report_test(model_dir, config, data, probabilities, phases=results)
  reporting.check_gate(metrics, config.report.min_metric, model_dir=model_dir)
  export_path = reporting.export_checked(
      functools.partial(task.export, model, class_names,
                        export_base=export_base),
      config, data, model_dir=model_dir, probabilities=probabilities, metrics=metrics, phases=results,
      backbone=task.spec, contract=task.contract())
  state.mark_finished(str(export_path))
  return RunResult(str(model_dir), sizes, results, metrics, str(export_path),
                   skipped_files=getattr(examples, "skipped", 0))


def format_summary(result: RunResult) -> str:
  """The final summary the CLI prints: split sizes, parameters per phase, test scores and the export path."""
  lines = ["", "tfft summary", "============",
           "data:     " + "  ".join(f"{k}={v}" for k, v in result.split_sizes.items())]
  if result.skipped_files:
    lines.append(f"skipped:  {result.skipped_files} file(s) that do not decode as images (paths in the log)")
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
