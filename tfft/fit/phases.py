"""One training phase: set `trainable`, compile, and run its own `fit` with its callbacks."""

import math
import sys
from typing import Optional

import keras
from absl import logging

from tfft.config import TrainConfig
from tfft.fit import callbacks as callbacks_lib
from tfft.fit import distribute, schedules
from tfft.fit.recipe import Phase
from tfft.model import freezing
from tfft.model import weights as weights_io
from tfft.rundir import PhaseResult, RunDir
from tfft.tasks import registry


def build_optimizer(train: TrainConfig, learning_rate, lr_multipliers=None) -> keras.optimizers.Optimizer:
  """Builds --optimizer with its LR schedule; AdamW skips biases and LayerNorm, as in BERT's recipe.

  Args:
    train: the optimiser settings.
    learning_rate: the LR or its schedule.
    lr_multipliers: id(variable) -> factor on that variable's LR (--layer_decay); variables left out train at
      the LR itself.
  """
  clip = {"clipnorm": train.clipnorm} if train.clipnorm else {}
  scaled = {"lr_multipliers": lr_multipliers} if lr_multipliers else {}
  if train.optimizer == "adamw":
    optimizer = _optimizer_class(keras.optimizers.AdamW, scaled)(
        learning_rate=learning_rate, weight_decay=train.weight_decay, **clip, **scaled)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
  if train.optimizer == "adam":
    return _optimizer_class(keras.optimizers.Adam, scaled)(learning_rate=learning_rate, **clip, **scaled)
  return _optimizer_class(keras.optimizers.SGD, scaled)(learning_rate=learning_rate, momentum=train.momentum,
                                                        weight_decay=train.weight_decay or None, **clip, **scaled)


def _optimizer_class(base, scaled):
  return _PER_VARIABLE_LR.setdefault(base, _with_lr_multipliers(base)) if scaled else base


_PER_VARIABLE_LR = {}


