"""The training phases: each one sets `trainable`, compiles, and runs its own `fit` with its callbacks."""

import dataclasses
import math
import pathlib
import sys
import time
from typing import List

import keras
from absl import logging

from tfft import modeling, schedules
from tfft.config import Freeze, TrainConfig
from tfft.state import PhaseResult


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


def _callbacks(phase: Phase, *, model_dir: pathlib.Path, monitor: str, patience: int, best_path: pathlib.Path,
               examples_per_epoch: int):
  mode = "min" if monitor.endswith("loss") else "max"
  callbacks = [
      Throughput(examples_per_epoch),  # first, so the loggers after it see its numbers
      keras.callbacks.TerminateOnNaN(),
      keras.callbacks.BackupAndRestore(str(model_dir / "backup" / phase.name)),
      keras.callbacks.ModelCheckpoint(str(best_path), monitor=monitor, mode=mode, save_best_only=True,
                                      save_weights_only=True),
      LearningRateLogger(),
      keras.callbacks.CSVLogger(str(model_dir / f"history_{phase.name}.csv"), append=True),
      keras.callbacks.TensorBoard(log_dir=str(model_dir / "logs" / phase.name)),
  ]
  if patience:
    # The best weights come back from the checkpoint after fit, so EarlyStopping need not restore them.
    callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience))
  return callbacks


def run_phase(model: keras.Model, backbone, phase: Phase, *, train_ds, val_ds, steps_per_epoch: int,
              examples_per_epoch: int = 0, train: TrainConfig, model_dir: pathlib.Path, strategy, blocks=None,
              fit_model: keras.Model = None) -> PhaseResult:
  """Runs one phase: apply the freezing policy, compile under the strategy, fit, and keep the best weights.

  Args:
    model: the classifier; its weights are left at the phase's best validation epoch.
    backbone: the backbone inside `model`, whose layers the policy freezes.
    phase: what to train and how long.
    train_ds: batched training dataset of (features, one-hot labels).
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
    The phase's parameter counts, epochs run, best monitored value and history.
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
  history = fit_model.fit(
      train_ds, validation_data=val_ds, epochs=phase.epochs, shuffle=False,  # train_ds shuffles itself
      callbacks=_callbacks(phase, model_dir=model_dir, monitor=train.monitor,
                           patience=train.early_stopping_patience, best_path=best_path,
                           examples_per_epoch=examples_per_epoch),
      verbose=1 if sys.stdout.isatty() else 2)
  values = history.history.get(train.monitor, [])
  if best_path.exists():
    fit_model.load_weights(str(best_path))
  best = (min(values) if train.monitor.endswith("loss") else max(values)) if values else None
  return PhaseResult(phase.name, trainable, frozen, len(history.epoch), train.monitor, best,
                     {k: [float(v) for v in vs] for k, vs in history.history.items()})
