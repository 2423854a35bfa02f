"""The kinds of task, one line each, and what the core asks of them by name: specs, validation, tasks, targets.

Importing this module imports no TensorFlow: the specs are declarations. A kind's Task and Target (its `task`
module) load only when a run builds them.
"""

import dataclasses
from typing import Dict, Tuple

from tfft import config_checks
from tfft.config import SECTIONS, Config, modality, options, split_dataset_spec
from tfft.errors import UserError
from tfft.tasks.api import TaskSpec
from tfft.tasks.classify import spec as classify
from tfft.tasks.generate import spec as generate
from tfft.tasks.multilabel import spec as multilabel
from tfft.tasks.pairs import spec as pairs
from tfft.tasks.regress import spec as regress
from tfft.tasks.tag import spec as tag

# --task -> its spec, in the order --help and the errors list them.
KINDS: Dict[str, TaskSpec] = {
    "classify": classify.SPEC,
    "pairs": pairs.SPEC,
    "regress": regress.SPEC,
    "multilabel": multilabel.SPEC,
    "tag": tag.SPEC,
    "generate": generate.SPEC,
}
# Exports written before tfft.json named its target are classifiers.
DEFAULT_KIND = "classify"


def spec(name: str) -> TaskSpec:
  """The spec of --task=NAME.

  Raises:
    UserError: for an unknown name, listing the known ones.
  """
  if name not in KINDS:
    raise UserError(f"--task={name!r} is not a kind of task: use one of {', '.join(KINDS)}")
  return KINDS[name]


def build_task(config: Config):
  """The Task of the config's --task, built complete (tfft.tasks.api.Task).

  Raises:
    UserError: for a backbone that does not suit the dataset, or a size or weights path that cannot work.
  """
  return spec(config.data.task).load().build(config)


def target(name: str):
  """The Target of --task=NAME (tfft.json's "target" of an export; DEFAULT_KIND for exports without it)."""
  return spec(name).load().TARGET


def kinds_reading(option: str) -> Tuple[str, ...]:
  """The kinds whose spec lists a kind-only option."""
  return tuple(name for name, s in KINDS.items() if option in s.options)


def sources() -> Dict[str, str]:
  """The kinds' own built-in datasets and schemes, with their modality (TaskSpec.sources)."""
  return {name: value for s in KINDS.values() for name, value in s.sources.items()}


def gate_names() -> Tuple[str, ...]:
  """Every metric some kind's report can gate on, in the kinds' order."""
  return tuple(dict.fromkeys(name for s in KINDS.values() for name in s.gates))


def with_defaults(config: Config, given) -> Config:
  """The config with its kind's flag defaults (TaskSpec.defaults) where `given(name)` says the flag was not given."""
  defaults = {name: value for name, value in spec(config.data.task).defaults.items() if not given(name)}
  if not defaults:
    return config
  sections = {section: {} for section in SECTIONS}
  for section, field in options():
    if field.name in defaults:
      sections[section][field.name] = defaults[field.name]
  return Config(**{section: dataclasses.replace(getattr(config, section), **values)
                   for section, values in sections.items()})


def _fail(flag: str, value, fix: str):
  raise UserError(f"--{flag}={value!r}: {fix}")


def validate(config: Config) -> Config:
  """Every check of a config: the generic ones (tfft.config_checks), then its kind's against the dataset, the
  kind-only options, the loss, the monitor and the gates, then the kind's own (TaskSpec.check). TensorFlow-free.

  Returns:
    The same config, so calls can chain.

  Raises:
    UserError: naming the first bad flag, the value it got and what it accepts.
  """
  d, t = config.data, config.train
  kind = spec(d.task)
  own = sources()
  config_checks.validate(config, gate_names=gate_names(), sources=own)
  data_modality = modality(d, own)
  if data_modality not in kind.modalities:
    _fail("task", d.task, f"applies to {' and '.join(kind.modalities)} datasets only, and --dataset={d.dataset} "
          f"holds {'images' if data_modality == 'image' else 'texts'}")
  made_for = next((name for name, s in KINDS.items() if split_dataset_spec(d.dataset, own)[0] in s.datasets), None)
  if made_for and made_for != d.task:
    _fail("task", d.task, f"--dataset={d.dataset} is a --task={made_for} dataset; pass --task={made_for} or "
          "another dataset")
  for section, field in options():
    value = getattr(getattr(config, section), field.name)
    if field.metadata["kind_only"] and field.name not in kind.options and value != field.default:
      readers = kinds_reading(field.name)
      _fail(field.name, value, f"applies to --task={' or --task='.join(readers)} only; drop it for --task={d.task}")
  if t.loss not in kind.losses:
    _fail("loss", t.loss, f"--task={d.task} trains with {' or '.join(kind.losses[1:])} (auto: {kind.losses[1]})")
  if t.monitor != "auto" and t.monitor not in kind.monitors:
    _fail("monitor", t.monitor, f"--task={d.task} reports {', '.join(kind.monitors)} on validation; use one of them "
          "or auto")
  if "pair_columns" not in kind.options and "," in d.text_column:
    _fail("text_column", d.text_column, f"names one column; two columns (A,B) are for "
          f"--task={' or --task='.join(kinds_reading('pair_columns'))}")
  kind.check(config)
  return config
