"""The one run setup that train, lr_find, curve, search and re-export share: the kind's task, its examples split and
encoded, then the model built, adapted (LoRA), its phases planned and checked against it, and the class weights."""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
from absl import logging

from tfft import rundir
from tfft.config import Config
from tfft.data import split as split_lib
from tfft.errors import UserError
from tfft.fit import recipe
from tfft.model import freezing, lora
from tfft.report import threshold as threshold_lib
from tfft.tasks import registry
from tfft.tasks.api import Built, Targets


@dataclasses.dataclass(frozen=True)
class RunInputs:
  """A run's task and data.

  Attributes:
    task: the kind's Task (tfft.tasks.api.Task), built complete from the config.
    examples: the examples --dataset names.
    targets: their labels as the target encodes them, fitted on the train split.
    split: the split (tfft.data.split.Split: indices and what shaped them).
  """
  task: object
  examples: object
  targets: Targets
  split: split_lib.Split


@dataclasses.dataclass(frozen=True)
class RunModel:
  """A run's model, ready for its phases.

  Attributes:
    built: the model, its backbone and blocks (tfft.tasks.api.Built).
    phases: the planned phases (tfft.fit.recipe.Phase), each freezing policy checked against the model.
    lora_targets: the layers given LoRA adapters (empty without --lora_rank).
    class_weight: --class_weight as Keras' fit takes it, or None.
  """
  built: Built
  phases: List[recipe.Phase]
  lora_targets: Tuple[str, ...]
  class_weight: Optional[Dict[int, float]]


def load_inputs(config: Config, *, manifest=None, names: Optional[Sequence[str]] = None) -> RunInputs:
  """Builds the task, loads and encodes the examples and splits them.

  Args:
    config: a validated config.
    manifest: a finished run's split manifest (rundir.Run.manifest) to reuse instead of splitting afresh (re-export).
    names: the run's labels.txt, to encode the labels in its order (re-export).

  Raises:
    UserError: for bad data, a gate or --threshold the data cannot have, or a dataset that no longer matches the
      manifest.
  """
  task = registry.build_task(config)
  examples = task.load_examples()
  targets = task.encode(examples, names=names)
  if manifest is not None:
    where = f"--dataset={config.data.dataset}"
    indices = {s: rundir.select_split(manifest, examples.ids, s, where=where) for s in rundir.SPLITS}
    split = split_lib.Split(indices, None, {})
  else:
    task.target.check_gates(config.report.min_metric, targets)
    check_threshold(config, targets.names)
    splitter = ((lambda groups: task.target.split(targets, config.data, seed=config.train.seed, groups=groups))
                if task.target.own_split else None)  # multi-label and tagging stratify their own way
    split = split_lib.split_examples(examples, config.data, seed=config.train.seed, strata=targets.strata,
                                     splitter=splitter)
  targets = task.target.fit(targets, split.indices["train"])
  logging.info("%d examples (%s: %s) from %s; split %s", len(examples), config.data.task,
               task.target.log_line(targets), examples.source,
               {name: len(indices) for name, indices in split.indices.items()})
  return RunInputs(task, examples, targets, split)


def build_model(config: Config, inputs: RunInputs, strategy) -> RunModel:
  """Builds the model under `strategy` with the run's seed, turns on LoRA, plans the phases and applies each phase's
  freezing once, so that a bad --freeze fails now and not after phase 1; then the class weights.

  Raises:
    UserError: for a freezing policy the backbone cannot take, LoRA targets it does not have, or a bad
      --class_weight file.
  """
  t, targets = config.train, inputs.targets
  keras.utils.set_random_seed(t.seed)
  built = inputs.task.build_model(targets.width, strategy)  # under strategy.scope()
  lora_targets = ()
  if t.lora_rank:
    lora_targets = lora.enable_lora(built.backbone, rank=t.lora_rank, alpha=t.lora_alpha, targets=t.lora_targets,
                                    backbone_flag=config.model.backbone, strategy=strategy)
  phases = recipe.plan_phases(t, num_blocks=len(built.blocks) if built.blocks else None)
  for phase in phases:
    freezing.apply_freeze(built.model, built.backbone, phase.freeze, blocks=built.blocks)
  # --class_weight is a kind-only option: "none" on the kinds that do not read it.
  weights = recipe.class_weights(t.class_weight, targets.values[np.asarray(inputs.split.indices["train"])],
                                 targets.names)
  return RunModel(built, phases, tuple(lora_targets or ()), weights)


def check_threshold(config: Config, class_names):
  """--threshold decides between two classes: an error, before anything is written, on more.

  Raises:
    UserError: for --threshold on a run of more than two classes, or --positive_class naming no class.
  """
  r = config.report
  if r.threshold == threshold_lib.ARGMAX:
    return
  if len(class_names) != 2:
    raise UserError(f"--threshold={r.threshold}: a decision threshold needs two classes and this run has "
                    f"{len(class_names)}; drop --threshold (argmax picks the likeliest class)")
  threshold_lib.positive_index(class_names, r.positive_class)
