"""--task=pairs: one class per pair of texts."""

from typing import Tuple

from tfft.config import Config, DataConfig, split_dataset_spec
from tfft.errors import UserError
from tfft.model import decoder_backbones
from tfft.tasks.api import TaskSpec
from tfft.tasks.pooled.gates import (CLASSIFICATION_GATES, CLASSIFICATION_LOSSES, CLASSIFICATION_MONITORS,
                                     CLASSIFICATION_OPTIONS, check_decision)

# The built-in dataset this package reads (tfft.tasks.pairs.data).
SOURCES = {"bbc_pairs": "text"}


def pair_columns(data: DataConfig) -> Tuple[str, ...]:
  """The two columns holding a pair's texts, from --pair_columns or --text_column=A,B."""
  if data.pair_columns:
    return tuple(data.pair_columns)
  return tuple(c.strip() for c in data.text_column.split(",")) if "," in data.text_column else ()


def _fail(flag: str, value, fix: str):
  raise UserError(f"--{flag}={value!r}: {fix}")


def check(config: Config) -> None:
  """An encoder backbone, two text columns, and no windows (a pair is read once, shared between its texts)."""
  d, m = config.data, config.model
  check_decision(config)
  if decoder_backbones.is_decoder(m.backbone):
    _fail("backbone", m.backbone, "--task=pairs packs two segments as an encoder does; decoder backbones classify "
          "one text (--task=classify or regress): use an encoder for pairs")
  columns = pair_columns(d)
  if split_dataset_spec(d.dataset, SOURCES)[0] == "csv" and len(columns) != 2:
    _fail("pair_columns" if d.pair_columns else "text_column", ",".join(d.pair_columns) or d.text_column,
          "--task=pairs reads two text columns: give them as --pair_columns=A,B or --text_column=A,B")
  if d.pair_columns and "," in d.text_column:
    _fail("text_column", d.text_column, "give the pair's columns once, as --pair_columns=A,B or --text_column=A,B")
  if any(not c or c != c.strip() for c in columns):
    _fail("pair_columns", ",".join(columns), "must name two columns, without surrounding spaces")
  for flag, value in (("eval_windows", m.eval_windows), ("train_windows", m.train_windows)):
    if value != 1:
      _fail(flag, value, "--task=pairs reads the first --sequence_length tokens of each pair, shared fairly "
            "between its two texts; drop it")

SPEC = TaskSpec(
    name="pairs", modalities=("text",), datasets=("bbc_pairs",), sources=SOURCES,
    monitors=CLASSIFICATION_MONITORS, gates=CLASSIFICATION_GATES, losses=CLASSIFICATION_LOSSES,
    options=("pair_columns",) + CLASSIFICATION_OPTIONS,
    defaults={}, check=check, module="tfft.tasks.pairs.task")
