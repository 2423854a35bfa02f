"""The training phases: each one sets `trainable`, compiles, and runs its own `fit` with its callbacks."""

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import signal
import sys
import threading
import time
from typing import Dict, List, Optional

import keras
from absl import logging

from tfft import modeling, schedules
from tfft.config import Freeze, TrainConfig
from tfft.errors import Preempted, RunFailed, UserError
from tfft.state import PhaseResult
from tfft.testhooks import pause_point

BACKUP_STATE = "state.json"


@dataclasses.dataclass(frozen=True)
class Phase:
  """One `fit`: its epochs, peak LR, warmup and which backbone weights train."""
  name: str  # "head" or "finetune"
  epochs: int
  learning_rate: float
  warmup_fraction: float
  freeze: Freeze


def plan_phases(train: TrainConfig) -> List[Phase]:
  """Phase 1 trains the head on a frozen backbone; phase 2 unfreezes per --freeze at a lower LR with warmup."""
  phases = []
  if train.head_epochs:
    phases.append(Phase("head", train.head_epochs, train.head_learning_rate, 0.0, Freeze("all")))
  if train.epochs:
    # Without a head phase the head starts random, so phase 2 gets the warmup either way.
    phases.append(Phase("finetune", train.epochs, train.learning_rate, train.warmup_fraction, train.freeze))
  return phases


def build_optimizer(train: TrainConfig, learning_rate) -> keras.optimizers.Optimizer:
  """Builds --optimizer with its LR schedule; AdamW skips biases and LayerNorm, as in BERT's recipe."""
  clip = {"clipnorm": train.clipnorm} if train.clipnorm else {}
  if train.optimizer == "adamw":
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=train.weight_decay, **clip)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
  if train.optimizer == "adam":
    return keras.optimizers.Adam(learning_rate=learning_rate, **clip)
  return keras.optimizers.SGD(learning_rate=learning_rate, momentum=train.momentum,
                              weight_decay=train.weight_decay or None, **clip)


class Throughput(keras.callbacks.Callback):
  """Adds `train_seconds` and `examples_per_sec` to each epoch's logs: the training steps only, validation
  excluded, so CSVLogger and TensorBoard record the speed the benchmark reads."""

  def __init__(self, examples_per_epoch: int):
    super().__init__()
    self._examples = examples_per_epoch
    self._start = self._end = None

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self._end = time.perf_counter(), None

  def on_train_batch_end(self, batch, logs=None):
    self._end = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None and self._end is not None:
      seconds = self._end - self._start
      logs["train_seconds"] = seconds
      if self._examples:
        logs["examples_per_sec"] = self._examples / seconds if seconds > 0 else 0.0


