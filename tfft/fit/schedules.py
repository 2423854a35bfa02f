"""Learning-rate schedules from keras.optimizers.schedules, with a linear warmup in front."""

import keras

from tfft.errors import UserError


@keras.saving.register_keras_serializable(package="tfft")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
  """Ramps linearly up to the peak over `warmup_steps` (step s gets peak * (s + 1) / warmup_steps, so no step
  has LR 0), then follows `after` shifted by the warmup.

  Keras has warmup only inside CosineDecay; this gives every schedule the same warmup. It keys on the
  optimizer's step, so a resumed run continues where it stopped.
  """

  def __init__(self, peak: float, warmup_steps: int, after):
    super().__init__()
    self.peak = peak
    self.warmup_steps = warmup_steps
    self.after = after

  def __call__(self, step):
    step = keras.ops.cast(step, "float32")
    warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
    decayed = self.after(keras.ops.maximum(step - self.warmup_steps, 0.0))
    return keras.ops.where(step < self.warmup_steps, warm, decayed)

  def get_config(self):
    return {"peak": self.peak, "warmup_steps": self.warmup_steps,
            "after": keras.optimizers.schedules.serialize(self.after)}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["after"] = keras.optimizers.schedules.deserialize(config["after"])
    return cls(**config)


@keras.saving.register_keras_serializable(package="tfft")
class StartAt(keras.optimizers.schedules.LearningRateSchedule):
  """`schedule` from step `offset` on: the stages of --unfreeze=gradual, each its own fit and optimizer, follow one
  schedule over the whole of phase 2."""

  def __init__(self, schedule, offset: int):
    super().__init__()
    self.schedule = schedule
    self.offset = offset

  def __call__(self, step):
    return self.schedule(keras.ops.cast(step, "float32") + float(self.offset))

  def get_config(self):
    return {"schedule": keras.optimizers.schedules.serialize(self.schedule), "offset": self.offset}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["schedule"] = keras.optimizers.schedules.deserialize(config["schedule"])
    return cls(**config)


def build_schedule(kind: str, *, peak: float, total_steps: int, warmup_steps: int, steps_per_epoch: int,
                   decay_rate: float = 0.5, alpha: float = 0.0, restart_epochs: int = 1):
  """Builds one phase's LR schedule.

  Args:
    kind: constant | exponential | cosine | cosine_restarts | linear.
    peak: LR reached after warmup.
    total_steps: optimizer steps in the phase, warmup included.
    warmup_steps: steps of linear warmup up to `peak`.
    steps_per_epoch: optimizer steps per epoch (exponential decays by `decay_rate` per epoch).
    decay_rate: exponential: LR factor per epoch.
    alpha: cosine, cosine_restarts, linear: final LR as a fraction of `peak`.
    restart_epochs: cosine_restarts: length of the first cycle in epochs.

  Returns:
    A float or a keras LearningRateSchedule.
  """
  schedules = keras.optimizers.schedules
  decay_steps = max(total_steps - warmup_steps, 1)
  if kind == "constant":
    after = schedules.PolynomialDecay(peak, decay_steps, end_learning_rate=peak)
  elif kind == "exponential":
    after = schedules.ExponentialDecay(peak, decay_steps=max(steps_per_epoch, 1), decay_rate=decay_rate)
  elif kind == "cosine":
    after = schedules.CosineDecay(peak, decay_steps, alpha=alpha)
  elif kind == "cosine_restarts":
    after = schedules.CosineDecayRestarts(peak, first_decay_steps=max(restart_epochs * steps_per_epoch, 1),
                                          alpha=alpha)
  elif kind == "linear":
    after = schedules.PolynomialDecay(peak, decay_steps, end_learning_rate=peak * alpha, power=1.0)
  else:
    raise UserError(f"--lr_schedule={kind!r}: use constant, exponential, cosine, cosine_restarts or linear")
  if warmup_steps <= 0:
    return after
  return LinearWarmup(peak, warmup_steps, after)
