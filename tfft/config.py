"""Frozen run configuration and its validation; imports neither absl nor TensorFlow."""

import dataclasses
import math
import re
from typing import Optional, Sequence, Tuple

from tfft.errors import UserError

POOLINGS = ("auto", "cls", "mean")
OPTIMIZERS = ("adamw", "adam", "sgd")
LR_SCHEDULES = ("constant", "exponential", "cosine", "cosine_restarts", "linear")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
MONITORS = ("val_accuracy", "val_loss")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
PADDINGS = ("auto", "fixed", "dynamic", "bucket")
BASELINES = ("auto", "none")
# Every scalar the report holds, so --min_metric can gate on any of them. All lie in [0, 1]. top_k needs more than k
# classes; roc_auc and pr_auc are reported for binary tasks only.
TOP_K = (2, 3, 5)
GATE_METRICS = (("accuracy",) + tuple(f"top_{k}_accuracy" for k in TOP_K)
                + tuple(f"{a}_{m}" for a in ("micro", "macro", "weighted") for m in ("precision", "recall", "f1"))
                + ("roc_auc", "pr_auc"))
BN_POLICIES = ("frozen", "train")
ON_BAD_FILE = ("skip", "fail")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
BACKBONE_WEIGHTS_HELP = "imagenet, none, or a path to a .weights.h5 / .keras file"

_DATASET_SCHEMES = ("textdir", "csv", "imagedir", "tfds")
_BUILTIN_DATASETS = ("bbc_news", "digits")
# Sources whose examples are images; csv: holds images when --image_column is set.
_IMAGE_KINDS = ("imagedir", "tfds", "digits")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the examples come from and how they are split."""
  dataset: str = "bbc_news"
  text_column: str = "text"
  label_column: str = "label"
  val_fraction: float = 0.1
  test_fraction: float = 0.2
  examples_per_class: int = 0  # 0 keeps every example.
  train_examples_per_class: int = 0  # 0 keeps the whole train split.
  classes: Tuple[str, ...] = ()  # empty keeps every class.
  image_column: str = ""  # csv: set -> the column holds image paths.
  on_bad_file: str = "skip"
  allow_external_paths: bool = False  # image tables: paths may leave the table's folder
  tfds_data_dir: str = ""
  tfds_split: str = "train"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The backbone and the new head on top of it."""
  backbone: str = "minilm-l6"
  sequence_length: int = 128
  eval_windows: int = 1
  train_windows: int = 1
  pooling: str = "auto"
  head_units: Tuple[int, ...] = ()
  dropout: float = 0.1
  l1: float = 0.0
  l2: float = 0.0
  # Images.
  image_size: int = 0  # 0: the backbone's default.
  backbone_weights: str = "imagenet"
  bn: str = "frozen"
  flip: str = "none"
  rotation: float = 0.0
  zoom: float = 0.0
  translation: float = 0.0
  contrast: float = 0.0

  @property
  def augments(self) -> bool:
    return self.flip != "none" or any((self.rotation, self.zoom, self.translation, self.contrast))


@dataclasses.dataclass(frozen=True)
class Freeze:
  """Which backbone weights train in the fine-tuning phase: all, none, the top k blocks, or from a named layer on."""
  kind: str  # "all" | "none" | "top_k" | "from_layer"
  k: int = 0
  layer: str = ""

  def __str__(self):
    if self.kind == "top_k":
      return f"top_k:{self.k}"
    if self.kind == "from_layer":
      return f"from_layer:{self.layer}"
    return self.kind


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The two phases (head, then fine-tune), the optimiser and the LR schedule."""
  batch_size: int = 32
  head_epochs: int = 2
  head_learning_rate: float = 1e-3
  epochs: int = 3
  learning_rate: float = 5e-5
  warmup_fraction: float = 0.1
  cache_features: bool = True
  freeze: Freeze = Freeze("none")
  optimizer: str = "adamw"
  weight_decay: float = 0.01
  momentum: float = 0.9
  clipnorm: float = 1.0
  lr_schedule: str = "linear"
  lr_decay_rate: float = 0.5
  lr_alpha: float = 0.0
  lr_restart_epochs: int = 1
  label_smoothing: float = 0.0
  monitor: str = "val_accuracy"
  early_stopping_patience: int = 2
  strategy: str = "auto"
  tpu: str = ""
  worker_hosts: Tuple[str, ...] = ()  # multi_worker_mirrored: host:port of every worker, chief first
  task_index: int = 0
  seed: int = 42
  # Speed: none of these changes results beyond float round-off, except mixed precision and --padding=bucket
  # (which regroups batches by length).
  mixed_precision: str = "float32"
  jit_compile: bool = False
  steps_per_execution: int = 1
  padding: str = "auto"  # fixed or dynamic, from the texts' lengths (tfft.data.tensors.auto_padding)
  pad_to_multiple_of: int = 16
  profile_batches: Tuple[int, ...] = ()  # (first, last) training batches of each phase to trace; () traces none


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Where the run writes: its model dir and the export base dir."""
  model_dir: str = "runs/tfft"
  export_dir: str = "saved_models"
  name: str = "tfft"
  overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """What is measured beside the model, what it must reach to be exported, and what the export carries."""
  baseline: str = "auto"
  min_metric: Tuple[Tuple[str, float], ...] = ()  # (metric, lowest allowed value) pairs
  warmup: bool = True


