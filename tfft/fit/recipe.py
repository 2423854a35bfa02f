"""The fine-tuning recipe as pure functions of the config and the data: the phase plan, the optimiser, the padding.

Nothing here trains or reads flags; the job computes these up front and passes them on.
"""

import dataclasses
import json
import math
import pathlib
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfft.config import Freeze, TrainConfig
from tfft.errors import UserError


@dataclasses.dataclass(frozen=True)
class Phase:
  """One `fit`: its epochs, peak LR, warmup and which backbone weights train."""
  name: str  # "head" or "finetune"
  epochs: int
  learning_rate: float
  warmup_fraction: float
  freeze: Freeze
  # A stage of --unfreeze=gradual follows phase 2's one schedule: it spans schedule_epochs (0: this phase's
  # epochs) and this phase starts offset_epochs into it.
  schedule_epochs: int = 0
  offset_epochs: int = 0
  patience: Optional[int] = None  # early stopping's patience in epochs (None: --early_stopping_patience)


def fit_to_data(phases: Sequence[Phase], train: TrainConfig, steps_per_epoch: int) -> List[Phase]:
  """The plan with the head phase stretched to --head_min_steps optimizer steps on a small training set.

  With 20 examples at batch 32 an epoch is one step, so --head_epochs=10 would stop the head far from converged;
  the head phase instead runs ceil(head_min_steps / steps_per_epoch) epochs, and its early stopping waits a tenth
  of them (at least --early_stopping_patience), so one noisy validation epoch does not end it. Other phases, and a
  head phase that already takes enough steps, are unchanged.
  """
  out = []
  for phase in phases:
    if phase.name == "head" and train.head_min_steps and phase.epochs * steps_per_epoch < train.head_min_steps:
      epochs = math.ceil(train.head_min_steps / max(steps_per_epoch, 1))
      patience = (max(train.early_stopping_patience, math.ceil(epochs / 10))
                  if train.early_stopping_patience else 0)
      phase = dataclasses.replace(phase, epochs=epochs, patience=patience)
    out.append(phase)
  return out


def plan_phases(train: TrainConfig, num_blocks: Optional[int] = None) -> List[Phase]:
  """Phase 1 trains the head on a frozen backbone; phase 2 unfreezes per --freeze at a lower LR with warmup.

  With --unfreeze=gradual, phase 2 is stages unfreeze_1, unfreeze_2, ... of --unfreeze_every epochs: stage s trains
  the top s blocks, and once every block trains, the whole backbone (embeddings too). Each is its own fit, committed
  like a phase, so a run resumes at any epoch of any stage. Stage names depend on the epochs only; `num_blocks`
  (None: unknown) says where the top_k stages end.
  """
  phases = []
  if train.head_epochs:
    phases.append(Phase("head", train.head_epochs, train.head_learning_rate, 0.0, Freeze("all")))
  if train.epochs and train.unfreeze == "gradual":
    every = train.unfreeze_every
    for s in range(math.ceil(train.epochs / every)):
      k = s + 1
      freeze = Freeze("top_k", k) if num_blocks is None or k <= num_blocks else Freeze("none")
      phases.append(Phase(f"unfreeze_{k}", min(every, train.epochs - s * every), train.learning_rate,
                          train.warmup_fraction, freeze, schedule_epochs=train.epochs, offset_epochs=s * every))
  elif train.epochs:
    # Without a head phase the head starts random, so phase 2 gets the warmup either way.
    phases.append(Phase("finetune", train.epochs, train.learning_rate, train.warmup_fraction, train.freeze))
  return phases


def class_weights(spec: str, train_labels: np.ndarray, class_names: Sequence[str]) -> Optional[Dict[int, float]]:
  """--class_weight as Keras' fit takes it: class index -> weight, or None for none.

  balanced is n / (classes x n_class) over the training labels (scikit-learn's "balanced"); a file is JSON
  {"class name": weight}, classes it leaves out weighing 1.

  Raises:
    UserError: for a file that is not such JSON, names a class the data does not have, or a weight <= 0.
  """
  if spec == "none":
    return None
  if spec == "balanced":
    counts = np.bincount(np.asarray(train_labels), minlength=len(class_names))
    return {i: (float(len(train_labels)) / (len(class_names) * int(c)) if c else 1.0) for i, c in enumerate(counts)}
  path = pathlib.Path(spec).expanduser()
  try:
    given = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise UserError(f"--class_weight={spec}: cannot read it as JSON ({str(e).splitlines()[0][:80]}); write "
                    '{"class name": weight, ...}') from None
  if not isinstance(given, dict):
    raise UserError(f'--class_weight={spec}: must be a JSON object {{"class name": weight, ...}}')
  unknown = sorted(set(given) - set(class_names))
  if unknown:
    raise UserError(f"--class_weight={spec}: names {', '.join(map(repr, unknown))}, not a class of this dataset; "
                    f"its classes are {', '.join(class_names)}")
  weights = {}
  for i, name in enumerate(class_names):
    value = given.get(name, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
      raise UserError(f"--class_weight={spec}: the weight of {name!r} is {value!r}; weights must be numbers > 0")
    weights[i] = float(value)
  return weights


def method_lines(train: TrainConfig, *, lora_targets: Sequence[str] = (), class_weight=None,
                 class_names: Sequence[str] = ()) -> List[str]:
  """The fine-tuning methods a run uses beyond the default recipe, one line each (summary, model card)."""
  lines = []
  if train.lora_rank:
    lines.append(f"lora:     rank {train.lora_rank}, alpha {train.lora_alpha or train.lora_rank:g} on "
                 f"{', '.join(lora_targets or train.lora_targets) or 'the backbone default'}; the export has them "
                 "merged into the base weights")
  if train.layer_decay < 1.0:
    lines.append(f"layer decay: {train.layer_decay:g} (phase 2: the head at --learning_rate, block i from the top "
                 f"at LR x {train.layer_decay:g}^i, the embeddings lowest)")
  if train.loss == "focal":
    lines.append(f"loss:     focal (Keras' CategoricalFocalCrossentropy), gamma {train.focal_gamma:g}")
  if class_weight:
    lines.append(f"class weights: {train.class_weight if train.class_weight in ('balanced',) else 'from ' + train.class_weight}: "
                 + ", ".join(f"{name} {class_weight[i]:.3g}" for i, name in enumerate(class_names)))
  if train.unfreeze == "gradual":
    lines.append(f"unfreeze: gradual, one more block from the top every {train.unfreeze_every} epoch(s), then the "
                 "embeddings (stages unfreeze_1, unfreeze_2, ...)")
  return lines
