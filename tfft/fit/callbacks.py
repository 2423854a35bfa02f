"""The callbacks of a phase's fit: throughput and LR logs, the best checkpoint, NaN stop, SIGTERM and the epoch backup."""

import contextlib
import csv
import io
import json
import math
import pathlib
import signal
import threading
import time
from typing import Dict, List, Optional

import keras
from absl import logging

from tfft import files
from tfft.errors import Preempted, RunFailed, UserError
from tfft.model import weights as weights_io
from tfft.testhooks import pause_point

BACKUP_STATE = "state.json"
CHECKPOINT_HINT = ("free disk space or choose another --model_dir. The previous checkpoint is kept: re-run the same "
                   "command to resume from it")


class Throughput(keras.callbacks.Callback):
  """Adds `steps`, `train_seconds` and `examples_per_sec` to each epoch's logs: the training steps only,
  validation excluded, so CSVLogger and TensorBoard record the speed the benchmark reads.

  `steps` is what the optimizer ran in the epoch (its `iterations` at the epoch's end minus at its start), so the
  figure stays true under steps_per_execution, where Keras calls back once per execution, not per step.
  `examples_per_sec` is steps x the epoch's mean global batch (examples_per_epoch / steps_per_epoch) over the
  seconds from the epoch's start to its last train step's end.

  Args:
    examples_per_epoch: training examples per epoch (0: log only the steps and seconds).
    steps_per_epoch: batches per epoch; 0 reads it from fit's params, or counts one epoch's examples as one
      epoch's steps when fit was given no length either.
  """

  def __init__(self, examples_per_epoch: int, steps_per_epoch: int = 0):
    super().__init__()
    self._examples, self._steps_per_epoch = examples_per_epoch, steps_per_epoch
    self._start = self._end = None
    self._first_iteration = 0

  def _iterations(self) -> int:
    return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

  def on_epoch_begin(self, epoch, logs=None):
    self._first_iteration = self._iterations()
    self._start, self._end = time.perf_counter(), None

  def on_train_batch_end(self, batch, logs=None):
    self._end = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None and self._end is not None:
      seconds = self._end - self._start
      steps = self._iterations() - self._first_iteration
      logs["steps"] = steps
      logs["train_seconds"] = seconds
      if self._examples:
        per_epoch = self._steps_per_epoch or (self.params or {}).get("steps") or steps
        examples = self._examples * steps / per_epoch if per_epoch else 0
        logs["examples_per_sec"] = examples / seconds if seconds > 0 else 0.0


class EpochTensorBoard(keras.callbacks.TensorBoard):
  """Keras' TensorBoard callback at update_freq="epoch" without profiling, minus its per-batch work.

  Keras' on_train_batch_end writes a `batch_<name>` scalar for every log at every step, even at
  update_freq="epoch", where no writer receives them: a few Python summary calls per step, milliseconds on a loaded
  CPU, which is as long as a step of a small head on cached features. The epoch summaries and the graph are the
  same; use keras.callbacks.TensorBoard itself to profile (tfft does, for --profile_batches).
  """

  def __init__(self, log_dir: str):
    super().__init__(log_dir=log_dir, profile_batch=0, update_freq="epoch")

  def on_train_batch_begin(self, batch, logs=None):
    self._global_train_batch += 1

  def on_train_batch_end(self, batch, logs=None):
    if self._should_write_train_graph:
      self._write_keras_model_train_graph()
      self._should_write_train_graph = False


