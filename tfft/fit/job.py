"""The train job, for every task: check the outputs, load and split the data, build the model, run the phases, then
score, gate and publish the export (tfft.fit.publish)."""

import contextlib
import dataclasses
import json
import pathlib
import shutil
import tempfile
import time
from typing import Dict, Iterator, List, Tuple

import numpy as np
from absl import logging

from tfft import config as config_lib
from tfft import files, rundir
from tfft.config import Config
from tfft.data import text_batches
from tfft.errors import RunFailed
from tfft.fit import phases as phases_lib
from tfft.fit import callbacks, distribute, feature_cache, publish, recipe, setup
from tfft.fit.callbacks import StopRequest
from tfft.model import weights as weights_io
from tfft.model import lora
from tfft.report import calibration
from tfft.rundir import PhaseResult, RunDir
from tfft.tasks import registry as tasks
from tfft.testhooks import pause_point


@dataclasses.dataclass
class RunResult:
  """What a finished run reports: split sizes, per-phase parameter counts, test metrics and the export."""
  model_dir: str
  split_sizes: Dict[str, int]
  phases: List[PhaseResult]
  metrics: Dict
  export_path: str
  skipped_files: int = 0
  split_info: Dict = dataclasses.field(default_factory=dict)  # tfft.data.split.Split.info
  task: str = tasks.DEFAULT_KIND  # --task: which target's summary lines the train summary prints
  methods: List[str] = dataclasses.field(default_factory=list)  # the fine-tuning methods in use, one line each


@contextlib.contextmanager
def _outputs(config: Config, strategy) -> Iterator[Tuple[RunDir, pathlib.Path]]:
  """The run dir and export base this worker writes to.

  Every worker of a multi-worker job runs every step (checkpoint saves and the export included, which may need
  collectives), but only the chief writes the real run dir and export. Each other worker keeps its own run dir
  beside the chief's, MODEL_DIR.worker-N, with its own epoch backups, so that a restarted job resumes on every
  worker from the same committed epoch; it is removed when the run finishes. Its exports go to a temporary
  directory, removed at the end.
  """
  if distribute.is_chief(strategy):
    yield RunDir(config.run.model_dir), rundir.check_export_base(config.run)
    return
  worker_dir = RunDir(f"{pathlib.Path(config.run.model_dir).expanduser()}.worker-{distribute.worker_index(strategy)}")
  scratch = pathlib.Path(tempfile.mkdtemp(prefix="tfft-worker-"))
  try:
    yield worker_dir, scratch / "exports" / config.run.name
    shutil.rmtree(worker_dir.path, ignore_errors=True)  # finished: nothing left to resume
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def train(config, *, strategy=None):
  """Runs the whole train job for `config` (a tfft.Config): split, phases, report, gate and a checked export.

  Args:
    config: the run's configuration; it is validated first.
    strategy: a tf.distribute strategy to train under; default the one `config.train.strategy` names.

  Returns:
    A tfft.RunResult: split sizes, what each phase did, the test metrics (with the baseline) and the export path.

  Raises:
    UserError: for a bad value, path, file or label (the message names it and the fix).
    RunFailed: when the loss diverges, the quality gate is unmet or the export disagrees with the model.
  """
  return run(tasks.validate(config), strategy=strategy)


def run(config: Config, *, strategy=None, score_test: bool = True) -> RunResult:
  """Runs the whole train job for a validated config (see tfft.tasks for what differs between tasks).

  Args:
    config: the validated run configuration.
    strategy: the tf.distribute strategy to train under; None builds the one --strategy names. It is built right
      after the output paths are checked, before TensorFlow runs any op, as MultiWorkerMirroredStrategy needs.
    score_test: False stops once training is committed, before anything reads the test split: no calibration,
      scoring or export, and the run stays unfinished (tfft.search's trials, judged on validation). The same
      call with True on the same run dir later resumes it to scoring and publishing.

  Returns:
    The run's summary.

  Raises:
    UserError: for bad data, backbone, weights or output paths; nothing is written before these checks pass.
    RunFailed: when the loss diverges, the quality gate is unmet or the export disagrees with the model.
    Preempted: after SIGTERM or Ctrl-C, at the next safe point: an epoch's or a phase's end once it is committed,
      before scoring, or before the export is published.
  """
  rundir.check_model_dir(config)
  rundir.check_export_base(config.run)
  with StopRequest().installed() as stop:
    if strategy is None:
      t = config.train
      strategy = distribute.build_strategy(t.strategy, tpu=t.tpu, worker_hosts=t.worker_hosts,
                                           task_index=t.task_index)
    with _outputs(config, strategy) as (run_dir, export_base):
      return _train(config, strategy, run_dir, export_base, stop, score_test=score_test)


