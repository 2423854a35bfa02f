"""The learning-rate range test (Smith, 2017) on the fine-tuning phase: the head phase as the config trains it,
then phase 2's model and freezing with an LR growing exponentially each step; the loss-vs-LR curve and the LR
to paste as --learning_rate."""

import dataclasses
import math
import pathlib
import shutil
from typing import List

import keras
import numpy as np
from absl import logging

from tfft import files
from tfft.config import Config
from tfft.errors import UserError
from tfft.fit import phases as phases_lib
from tfft.fit import callbacks, distribute, setup
from tfft.model import freezing
from tfft.report.plots import _save
from tfft.rundir import RunDir

LR_FIND_CSV = "lr_find.csv"
LR_FIND_PNG = "lr_find.png"
SMOOTHING = 0.98  # the moving average of the loss, as fastai's LR finder
DIVERGED = 4.0    # the test stops once the smoothed loss exceeds this multiple of its lowest value


@dataclasses.dataclass
class LRFindResult:
  learning_rates: List[float]
  losses: List[float]
  smoothed: List[float]
  suggested: float
  lowest_loss_lr: float
  out_dir: str


def suggest(learning_rates: np.ndarray, smoothed: np.ndarray) -> float:
  """A tenth of the LR at which the smoothed loss is lowest: past that LR the loss climbs, so a tenth of it is
  still on the descending part of the curve (the rule fastai's `lr_min` uses)."""
  return float(learning_rates[int(np.argmin(smoothed))] / 10.0)


def smooth(losses: np.ndarray, beta: float = SMOOTHING) -> np.ndarray:
  """Bias-corrected exponential moving average of the per-step losses."""
  out, average = [], 0.0
  for i, loss in enumerate(losses):
    average = beta * average + (1 - beta) * float(loss)
    out.append(average / (1 - beta ** (i + 1)))
  return np.array(out)


def _check_out_dir(out_dir: pathlib.Path):
  if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / LR_FIND_CSV).exists():
    raise UserError(f"--lr_find_dir={out_dir}: holds files that are not an LR range test's; choose an empty or new "
                    "folder")