class LearningRateLogger(keras.callbacks.Callback):
  """Puts the optimizer's current learning rate into the epoch logs; listed before CSVLogger, which records it."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def save_weights_atomically(model: keras.Model, path: pathlib.Path):
  """Writes `model`'s weights (with its optimizer's state, once compiled) atomically (tfft.files.write_atomically).

  The file is the same as `model.save_weights(path)` writes.

  Raises:
    UserError: if the file cannot be written; the previous file is kept.
  """
  files.write_atomically(path, weights_io.weights_h5_bytes(model), what="checkpoint", hint=CHECKPOINT_HINT)


class BestCheckpoint(keras.callbacks.Callback):
  """Keeps the weights of the best epoch by `monitor`, written atomically.

  Keras' ModelCheckpoint writes in place, so a kill mid-write would lose the previous best as well.
  """

  def __init__(self, path, monitor: str, mode: str):
    super().__init__()
    self.path, self.monitor, self.mode = pathlib.Path(path), monitor, mode
    self.best: Optional[float] = None

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self.monitor)
    if value is None or not math.isfinite(float(value)):
      return
    value = float(value)
    if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
      self.best = value
      self.path.parent.mkdir(parents=True, exist_ok=True)
      save_weights_atomically(self.model, self.path)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
  """TerminateOnNaN that fails the fit at the bad batch: the NaN epoch never reaches a checkpoint or the history.

  Args:
    phase: the tfft.fit.recipe.Phase being fitted, named in the message with the LR flag to lower; None in a
      hand-written fit.
    backup_dir: where the phase's epoch backups go, so the message can say whether one is kept.

  Raises (from fit):
    RunFailed: naming the epoch and batch where the loss stopped being finite.
  """

  def __init__(self, phase=None, backup_dir: Optional[pathlib.Path] = None):
    super().__init__()
    self._phase, self._backup_dir = phase, backup_dir
    self._epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_batch_end(self, batch, logs=None):
    super().on_batch_end(batch, logs)
    if self.model.stop_training:
      where = f"at epoch {self._epoch + 1}, batch {batch + 1}"
      if self._phase is None:
        raise RunFailed(f"training diverged: the loss became NaN or infinite {where}; lower the learning rate")
      flag = "--head_learning_rate" if self._phase.name == "head" else "--learning_rate"
      kept = (f"the last finished epoch's checkpoint is kept in {self._backup_dir}"
              if self._backup_dir and (self._backup_dir / BACKUP_STATE).exists() else "no epoch of this phase finished")
      raise RunFailed(f"phase {self._phase.name} diverged: the training loss became NaN or infinite at epoch "
                      f"{self._epoch + 1}, batch {batch + 1}; lower {flag} (it is {self._phase.learning_rate:g}) "
                      f"and re-run; {kept}; nothing was exported")


_SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}


class StopRequest:
  """SIGTERM or SIGINT, noted for the whole run and acted on at its safe points, so that no signal is dropped.

  The safe points are each epoch's end (after it is committed, see EpochBackup), each phase's end (after the phase
  boundary is committed), before the test split is scored, and before the export is published. `installed()` puts
  the handlers in place for the whole job, phases and export alike; a second Ctrl-C interrupts at once.
  """

  def __init__(self):
    self.signum: Optional[int] = None  # the first signal: the one the run stops for and exits with
    self._ctrl_c = False  # a Ctrl-C arrived, whatever came first

  @property
  def requested(self) -> bool:
    return self.signum is not None

  @contextlib.contextmanager
  def installed(self):
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
      yield self
      return

    def handler(signum, frame):  # pylint: disable=unused-argument
      if signum == signal.SIGINT:
        if self._ctrl_c:
          raise KeyboardInterrupt  # the second Ctrl-C, after a SIGTERM too: stop now
        self._ctrl_c = True
      self.signum = self.signum or signum
      logging.warning("%s: finishing and committing the current step, then stopping%s", _SIGNAL_NAMES[signum],
                      " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "")

    previous = {s: signal.signal(s, handler) for s in _SIGNAL_NAMES}
    try:
      yield self
    finally:
      for s, h in previous.items():
        signal.signal(s, h)

  def check(self, done: str):
    """Raises Preempted at a safe point if a signal arrived; `done` says what is already committed.

    Raises:
      Preempted: with the signal's number, for the exit code.
    """
    if self.requested:
      raise Preempted(f"{_SIGNAL_NAMES[self.signum].split()[0]}: stopped {done}; re-run the same command to resume",
                      signum=self.signum)


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
               stopper: Optional[keras.callbacks.EarlyStopping], stop: StopRequest):
    super().__init__()
    self.directory, self.phase = directory, phase
    self._best, self._stopper, self._stop = best, stopper, stop
    self.state: Dict = {"epoch": 0, "history": {}, "stopped": False}
    self._epoch = 0

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
      weights_io.load_weights(model, weights)
    except (ValueError, OSError) as e:
      raise UserError(f"the checkpoint {weights} of an interrupted run does not fit this model "
                      f"({str(e).splitlines()[0][:120]}); pass --overwrite to start afresh or choose another "
                      "--model_dir") from None
    restore_seed_states(model, self.state.get("seed_states", []))
    return int(self.state["epoch"])

  @property
  def history(self) -> Dict[str, List[float]]:
    return self.state["history"]

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_begin(self, batch, logs=None):
    pause_point(f"batch:{self.phase}:{self._epoch}:{batch}")  # the first is before the step is traced

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
                      seed_states=seed_state_values(self.model))
    if self._stopper is not None:
      best = self._stopper.best
      self.state["early_stopping"] = {"wait": self._stopper.wait, "best_epoch": self._stopper.best_epoch,
                                      "best": None if best is None else float(best)}
    files.write_json(self.directory / BACKUP_STATE, self.state, what="checkpoint", hint=CHECKPOINT_HINT)
    for old in self.directory.glob("epoch-*.weights.h5"):
      if old.name != weights:
        old.unlink(missing_ok=True)
    if self._stop.requested:
      self.model.stop_training = True


def seed_state_values(model: keras.Model) -> list:
  """The values of seed_states(model), JSON-ready."""
  return [keras.ops.convert_to_numpy(v).tolist() for v in seed_states(model)]


def restore_seed_states(model: keras.Model, values: list):
  """Assigns seed_state_values back; a list of another length (another model) is left alone."""
  variables = seed_states(model)
  if len(variables) == len(values):
    for variable, value in zip(variables, values):
      variable.assign(value)


def seed_states(model: keras.Model) -> list:
  """The RNG states of the model's dropout (and other random) layers, which weight files leave out: restored with
  the weights, a resumed epoch draws the same dropout masks as an uninterrupted one."""
  return [v for v in model.variables if "seed_generator_state" in v.path]


def truncate_history(path: pathlib.Path, epochs: int):
  """Keeps the CSV rows of the first `epochs` epochs: an epoch logged but not committed before a kill is redone."""
  if not path.exists():
    return
  with path.open(newline="") as f:
    rows = list(csv.reader(f))
  kept = [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < epochs]
  if not kept:
    path.unlink()
    return
  out = io.StringIO(newline="")
  csv.writer(out).writerows([rows[0], *kept])
  files.write_atomically(path, out.getvalue())