@dataclasses.dataclass(frozen=True)
class Config:
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  run: RunConfig = RunConfig()
  report: ReportConfig = ReportConfig()


def parse_freeze(value: str) -> Freeze:
  """Parses `all`, `none`, `top_k:N` or `from_layer:NAME`.

  Raises:
    UserError: naming --freeze when the value has another form.
  """
  value = value.strip()
  if value in ("all", "none"):
    return Freeze(value)
  match = re.fullmatch(r"top_k:(\d+)", value)
  if match and int(match.group(1)) >= 1:
    return Freeze("top_k", int(match.group(1)))
  match = re.fullmatch(r"from_layer:(\S+)", value)
  if match:
    return Freeze("from_layer", layer=match.group(1))
  raise UserError(f"--freeze={value!r} is not a freezing policy: use all, none, top_k:N with N >= 1 or "
                  "from_layer:NAME")


def parse_min_metric(values: Sequence[str]) -> Tuple[Tuple[str, float], ...]:
  """Parses `--min_metric` items of the form NAME:VALUE, e.g. macro_f1:0.9.

  Raises:
    UserError: naming --min_metric for an unknown metric, a malformed item or a value outside [0, 1].
  """
  gates = []
  for item in values:
    name, sep, value = item.strip().partition(":")
    if not sep:
      raise UserError(f"--min_metric={item!r}: write NAME:VALUE, e.g. macro_f1:0.9")
    if name not in GATE_METRICS:
      raise UserError(f"--min_metric={item!r}: unknown metric {name!r}; use one of {', '.join(GATE_METRICS)}")
    try:
      threshold = float(value)
    except ValueError:
      threshold = math.nan
    if not 0.0 <= threshold <= 1.0:  # NaN fails too
      raise UserError(f"--min_metric={item!r}: the lowest allowed value must be a number in [0, 1]")
    gates.append((name, threshold))
  return tuple(gates)


def check_min_metric(gates: Tuple[Tuple[str, float], ...], num_classes: int):
  """Raises UserError for a gate on a metric that a task with `num_classes` classes does not report."""
  for name, threshold in gates:
    top_k = re.fullmatch(r"top_(\d+)_accuracy", name)
    if top_k and int(top_k.group(1)) >= num_classes:
      raise UserError(f"--min_metric={name}:{threshold:g}: {name} needs more than {top_k.group(1)} classes and this "
                      f"dataset has {num_classes}; gate on accuracy or another metric")
    if name in ("roc_auc", "pr_auc") and num_classes != 2:
      raise UserError(f"--min_metric={name}:{threshold:g}: {name} is reported for binary tasks only and this dataset "
                      f"has {num_classes} classes; gate on macro_f1 or another metric")


def split_dataset_spec(dataset: str) -> Tuple[str, Optional[str]]:
  """Splits `--dataset` into (kind, path): ('bbc_news', None), ('digits', None), or (scheme, PATH or NAME)."""
  if dataset in _BUILTIN_DATASETS:
    return dataset, None
  scheme, sep, path = dataset.partition(":")
  if sep and scheme in _DATASET_SCHEMES and path:
    return scheme, path
  raise UserError(
      f"--dataset={dataset!r} is not a dataset: use one of {', '.join(_BUILTIN_DATASETS)}, "
      "textdir:PATH (one subfolder per class), imagedir:PATH (one subfolder of images per class), tfds:NAME "
      "or csv:PATH (.csv, .tsv or .jsonl)")


def modality(data: DataConfig) -> str:
  """'image' for image sources (imagedir, tfds, digits, csv with --image_column), else 'text'."""
  kind, _ = split_dataset_spec(data.dataset)
  return "image" if kind in _IMAGE_KINDS or (kind == "csv" and data.image_column) else "text"


def _fail(flag: str, value, fix: str):
  raise UserError(f"--{flag}={value!r}: {fix}")


def _check_choice(flag, value, choices):
  if value not in choices:
    _fail(flag, value, f"must be one of {', '.join(choices)}")