def run_lr_find(config: Config, out_dir: str, *, steps: int = 100, lr_min: float = 1e-7, lr_max: float = 1.0,
                strategy=None) -> LRFindResult:
  """Runs the range test and writes lr_find.csv and lr_find.png into `out_dir`.

  Args:
    config: a validated train config with a phase 2 (--epochs > 0).
    out_dir: where the test's files go (an earlier test's are replaced).
    steps: the most steps of the test; it stops early once the loss diverges.
    lr_min: the LR of the first step.
    lr_max: the LR of the last step.
    strategy: the tf.distribute strategy; None builds the one --strategy names.

  Raises:
    UserError: for bad arguments or data, as tfft.train.
  """
  if steps < 5:
    raise UserError(f"--lr_find_steps={steps}: the range test needs at least 5 steps (100 is usual)")
  if not 0 < lr_min < lr_max:
    raise UserError(f"--lr_min={lr_min:g} --lr_max={lr_max:g}: need 0 < lr_min < lr_max, e.g. 1e-7 and 1")
  if config.train.epochs == 0:
    raise UserError("--epochs=0: the range test runs on phase 2 (fine-tuning); set --epochs above 0")
  out = pathlib.Path(out_dir).expanduser()
  _check_out_dir(out)

  t = config.train
  if strategy is None:
    strategy = distribute.build_strategy(t.strategy, tpu=t.tpu, worker_hosts=t.worker_hosts, task_index=t.task_index)
  inputs = setup.load_inputs(config)
  model = setup.build_model(config, inputs, strategy)
  task, examples, targets, split = inputs.task, inputs.examples, inputs.targets, inputs.split.indices
  built, plan, weights = model.built, model.phases, model.class_weight
  for stale in ("backup", "checkpoints", "logs"):
    shutil.rmtree(out / stale, ignore_errors=True)
  out.mkdir(parents=True, exist_ok=True)
  prepared = task.prepare(examples, targets, split)
  stop = callbacks.StopRequest()
  fit = {"train_ds": lambda first, stop_: prepared.make("train", shuffle=True, seed=t.seed, epochs=(first, stop_)),
         "val_ds": prepared.make("val"), "steps_per_epoch": prepared.steps_per_epoch}
  if plan[0].name == "head":  # the head the fine-tuning phase starts from, as the train job would have it
    phases_lib.run_phase(built.model, built.backbone, plan[0], train=t, run_dir=RunDir(out), strategy=strategy,
                         blocks=built.blocks, stop=stop, target=task.target, class_weight=weights,
                         **fit)
  phase = next(p for p in plan if p.name != "head")
  freezing.apply_freeze(built.model, built.backbone, phase.freeze, blocks=built.blocks)
  multipliers = (freezing.layer_decay_multipliers(built.backbone, built.blocks, t.layer_decay)
                 if t.layer_decay < 1.0 else None)
  schedule = keras.optimizers.schedules.ExponentialDecay(lr_min, decay_steps=steps - 1, decay_rate=lr_max / lr_min)
  recorder = _Recorder(schedule)
  with strategy.scope():
    built.model.compile(optimizer=phases_lib.build_optimizer(t, schedule, multipliers),
                        loss=task.target.loss(t), jit_compile=t.jit_compile)
  epochs = math.ceil(steps / max(prepared.steps_per_epoch, 1)) + 1
  data = prepared.make("train", shuffle=True, seed=t.seed, epochs=(0, epochs))
  # One step per Keras epoch: Keras 3 logs the epoch's running mean, so this way each logged loss is one step's.
  built.model.fit(data, epochs=steps, steps_per_epoch=1, class_weight=weights, callbacks=[recorder], shuffle=False,
                  verbose=0)
  shutil.rmtree(out / "backup", ignore_errors=True)
  lrs, losses = np.array(recorder.learning_rates), np.array(recorder.losses)
  smoothed = smooth(losses)
  result = LRFindResult(lrs.tolist(), losses.tolist(), smoothed.tolist(), suggest(lrs, smoothed),
                        float(lrs[int(np.argmin(smoothed))]), str(out))
  _write(out, result)
  logging.info("LR range test: %d steps, lowest smoothed loss at LR %.3g", len(lrs), result.lowest_loss_lr)
  return result


class _Recorder(keras.callbacks.Callback):
  """Records each step's LR and loss (one step per Keras epoch) and stops once the smoothed loss diverges."""

  def __init__(self, schedule):
    super().__init__()
    self._schedule = schedule
    self.learning_rates, self.losses, self._best, self._average = [], [], math.inf, 0.0

  def on_epoch_end(self, epoch, logs=None):
    loss = float((logs or {}).get("loss", math.nan))
    self.learning_rates.append(float(self._schedule(epoch)))
    self.losses.append(loss)
    self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
    smoothed = self._average / (1 - SMOOTHING ** len(self.losses))
    self._best = min(self._best, smoothed)
    if not math.isfinite(loss) or smoothed > DIVERGED * self._best:
      self.model.stop_training = True


def _write(out: pathlib.Path, result: LRFindResult):
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  rows = ["step,learning_rate,loss,smoothed_loss"] + [
      f"{i},{lr:.6g},{loss:.6g},{s:.6g}"
      for i, (lr, loss, s) in enumerate(zip(result.learning_rates, result.losses, result.smoothed))]
  files.write_atomically(out / LR_FIND_CSV, "\n".join(rows) + "\n")
  fig = Figure(figsize=(6, 4))
  ax = fig.add_subplot()
  ax.plot(result.learning_rates, result.losses, color="lightgrey", label="loss per step")
  ax.plot(result.learning_rates, result.smoothed, label="smoothed")
  ax.axvline(result.suggested, color="tab:red", linestyle="--", label=f"suggested {result.suggested:.2g}")
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  ax.set_title("LR range test on the fine-tuning phase")
  finite = [v for v in result.smoothed if math.isfinite(v)]
  if finite:
    ax.set_ylim(min(finite) * 0.9, min(max(finite), DIVERGED * min(finite)) * 1.1)
  ax.legend()
  _save(fig, out / LR_FIND_PNG)