def _train(config: Config, strategy, run_dir: RunDir, export_base: pathlib.Path, stop, *,
           score_test: bool = True) -> RunResult:
  inputs = setup.load_inputs(config)
  model = setup.build_model(config, inputs, strategy)
  # Every check a user can fail has run: only now does the run write anything.
  rundir.create_model_dir(run_dir, config.run)
  with rundir.lock(run_dir):
    return _fit_and_publish(config, strategy, run_dir, export_base, stop, task=inputs.task, examples=inputs.examples,
                            targets=inputs.targets, planned_split=inputs.split, built=model.built,
                            phases=model.phases, class_weight=model.class_weight, score_test=score_test,
                            methods=recipe.method_lines(config.train, lora_targets=model.lora_targets,
                                                        class_weight=model.class_weight,
                                                        class_names=inputs.targets.names))


def _fit_and_publish(config: Config, strategy, run_dir: RunDir, export_base: pathlib.Path, stop, *, task, examples,
                     targets, planned_split, built, phases, methods, class_weight,
                     score_test: bool = True) -> RunResult:
  """The part of the job that writes into the run dir, under its lock."""

  split = planned_split.indices
  files.write_atomically(run_dir.flagfile, config_lib.to_flagfile(config))
  rundir.write_labels_once(run_dir, list(targets.names))
  rundir.write_manifest(run_dir.manifest, examples.ids, examples.labels, split, planned_split.duplicate_of)

  prepared = task.prepare(examples, targets, split)
  results = _run_phases(task, built, prepared, phases, config=config, run_dir=run_dir, strategy=strategy, stop=stop,
                        class_weight=class_weight)
  task.save_artifacts(built, run_dir)
  if not score_test:
    return RunResult(str(run_dir.path), prepared.split_sizes, results, {}, "", task=config.data.task,
                     methods=list(methods))

  model = export_model = built.model
  if config.train.lora_rank:
    # TF Serving has no adapters: the export is a plain float32 model with them merged into the base kernels
    # (Keras saves a LoRA layer's kernel merged), scored as trained and checked against it for parity.
    lora.save_adapter(built.backbone, run_dir.path / lora.ADAPTER_FILE)
    copy = task.build_model(targets.width, strategy, precision="float32", weights="none")
    weights_io.load_weights(copy.model, run_dir.after(phases[-1].name))
    export_model = copy.model
    if config.train.mixed_precision != "float32":
      model = export_model
  elif config.train.mixed_precision != "float32":  # score and export the float32 model TF Serving will run
    copy = task.build_model(targets.width, strategy, precision="float32", weights="none")
    copy.model.set_weights(model.get_weights())  # mixed-precision variables are float32 already
    model = export_model = copy.model
  temperature = None
  if config.report.calibrate == "temperature" and task.target.calibrates:
    val = prepared.split["val"]
    temperature = calibration.fit_temperature(task.predict_logits(model, prepared, val),
                                              prepared.targets.values[val])
    logging.info("--calibrate=temperature: T=%.4g on %d validation examples", temperature, len(val))
  stop.check("after training, before scoring the test split")
  pause_point("evaluate")
  metrics, export_path = publish.score_and_publish(
      task, model, prepared, config=config, run_dir=run_dir, export_base=export_base, phases=results,
      export_model=export_model, methods=methods, temperature=temperature,
      before_publish=lambda: stop.check("after training and scoring, before publishing the export"))
  run_dir.state().mark_finished(str(export_path))
  return RunResult(str(run_dir.path), prepared.split_sizes, results, metrics, str(export_path),
                   skipped_files=getattr(examples, "skipped", 0), split_info=planned_split.info,
                   task=config.data.task,
                   methods=metrics.get("methods", []))