def validate(config: Config) -> Config:
  """Checks every value and combination before anything heavy runs.

  Returns:
    The same config, so calls can chain.

  Raises:
    UserError: naming the first bad flag, the value it got and what it accepts.
  """
  d, m, t, r = config.data, config.model, config.train, config.run
  for section in (d, m, t):  # NaN and inf pass every comparison below, so they are rejected first
    for field in dataclasses.fields(section):
      value = getattr(section, field.name)
      if isinstance(value, float) and not math.isfinite(value):
        _fail(field.name, value, "must be a finite number")
  split_dataset_spec(d.dataset)
  for flag, value in (("val_fraction", d.val_fraction), ("test_fraction", d.test_fraction)):
    if not 0.0 < value < 1.0:
      _fail(flag, value, "must be a fraction strictly between 0 and 1")
  if d.val_fraction + d.test_fraction >= 1.0:
    _fail("val_fraction", d.val_fraction,
          f"val_fraction + test_fraction ({d.val_fraction + d.test_fraction:g}) must leave examples to train on")
  if d.examples_per_class < 0:
    _fail("examples_per_class", d.examples_per_class, "must be >= 0 (0 keeps every example)")
  if d.train_examples_per_class < 0:
    _fail("train_examples_per_class", d.train_examples_per_class, "must be >= 0 (0 keeps the whole train split)")
  for flag, column in (("text_column", d.text_column), ("label_column", d.label_column)):
    if not column or column != column.strip():
      _fail(flag, column, "must name a column, without surrounding spaces (headers are matched stripped)")
  if d.image_column != d.image_column.strip():
    _fail("image_column", d.image_column, "must name a column, without surrounding spaces")
  if any(not c or c != c.strip() for c in d.classes) or len(set(d.classes)) != len(d.classes):
    _fail("classes", ",".join(d.classes), "must be distinct, non-empty class names separated by commas")
  if len(d.classes) == 1:
    _fail("classes", ",".join(d.classes), "a classifier needs at least two classes")
  _check_choice("on_bad_file", d.on_bad_file, ON_BAD_FILE)
  if not d.tfds_split.strip():
    _fail("tfds_split", d.tfds_split, "must name a tfds split, e.g. train or train+test")

  if not m.backbone:
    _fail("backbone", m.backbone, "must name a backbone: an alias, a keras-hub preset, hf://…, kaggle://… or a directory")
  if m.sequence_length < 8:
    _fail("sequence_length", m.sequence_length, "must be at least 8 tokens")
  if m.eval_windows < 1:
    _fail("eval_windows", m.eval_windows, "must be >= 1 (1 reads only the first --sequence_length tokens)")
  if m.train_windows < 1:
    _fail("train_windows", m.train_windows, "must be >= 1 (1 trains on the first --sequence_length tokens only)")
  _check_choice("pooling", m.pooling, POOLINGS)
  if any(u <= 0 for u in m.head_units):
    _fail("head_units", ",".join(map(str, m.head_units)), "every hidden head width must be a positive integer")
  if not 0.0 <= m.dropout < 1.0:
    _fail("dropout", m.dropout, "must be in [0, 1)")
  for flag, value in (("l1", m.l1), ("l2", m.l2)):
    if value < 0:
      _fail(flag, value, "regularisation strength must be >= 0")
  if m.image_size < 0:
    _fail("image_size", m.image_size, "must be >= 0 (0 uses the backbone's default size)")
  if not m.backbone_weights.strip():
    _fail("backbone_weights", m.backbone_weights, f"must be {BACKBONE_WEIGHTS_HELP}")
  _check_choice("bn", m.bn, BN_POLICIES)
  _check_choice("flip", m.flip, FLIPS)
  for flag, value in (("rotation", m.rotation), ("zoom", m.zoom), ("translation", m.translation),
                      ("contrast", m.contrast)):
    if not 0.0 <= value < 1.0:
      _fail(flag, value, "must be in [0, 1) (0 turns it off)")
  if modality(d) == "text":
    for flag, value, default in (("image_size", m.image_size, 0), ("flip", m.flip, "none"),
                                 ("rotation", m.rotation, 0.0), ("zoom", m.zoom, 0.0),
                                 ("translation", m.translation, 0.0), ("contrast", m.contrast, 0.0)):
      if value != default:
        _fail(flag, value, "applies to image datasets only (imagedir:, tfds:, digits, csv: with --image_column); "
              "drop it for text")
  else:
    for flag, value, default in (("sequence_length", m.sequence_length, ModelConfig.sequence_length),
                                 ("eval_windows", m.eval_windows, 1), ("train_windows", m.train_windows, 1),
                                 ("pooling", m.pooling, "auto")):
      if value != default:
        _fail(flag, value, "applies to text datasets only (bbc_news, textdir:, csv: without --image_column); "
              "drop it for images")

  if t.batch_size <= 0:
    _fail("batch_size", t.batch_size, "must be a positive integer (it is the global batch)")
  for flag, value in (("head_epochs", t.head_epochs), ("epochs", t.epochs)):
    if value < 0:
      _fail(flag, value, "must be >= 0")
  if t.head_epochs + t.epochs == 0:
    _fail("epochs", t.epochs, "both phases have 0 epochs: set --head_epochs and/or --epochs above 0")
  if t.freeze.kind == "all" and t.epochs > 0:
    _fail("freeze", str(t.freeze),
          "freezes the whole backbone, so only the head trains: set --epochs=0 and use --head_epochs")
  for flag, value in (("head_learning_rate", t.head_learning_rate), ("learning_rate", t.learning_rate)):
    if not value > 0:
      _fail(flag, value, "must be > 0")
  if not 0.0 <= t.warmup_fraction < 1.0:
    _fail("warmup_fraction", t.warmup_fraction, "must be in [0, 1)")
  _check_choice("optimizer", t.optimizer, OPTIMIZERS)
  if t.weight_decay < 0:
    _fail("weight_decay", t.weight_decay, "must be >= 0")
  if not 0.0 <= t.momentum < 1.0:
    _fail("momentum", t.momentum, "must be in [0, 1)")
  if t.clipnorm < 0:
    _fail("clipnorm", t.clipnorm, "must be >= 0 (0 turns clipping off)")
  _check_choice("lr_schedule", t.lr_schedule, LR_SCHEDULES)
  if not 0.0 < t.lr_decay_rate <= 1.0:
    _fail("lr_decay_rate", t.lr_decay_rate, "the per-epoch decay factor must be in (0, 1]")
  if not 0.0 <= t.lr_alpha <= 1.0:
    _fail("lr_alpha", t.lr_alpha, "the final LR fraction must be in [0, 1]")
  if t.lr_restart_epochs < 1:
    _fail("lr_restart_epochs", t.lr_restart_epochs, "must be >= 1")
  if not 0.0 <= t.label_smoothing < 1.0:
    _fail("label_smoothing", t.label_smoothing, "must be in [0, 1)")
  _check_choice("monitor", t.monitor, MONITORS)
  if t.early_stopping_patience < 0:
    _fail("early_stopping_patience", t.early_stopping_patience, "must be >= 0 (0 turns early stopping off)")
  _check_choice("strategy", t.strategy, STRATEGIES)
  if t.worker_hosts:
    if t.strategy != "multi_worker_mirrored":
      _fail("worker_hosts", ",".join(t.worker_hosts), "needs --strategy=multi_worker_mirrored")
    for host in t.worker_hosts:
      if not re.fullmatch(r"[^:\s]+:\d{1,5}", host):
        _fail("worker_hosts", ",".join(t.worker_hosts), f"{host!r} is not HOST:PORT; list every worker, e.g. "
              "10.0.0.1:12345,10.0.0.2:12345")
    if not 0 <= t.task_index < len(t.worker_hosts):
      _fail("task_index", t.task_index, f"must be in [0, {len(t.worker_hosts)}): this worker's position in "
            "--worker_hosts (0 is the chief)")
  elif t.task_index:
    _fail("task_index", t.task_index, "needs --worker_hosts (or set TF_CONFIG instead of both)")
  if t.strategy == "tpu" and not t.tpu:
    _fail("tpu", t.tpu, "--strategy=tpu needs --tpu=NAME (the TPU name, grpc:// address or 'local')")
  _check_choice("mixed_precision", t.mixed_precision, PRECISIONS)
  if t.steps_per_execution < 1:
    _fail("steps_per_execution", t.steps_per_execution, "must be >= 1 (batches run per call into the graph)")
  _check_choice("padding", t.padding, PADDINGS)
  if t.pad_to_multiple_of < 1:
    _fail("pad_to_multiple_of", t.pad_to_multiple_of, "must be >= 1 (1 pads each batch to its longest text)")
  if t.profile_batches and not (len(t.profile_batches) == 2 and 1 <= t.profile_batches[0] <= t.profile_batches[1]):
    _fail("profile_batches", ",".join(map(str, t.profile_batches)),
          "must be FIRST,LAST with 1 <= FIRST <= LAST, e.g. 3,5 (leave the first batches out: they trace the graph)")

  if not r.model_dir:
    _fail("model_dir", r.model_dir, "must name the run directory")
  if not r.export_dir:
    _fail("export_dir", r.export_dir, "must name the export base directory")
  if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", r.name):
    _fail("name", r.name, "must be a plain directory name (letters, digits, '_', '.', '-')")
  _check_choice("baseline", config.report.baseline, BASELINES)
  return config
