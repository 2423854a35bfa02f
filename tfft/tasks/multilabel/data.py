"""Multi-label examples: label sets from a separated label column or from one 0/1 column per label, the built-in
WNUT-16 entity-type sets, and the split stratified by iterative stratification."""

import dataclasses
import pathlib
from typing import Dict, List, Sequence, Tuple

import numpy as np

from tfft.data import text as text_data
from tfft.data import tagging
from tfft.data.text import natural_key
from tfft.errors import UserError

# An example's labels joined into one string (the split manifest's label column, the labels the split reads).
JOIN = "|"


@dataclasses.dataclass(frozen=True)
class MultiLabelExamples:
  """Inputs (texts, or image paths) with a set of labels each; `indicators` is [N, L] 0/1 over `label_names`."""
  inputs: List
  indicators: np.ndarray
  label_names: Tuple[str, ...]
  ids: List[str]
  source: str

  def __len__(self):
    return len(self.inputs)

  @property
  def texts(self):
    return self.inputs


def label_names_of(sets: Sequence[Sequence[str]]) -> Tuple[str, ...]:
  return tuple(sorted({label for labels in sets for label in labels}, key=natural_key))


def indicators_of(sets: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
  index = {name: j for j, name in enumerate(names)}
  y = np.zeros((len(sets), len(names)), np.float32)
  for i, labels in enumerate(sets):
    y[i, [index[label] for label in labels]] = 1.0
  return y


def split_label_sets(values: Sequence[str], ids: Sequence[str], *, separator: str, flag: str) -> List[Tuple[str, ...]]:
  """Splits each label cell at `separator` ("a|b" -> ("a", "b")); blanks around labels are dropped.

  Raises:
    UserError: naming the row for a cell with no label: an empty cell reads the same as a missing value, so an
      example with no label is written with one 0/1 column per label, all 0.
  """
  sets = []
  for value, example_id in zip(values, ids):
    labels = tuple(dict.fromkeys(part.strip() for part in str(value).split(separator) if part.strip()))
    if not labels:
      raise UserError(f"{flag}: example {example_id} has an empty label set ({value!r}); give it at least one "
                      f"label separated by {separator!r} (--label_separator), or use one 0/1 column per label "
                      "(--label_columns) where all 0 means no label")
    sets.append(labels)
  return sets


def indicator_table(rows: Sequence[Dict], columns: Sequence[str], ids: Sequence[str], *, flag: str) -> np.ndarray:
  """[N, L] from one 0/1 column per label.

  Raises:
    UserError: naming the column, or the row and column for a value other than 0 or 1.
  """
  missing = [c for c in columns if rows and c not in rows[0]]
  if missing:
    raise UserError(f"{flag}: --label_columns names {', '.join(map(repr, missing))}, which the file lacks; it has "
                    f"{', '.join(map(repr, rows[0]))}")
  y = np.zeros((len(rows), len(columns)), np.float32)
  for i, (row, example_id) in enumerate(zip(rows, ids)):
    for j, column in enumerate(columns):
      value = str(row.get(column, "")).strip().lower()
      if value not in ("0", "1", "0.0", "1.0", "true", "false"):
        raise UserError(f"{flag}: example {example_id}, column {column!r} holds {row.get(column)!r}; "
                        "--label_columns must hold 0 or 1")
      y[i, j] = value in ("1", "1.0", "true")
  return y


def load_wnut16_types() -> MultiLabelExamples:
  """WNUT-16's tweets, each labelled with the set of entity types its human annotations mention (maybe none)."""
  tagged = tagging.load_tagged("wnut16")
  sets = [tagging.entity_types(tags) for tags in tagged.tags]
  names = label_names_of(sets)
  return MultiLabelExamples(tagged.texts, indicators_of(sets, names), names, tagged.ids, tagged.source)


def load_table_multilabel(path: pathlib.Path, flag: str, *, text_column: str, label_column: str,
                          label_columns: Sequence[str], separator: str) -> MultiLabelExamples:
  """Texts with label sets from a .csv/.tsv/.jsonl file: `label_columns` (0/1 each) if given, else `label_column`.

  Raises:
    UserError: for a missing file or column, an empty label set, or a 0/1 column holding something else.
  """
  if label_columns:
    rows = text_data._read_table(path, flag) if path.is_file() else None  # pylint: disable=protected-access
    if rows is None:
      raise UserError(f"{flag}: {path} does not exist")
    if rows and text_column not in rows[0]:
      raise UserError(f"{flag}: no column {text_column!r} (--text_column); it has {', '.join(map(repr, rows[0]))}")
    ids = [f"row:{i}" for i in range(1, len(rows) + 1)]
    y = indicator_table(rows, label_columns, ids, flag=flag)
    return MultiLabelExamples([str(r[text_column]) for r in rows], y, tuple(label_columns), ids, str(path))
  examples = text_data.load_table(path, flag, text_column=text_column, label_column=label_column)
  sets = split_label_sets(examples.labels, examples.ids, separator=separator, flag=flag)
  names = label_names_of(sets)
  return MultiLabelExamples(examples.texts, indicators_of(sets, names), names, examples.ids, examples.source)


def load_text_examples(data):
  """The texts and label sets --dataset names, as tfft.data.text.Examples whose labels are the sets joined by
  JOIN (the split manifest's label column): wnut16_types, or csv:PATH with
  --label_column (labels separated by --label_separator) or --label_columns (one 0/1 column per label).

  Raises:
    UserError: for a bad source or column, an empty text, an empty label set in --label_column, or a label name
      holding the separator tfft joins labels with.
  """
  flag = f"--dataset={data.dataset}"
  if data.dataset == "wnut16_types":
    loaded = load_wnut16_types()
  else:
    kind, _, path = data.dataset.partition(":")
    if kind != "csv" or not path:
      raise UserError(f"{flag}: --task=multilabel reads wnut16_types (built in) or csv:PATH (.csv, .tsv, .jsonl) "
                      "with --label_column (labels separated by --label_separator) or --label_columns")
    loaded = load_table_multilabel(pathlib.Path(path).expanduser(), flag, text_column=data.text_column,
                                   label_column=data.label_column, label_columns=data.label_columns,
                                   separator=data.label_separator)
  clash = [name for name in loaded.label_names if JOIN in name]
  if clash:
    raise UserError(f"{flag}: label {clash[0]!r} holds {JOIN!r}, which tfft joins an example's labels with; "
                    "rename the label")
  for text, example_id in zip(loaded.inputs, loaded.ids):
    if not str(text).strip():
      raise UserError(f"{flag}: example {example_id} has an empty text; remove it or fill it in")
  labels = [JOIN.join(name for name, on in zip(loaded.label_names, row) if on) for row in loaded.indicators]
  examples = text_data.Examples(list(loaded.inputs), labels, list(loaded.ids), loaded.source)
  if data.max_examples:
    examples = examples.take(range(min(data.max_examples, len(examples))))
  return examples


def join_image_labels(examples, *, separator: str, flag: str):
  """Image examples whose label column holds label sets: each label rewritten as its set joined by JOIN.

  Raises:
    UserError: naming the example for an empty label set.
  """
  sets = split_label_sets(examples.labels, examples.ids, separator=separator, flag=flag)
  return dataclasses.replace(examples, labels=[JOIN.join(s) for s in sets])