def _check_workers_agree(strategy, run_dir: RunDir, phase: str, *, done: bool):
  """In a multi-worker job, every worker must resume a phase from the same point, or their steps would not match.

  Raises:
    RunFailed: if the workers' committed states differ (one was killed between the others' commits).
  """
  backup = run_dir.backup(phase) / callbacks.BACKUP_STATE
  epoch = json.loads(backup.read_text())["epoch"] if backup.is_file() else 0
  rows = distribute.gather_from_workers(strategy, [int(done), epoch])
  if len({tuple(row) for row in rows.tolist()}) > 1:
    raise RunFailed(f"the workers of this job committed different points of phase {phase} (finished, epoch: "
                    f"{rows.tolist()}), so they cannot resume together; restart the job with --overwrite")


def _run_phases(task, built, prepared, phases, *, config: Config, run_dir: RunDir, strategy,
                stop, class_weight=None) -> List[PhaseResult]:
  """Runs each phase not finished in an earlier run, on cached frozen-layer outputs where the phase allows.

  A phase's end is committed like an epoch's: the whole model's weights (after_PHASE) and the RNG states of its
  random layers (in run_state.json), so the next phase starts from the same state in a re-run as it would at once.
  """

  t, model = config.train, built.model
  units = {name: len(indices) for name, indices in prepared.unit_split.items()}
  top_k = task.cache_top_k()
  cache = None
  if t.cache_features and top_k is not False:
    cache = feature_cache.FeatureCache(model, built.backbone, built.blocks, prepared.make, strategy=strategy,
                                       top_k=top_k)
  state, results = run_dir.state(), []
  for phase in phases:
    done = state.phase_result(phase.name)
    _check_workers_agree(strategy, run_dir, phase.name, done=bool(done and run_dir.after(phase.name).exists()))
    if done and run_dir.after(phase.name).exists():
      logging.info("phase %s finished in an earlier run; loading its weights", phase.name)
      weights_io.load_weights(model, run_dir.after(phase.name))
      callbacks.restore_seed_states(model, done.seed_states)
      results.append(done)
      continue
    start = time.perf_counter()
    # Epoch e is shuffled with seed + e, so a resumed phase sees the order an uninterrupted one would.
    fit = {"train_ds": lambda first, stop: prepared.make("train", shuffle=True, seed=t.seed, epochs=(first, stop)),
           "val_ds": prepared.make("val"), "steps_per_epoch": prepared.steps_per_epoch}
    plan = cache.plan(phase) if cache else None
    if plan:
      fit_model, inputs = plan
      cached = lambda name, **kw: text_batches.make_dataset(
          inputs(name), prepared.unit_rows[prepared.unit_split[name]], np.arange(units[name]),
          num_classes=None, batch_size=t.batch_size,
          **{"padding": prepared.padding, "pad_to_multiple_of": t.pad_to_multiple_of, **kw})
      fit = {"train_ds": lambda first, stop: cached("train", shuffle=True, seed=t.seed, epochs=(first, stop)),
             "val_ds": cached("val"), "fit_model": fit_model,
             "steps_per_epoch": text_batches.num_batches(inputs("train"), np.arange(units["train"]),
                                                         batch_size=t.batch_size, padding=prepared.padding,
                                                         pad_to_multiple_of=t.pad_to_multiple_of)}
    stretched = recipe.fit_to_data([phase], t, fit["steps_per_epoch"])[0]
    if stretched.epochs != phase.epochs:
      logging.info("phase %s: %d steps per epoch, so up to %d epochs instead of %d (--head_min_steps=%d), early "
                   "stopping patience %d", phase.name, fit["steps_per_epoch"], stretched.epochs, phase.epochs,
                   t.head_min_steps, stretched.patience)
      phase = stretched
    result = phases_lib.run_phase(model, built.backbone, phase, examples_per_epoch=units["train"], train=t,
                                  run_dir=run_dir, strategy=strategy, blocks=built.blocks, stop=stop,
                                  target=task.target, class_weight=class_weight, **fit)
    result.seconds = time.perf_counter() - start
    result.planned_epochs = phase.epochs
    pause_point(f"phase_fitted:{phase.name}")
    callbacks.save_weights_atomically(model, run_dir.after(phase.name))
    result.seed_states = callbacks.seed_state_values(model)
    state.mark_phase(result)  # the commit point of the phase boundary
    shutil.rmtree(run_dir.backup(phase.name), ignore_errors=True)  # the phase is done; its backup is not needed
    results.append(result)
    pause_point(f"phase_committed:{phase.name}")
    stop.check(f"after phase {phase.name}, committed in {run_dir.path}")
  return results