class LearningRateLogger(keras.callbacks.Callback):
  """Puts the optimizer's current learning rate into the epoch logs; listed before CSVLogger, which records it."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def _weights_h5_bytes(model: keras.Model) -> bytes:
  """The bytes of `model.save_weights(...)`'s .weights.h5 file, built in memory.

  h5py crashes the process (a segfault after a storm of RuntimeErrors) when the disk refuses a write halfway
  through a file, so the file is built in memory and written with plain file I/O, which fails with an OSError.
  This uses the H5IOStore behind keras.Model.save_weights (Keras 3), which accepts a BytesIO.
  """
  from keras.src.saving import saving_lib  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  store = saving_lib.H5IOStore(buffer, mode="w")
  saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",  # pylint: disable=protected-access
                         visited_saveables=set())
  store.close()
  return buffer.getvalue()


def save_weights_atomically(model: keras.Model, path: pathlib.Path):
  """Writes `model`'s weights (with its optimizer's state, once compiled) to a temporary name, then renames.

  A kill mid-write leaves the previous file intact; a disk that refuses the write (full, quota, file size limit)
  is a one-line error and also leaves it intact. The file is the same as `model.save_weights(path)` writes.

  Raises:
    UserError: if the file cannot be written.
  """
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  data = _weights_h5_bytes(model)
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    tmp.unlink(missing_ok=True)
    reason = e.strerror or str(e).splitlines()[0]
    raise UserError(f"cannot write checkpoint {path} ({reason}); free disk space or choose another --model_dir. "
                    "The previous checkpoint is kept: re-run the same command to resume from it") from None


def write_json_atomically(path: pathlib.Path, data) -> None:
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  try:
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
  except OSError as e:
    tmp.unlink(missing_ok=True)
    raise UserError(f"cannot write {path} ({e.strerror}); free disk space or choose another --model_dir. "
                    "The previous checkpoint is kept: re-run the same command to resume from it") from None


class BestCheckpoint(keras.callbacks.Callback):
  """Keeps the weights of the best epoch by `monitor`, written atomically.

  Keras' ModelCheckpoint writes in place, so a kill mid-write would lose the previous best as well.
  """

  def __init__(self, path: pathlib.Path, monitor: str, mode: str):
    super().__init__()
    self.path, self.monitor, self.mode = path, monitor, mode
    self.best: Optional[float] = None

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self.monitor)
    if value is None or not math.isfinite(float(value)):
      return
    value = float(value)
    if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
      self.best = value
      save_weights_atomically(self.model, self.path)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
  """TerminateOnNaN that fails the run at the bad batch: the NaN epoch never reaches a checkpoint or the history."""

  def __init__(self, phase: "Phase", backup_dir: pathlib.Path):
    super().__init__()
    self._phase, self._backup_dir = phase, backup_dir
    self._epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_batch_end(self, batch, logs=None):
    super().on_batch_end(batch, logs)
    if self.model.stop_training:
      flag = "--head_learning_rate" if self._phase.name == "head" else "--learning_rate"
      kept = (f"the last finished epoch's checkpoint is kept in {self._backup_dir}"
              if (self._backup_dir / BACKUP_STATE).exists() else "no epoch of this phase finished")
      raise RunFailed(f"phase {self._phase.name} diverged: the training loss became NaN or infinite at epoch "
                      f"{self._epoch + 1}, batch {batch + 1}; lower {flag} (it is {self._phase.learning_rate:g}) "
                      f"and re-run; {kept}; nothing was exported")


class Preemption:
  """Set by SIGTERM while a phase trains: the epoch in progress finishes and is checkpointed, then the run stops."""

  def __init__(self):
    self.requested = False

  @contextlib.contextmanager
  def handling_sigterm(self):
    if threading.current_thread() is not threading.main_thread():
      yield
      return

    def handler(signum, frame):  # pylint: disable=unused-argument
      logging.warning("SIGTERM: finishing and checkpointing the current epoch, then stopping")
      self.requested = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
      yield
    finally:
      signal.signal(signal.SIGTERM, previous)


class EpochBackup(keras.callbacks.Callback):
  """Per-epoch backup of a phase, for resuming it: weights with the optimizer state, and the callbacks' state.

  Keras' BackupAndRestore overwrites its weights and its epoch file in place, one after the other (a kill between
  or during the writes leaves them inconsistent), and restores no callback state. Here each epoch end writes
  epoch-<n>.weights.h5 under a temporary name, then state.json (the commit point): epochs done, the history so far,
  EarlyStopping's wait/best, the best checkpoint's value and the dropout RNG states. The optimizer's variables include `iterations`, on
  which every LR schedule is keyed, so the schedule resumes where it was. List it last among the callbacks, so it
  records the others' state after their epoch end.
  """

  def __init__(self, directory: pathlib.Path, phase: str, *, best: BestCheckpoint,
               stopper: Optional[keras.callbacks.EarlyStopping], preemption: Preemption):
    super().__init__()
    self.directory, self.phase = directory, phase
    self._best, self._stopper, self._preemption = best, stopper, preemption
    self.state: Dict = {"epoch": 0, "history": {}, "stopped": False}

  def restore(self, model: keras.Model) -> int:
    """Loads the last committed epoch into `model` (compiled); returns the epoch to start from (0: none)."""
    path = self.directory / BACKUP_STATE
    if not path.exists():
      return 0
    self.state = json.loads(path.read_text())
    if model.optimizer is not None and not model.optimizer.built:
      model.optimizer.build(model.trainable_variables)
    weights = self.directory / self.state["weights"]
    try:
      model.load_weights(str(weights))
    except (ValueError, OSError) as e:
      raise UserError(f"the checkpoint {weights} of an interrupted run does not fit this model "
                      f"({str(e).splitlines()[0][:120]}); pass --overwrite to start afresh or choose another "
                      "--model_dir") from None
    seeds = _seed_states(model)
    if len(seeds) == len(self.state.get("seed_states", [])):
      for variable, value in zip(seeds, self.state["seed_states"]):
        variable.assign(value)
    return int(self.state["epoch"])

  @property
  def history(self) -> Dict[str, List[float]]:
    return self.state["history"]

  def on_train_begin(self, logs=None):
    # After EarlyStopping's own on_train_begin, which resets it.
    self._best.best = self.state.get("best")
    if self._stopper is not None and "early_stopping" in self.state:
      for name, value in self.state["early_stopping"].items():
        setattr(self._stopper, name, value)

  def on_epoch_end(self, epoch, logs=None):
    pause_point(f"epoch_end:{self.phase}:{epoch}")
    for key, value in (logs or {}).items():
      self.state["history"].setdefault(key, []).append(float(value))
    weights = f"epoch-{epoch + 1}.weights.h5"
    self.directory.mkdir(parents=True, exist_ok=True)
    save_weights_atomically(self.model, self.directory / weights)
    self.state.update(epoch=epoch + 1, weights=weights, best=self._best.best, stopped=bool(self.model.stop_training),
                      seed_states=[keras.ops.convert_to_numpy(v).tolist() for v in _seed_states(self.model)])
    if self._stopper is not None:
      best = self._stopper.best
      self.state["early_stopping"] = {"wait": self._stopper.wait, "best_epoch": self._stopper.best_epoch,
                                      "best": None if best is None else float(best)}
    write_json_atomically(self.directory / BACKUP_STATE, self.state)
    for old in self.directory.glob("epoch-*.weights.h5"):
      if old.name != weights:
        old.unlink(missing_ok=True)
    if self._preemption.requested:
      self.model.stop_training = True


def _seed_states(model: keras.Model) -> list:
  """The RNG states of the model's dropout (and other random) layers, which weight files leave out: restored with
  the weights, a resumed epoch draws the same dropout masks as an uninterrupted one."""
  return [v for v in model.variables if "seed_generator_state" in v.path]


def _truncate_history(path: pathlib.Path, epochs: int):
  """Keeps the CSV rows of the first `epochs` epochs: an epoch logged but not committed before a kill is redone."""
  if not path.exists():
    return
  with path.open(newline="") as f:
    rows = list(csv.reader(f))
  kept = [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < epochs]
  if not kept:
    path.unlink()
    return
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  with tmp.open("w", newline="") as f:
    csv.writer(f).writerows([rows[0], *kept])
  os.replace(tmp, path)


def _callbacks(phase: Phase, *, model_dir: pathlib.Path, monitor: str, patience: int, best_path: pathlib.Path,
               examples_per_epoch: int, preemption: Preemption, profile_batches=()):
  mode = "min" if monitor.endswith("loss") else "max"
  backup_dir = model_dir / "backup" / phase.name
  best = BestCheckpoint(best_path, monitor, mode)
  # The best weights come back from the checkpoint after fit, so EarlyStopping need not restore them.
  stopper = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience) if patience else None
  backup = EpochBackup(backup_dir, phase.name, best=best, stopper=stopper, preemption=preemption)
  callbacks = [
      Throughput(examples_per_epoch),  # first, so the loggers after it see its numbers
      StopOnNaN(phase, backup_dir),
      best,
      LearningRateLogger(),
      keras.callbacks.CSVLogger(str(model_dir / f"history_{phase.name}.csv"), append=True),
      keras.callbacks.TensorBoard(log_dir=str(model_dir / "logs" / phase.name), profile_batch=profile_batches or 0),
      *([stopper] if stopper else []),
      backup,  # last: it commits the epoch with the state the others reached
  ]
  return callbacks, backup


def run_phase(model: keras.Model, backbone, phase: Phase, *, train_ds, val_ds, steps_per_epoch: int,
              examples_per_epoch: int = 0, train: TrainConfig, model_dir: pathlib.Path, strategy, blocks=None,
              fit_model: keras.Model = None) -> PhaseResult:
  """Runs one phase: apply the freezing policy, compile under the strategy, fit, and keep the best weights.

  Args:
    model: the classifier; its weights are left at the phase's best validation epoch.
    backbone: the backbone inside `model`, whose layers the policy freezes.
    phase: what to train and how long.
    train_ds: batched training dataset of (features, one-hot labels), or `train_ds(first, stop)` giving epochs
      first..stop-1 back to back with a fixed order per epoch (see tfft.data.tensors.per_epoch), which makes a
      resumed phase see the same data order as an uninterrupted one.
    val_ds: batched validation dataset.
    steps_per_epoch: batches per epoch of `train_ds`.
    examples_per_epoch: training examples per epoch, for the throughput log (0: log only the seconds).
    train: the optimiser, schedule and callback settings.
    model_dir: run directory for checkpoints and logs.
    strategy: the tf.distribute strategy the model was built under.
    blocks: the backbone's transformer blocks, for top_k freezing.
    fit_model: what to fit when not `model` itself: the head alone, with the datasets holding cached
      pooled features (see modeling.split_at_pooling).

  Returns:
    The phase's parameter counts, epochs run, best monitored value and history (all epochs of the phase, also
    those run before an interruption).

  Raises:
    RunFailed: when the loss becomes NaN (the last finished epoch stays in MODEL_DIR/backup/<phase>).
    Preempted: after SIGTERM, once the epoch in progress is checkpointed.
    UserError: when a checkpoint cannot be written, or an interrupted run's checkpoint does not fit.
  """
  modeling.apply_freeze(model, backbone, phase.freeze, blocks=blocks)
  trainable = modeling.count_params(model.trainable_weights)
  frozen = modeling.count_params(model.non_trainable_weights)
  logging.info("phase %s: %d epochs at peak LR %g, freeze=%s: %s trainable / %s frozen parameters",
               phase.name, phase.epochs, phase.learning_rate, phase.freeze, f"{trainable:,}", f"{frozen:,}")
  total_steps = phase.epochs * steps_per_epoch
  lr = schedules.build_schedule(
      train.lr_schedule, peak=phase.learning_rate, total_steps=total_steps,
      warmup_steps=int(math.floor(phase.warmup_fraction * total_steps)), steps_per_epoch=steps_per_epoch,
      decay_rate=train.lr_decay_rate, alpha=train.lr_alpha, restart_epochs=train.lr_restart_epochs)
  fit_model = fit_model or model
  with strategy.scope():
    fit_model.compile(
        optimizer=build_optimizer(train, lr),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=train.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=train.jit_compile, steps_per_execution=train.steps_per_execution)
  best_path = model_dir / "checkpoints" / f"best_{phase.name}.weights.h5"
  best_path.parent.mkdir(parents=True, exist_ok=True)
  preemption = Preemption()
  callbacks, backup = _callbacks(phase, model_dir=model_dir, monitor=train.monitor,
                                 patience=train.early_stopping_patience, best_path=best_path,
                                 examples_per_epoch=examples_per_epoch, preemption=preemption,
                                 profile_batches=train.profile_batches)
  with strategy.scope():
    first = backup.restore(fit_model)
  _truncate_history(model_dir / f"history_{phase.name}.csv", first)
  if first:
    logging.info("phase %s: resuming after epoch %d of %d from %s", phase.name, first, phase.epochs,
                 backup.directory)
  if first < phase.epochs and not backup.state.get("stopped"):
    per_epoch = callable(train_ds)
    data = train_ds(first, phase.epochs) if per_epoch else train_ds
    from tfft import distribute  # pylint: disable=g-import-not-at-top
    distribute.build_for_multi_worker(fit_model, strategy, lambda: next(iter(data)))
    with preemption.handling_sigterm():
      fit_model.fit(
          data, validation_data=val_ds, epochs=phase.epochs,
          initial_epoch=first, steps_per_epoch=steps_per_epoch if per_epoch else None,
          shuffle=False,  # train_ds shuffles itself
          callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
    if preemption.requested and backup.state["epoch"] < phase.epochs and not backup.state.get("stopped"):
      raise Preempted(f"SIGTERM: stopped after epoch {backup.state['epoch']} of {phase.epochs} of phase "
                      f"{phase.name}, checkpointed in {backup.directory}; re-run the same command to resume")
  values = backup.history.get(train.monitor, [])
  if best_path.exists():
    fit_model.load_weights(str(best_path))
  best = (min(values) if train.monitor.endswith("loss") else max(values)) if values else None
  return PhaseResult(phase.name, trainable, frozen, len(backup.history.get("loss", [])), train.monitor, best,
                     {k: list(vs) for k, vs in backup.history.items()})