def _with_lr_multipliers(base):
  """`base` with a per-variable LR: each variable's update (and decoupled weight decay) uses LR x its factor.

  Adam-family updates divide by the gradient's running RMS, so scaling gradients would leave their steps as they
  were; the LR handed to each variable's update_step is scaled instead, as torch's per-group LRs do.
  """

  class PerVariableLR(base):

    def __init__(self, *args, lr_multipliers, **kwargs):
      super().__init__(*args, **kwargs)
      self._lr_factor_by_id = dict(lr_multipliers)
      self._lr_factors = []

    def build(self, variables):
      super().build(variables)
      self._lr_factors = [float(self._lr_factor_by_id.get(id(v), 1.0)) for v in variables]

    def _factor(self, variable):
      return self._lr_factors[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
      return super().update_step(gradient, variable, learning_rate * self._factor(variable))

    def _apply_weight_decay(self, variables):
      # TensorFlow's own version (keras/src/backend/tensorflow/optimizer.py) with the variable's LR.
      if self.weight_decay is None:
        return
      import tensorflow as tf  # pylint: disable=g-import-not-at-top

      def apply(distribution, variables, **kwargs):
        for variable in variables:
          factor = self._factor(variable)

          def decay(v, factor=factor):
            if self._use_weight_decay(v):
              v.assign_sub(v * tf.cast(self.weight_decay, v.dtype) * tf.cast(self.learning_rate * factor, v.dtype))

          distribution.extended.update(getattr(variable, "value", variable), decay, group=False)

      tf.__internal__.distribute.interim.maybe_merge_call(apply, self._distribution_strategy, variables)

  PerVariableLR.__name__ = f"{base.__name__}PerVariableLR"
  return PerVariableLR



def steps_per_execution(requested: int, steps_per_epoch: int) -> int:
  """The steps per execution to compile for `requested` when each epoch is `steps_per_epoch` batches of one
  stream (0: the dataset ends at each epoch's end).

  Keras runs whole executions of the stream: with steps_per_epoch given, an epoch of 9 batches at 4 per execution
  runs 12 steps, taking 3 of the next epoch's batches (the last epoch then runs short). A finite dataset ends its
  last execution early instead, so only the stream needs the largest divisor of steps_per_epoch not above
  `requested`.
  """
  if steps_per_epoch <= 0 or requested <= 1:
    return max(requested, 1)
  return max(d for d in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def _callbacks(phase: Phase, *, run_dir: RunDir, monitor: str, patience: int, examples_per_epoch: int,
               steps_per_epoch: int, stop: callbacks_lib.StopRequest, profile_batches=(), extra=()):
  mode = "min" if monitor.endswith("loss") else "max"
  backup_dir = run_dir.backup(phase.name)
  best = callbacks_lib.BestCheckpoint(run_dir.best(phase.name), monitor, mode)
  # The best weights come back from the checkpoint after fit, so EarlyStopping need not restore them.
  stopper = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience) if patience else None
  backup = callbacks_lib.EpochBackup(backup_dir, phase.name, best=best, stopper=stopper, stop=stop)
  callbacks = [
      callbacks_lib.Throughput(examples_per_epoch, steps_per_epoch),  # first, so the loggers after it see its numbers
      callbacks_lib.StopOnNaN(phase, backup_dir),
      best,
      callbacks_lib.LearningRateLogger(),
      keras.callbacks.CSVLogger(str(run_dir.history(phase.name)), append=True),
      (keras.callbacks.TensorBoard(log_dir=str(run_dir.logs(phase.name)), profile_batch=profile_batches)
       if profile_batches else callbacks_lib.EpochTensorBoard(str(run_dir.logs(phase.name)))),
      *([stopper] if stopper else []),
      *extra,
      backup,  # last: it commits the epoch with the state the others reached
  ]
  return callbacks, backup


def run_phase(model: keras.Model, backbone, phase: Phase, *, train_ds, val_ds, steps_per_epoch: int,
              examples_per_epoch: int = 0, train: TrainConfig, run_dir: RunDir, strategy, blocks=None,
              fit_model: keras.Model = None, stop: Optional[callbacks_lib.StopRequest] = None,
              target=None, extra_callbacks=(), class_weight=None) -> PhaseResult:
  """Runs one phase: apply the freezing policy, compile under the strategy, fit, and keep the best weights.

  Args:
    model: the classifier; its weights are left at the phase's best validation epoch.
    backbone: the backbone inside `model`, whose layers the policy freezes.
    phase: what to train and how long.
    train_ds: batched training dataset of (features, one-hot labels), or `train_ds(first, stop)` giving epochs
      first..stop-1 back to back with a fixed order per epoch (see tfft.data.text_batches.per_epoch), which makes a
      resumed phase see the same data order as an uninterrupted one.
    val_ds: batched validation dataset.
    steps_per_epoch: batches per epoch of `train_ds`.
    examples_per_epoch: training examples per epoch, for the throughput log (0: log only the seconds).
    train: the optimiser, schedule and callback settings.
    run_dir: the run directory, for checkpoints and logs.
    strategy: the tf.distribute strategy the model was built under.
    blocks: the backbone's transformer blocks, for top_k freezing.
    fit_model: what to fit when not `model` itself: the head alone, with the datasets holding cached
      pooled features (see tfft.model.heads.split_at_pooling).
    stop: the run's StopRequest (its signal handlers are the caller's to install); default a fresh one.
    target: the run's target (tfft.tasks.api.Target): its loss, compiled metrics and monitor; default
      classification.
    extra_callbacks: more Keras callbacks for the fit (a benchmark's step clock), run before the epoch backup.
    class_weight: class index -> weight of its examples in the loss (--class_weight), or None.

  Returns:
    The phase's parameter counts, epochs run, best monitored value and history (all epochs of the phase, also
    those run before an interruption).

  Raises:
    RunFailed: when the loss becomes NaN (the last finished epoch stays in MODEL_DIR/backup/PHASE).
    Preempted: after SIGTERM or SIGINT, once the epoch in progress is committed, if the phase has epochs left.
    UserError: when a checkpoint cannot be written, or an interrupted run's checkpoint does not fit.
  """
  freezing.apply_freeze(model, backbone, phase.freeze, blocks=blocks)
  trainable = freezing.count_params(model.trainable_weights)
  frozen = freezing.count_params(model.non_trainable_weights)
  logging.info("phase %s: %d epochs at peak LR %g, freeze=%s: %s trainable / %s frozen parameters",
               phase.name, phase.epochs, phase.learning_rate, phase.freeze, f"{trainable:,}", f"{frozen:,}")
  total_steps = (phase.schedule_epochs or phase.epochs) * steps_per_epoch
  lr = schedules.build_schedule(
      train.lr_schedule, peak=phase.learning_rate, total_steps=total_steps,
      warmup_steps=int(math.floor(phase.warmup_fraction * total_steps)), steps_per_epoch=steps_per_epoch,
      decay_rate=train.lr_decay_rate, alpha=train.lr_alpha, restart_epochs=train.lr_restart_epochs)
  if phase.offset_epochs:
    lr = schedules.StartAt(lr, phase.offset_epochs * steps_per_epoch)
  fit_model = fit_model or model
  if target is None:
    target = registry.target(registry.DEFAULT_KIND)
  monitor = target.monitor(train.monitor)
  per_execution = steps_per_execution(train.steps_per_execution, steps_per_epoch if callable(train_ds) else 0)
  if per_execution != train.steps_per_execution:
    logging.warning("phase %s: --steps_per_execution=%d does not divide its %d steps per epoch; running %d steps "
                    "per execution, the largest that does, so that every epoch ends where its data does",
                    phase.name, train.steps_per_execution, steps_per_epoch, per_execution)
  multipliers = (freezing.layer_decay_multipliers(backbone, blocks, train.layer_decay)
                 if train.layer_decay < 1.0 and phase.freeze.kind != "all" else None)
  with strategy.scope():
    fit_model.compile(
        optimizer=build_optimizer(train, lr, multipliers), loss=target.loss(train), metrics=target.keras_metrics(),
        weighted_metrics=target.weighted_metrics(),
        jit_compile=train.jit_compile, steps_per_execution=per_execution)
  run_dir.best(phase.name).parent.mkdir(parents=True, exist_ok=True)
  stop = stop or callbacks_lib.StopRequest()
  callbacks, backup = _callbacks(phase, run_dir=run_dir, monitor=monitor,
                                 patience=train.early_stopping_patience if phase.patience is None else phase.patience,
                                 examples_per_epoch=examples_per_epoch,
                                 steps_per_epoch=steps_per_epoch,
                                 stop=stop, profile_batches=train.profile_batches, extra=extra_callbacks)
  with strategy.scope():
    first = backup.restore(fit_model)
  callbacks_lib.truncate_history(run_dir.history(phase.name), first)
  if first:
    logging.info("phase %s: resuming after epoch %d of %d from %s", phase.name, first, phase.epochs,
                 backup.directory)
  if first < phase.epochs and not backup.state.get("stopped"):
    per_epoch = callable(train_ds)
    local = (lambda: train_ds(first, phase.epochs)) if per_epoch else (lambda: train_ds)
    data = distribute.split_global_batches(strategy, local) if per_epoch else train_ds
    distribute.build_for_multi_worker(fit_model, strategy, lambda: next(iter(local())))
    fit_model.fit(
        data, validation_data=val_ds, epochs=phase.epochs,
        initial_epoch=first, steps_per_epoch=steps_per_epoch if per_epoch else None,
        shuffle=False, class_weight=class_weight,  # train_ds shuffles itself
        callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
    if backup.state["epoch"] < phase.epochs and not backup.state.get("stopped"):
      # A finished phase goes on to its boundary commit; the job checks the request there.
      stop.check(f"after epoch {backup.state['epoch']} of {phase.epochs} of phase {phase.name}, checkpointed in "
                 f"{backup.directory}")
  values = backup.history.get(monitor, [])
  if run_dir.best(phase.name).exists():
    weights_io.load_weights(fit_model, run_dir.best(phase.name))
  best = (min(values) if monitor.endswith("loss") else max(values)) if values else None
  return PhaseResult(phase.name, trainable, frozen, len(backup.history.get("loss", [])), monitor, best,
                     {k: list(vs) for k, vs in backup.history.items()}, freeze=str(phase.freeze))
