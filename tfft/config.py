"""Frozen run configuration: one option() declaration per option, and Config <-> flag lines; imports neither absl nor
TensorFlow."""

import dataclasses
import math
import re
from types import MappingProxyType
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from tfft.errors import UserError

POOLINGS = ("auto", "cls", "mean", "last")
OPTIMIZERS = ("adamw", "adam", "sgd")
LR_SCHEDULES = ("constant", "exponential", "cosine", "cosine_restarts", "linear")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
MONITORS = ("auto", "val_accuracy", "val_loss")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
PADDINGS = ("auto", "fixed", "dynamic", "bucket")
BASELINES = ("auto", "none")
# Training losses: auto (crossentropy for classification, mse for regression); each kind lists the ones it takes.
LOSSES = ("auto", "crossentropy", "focal", "mse", "huber")
BN_POLICIES = ("frozen", "train")
ON_BAD_FILE = ("skip", "fail")
DEDUPES = ("split", "drop", "off")
UNFREEZES = ("none", "gradual")
CALIBRATIONS = ("temperature", "none")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
BACKBONE_WEIGHTS_HELP = "imagenet, none, or a path to a .weights.h5 / .keras file"

# The --dataset schemes and built-in datasets that tfft.data reads. A kind of task reads more of its own, which its
# spec names with their modality (TaskSpec.sources: NAME, or SCHEME: for a scheme); functions here take them as
# `sources`.
_DATASET_SCHEMES = ("textdir", "csv", "imagedir", "tfds", "conll")
_BUILTIN_DATASETS = ("bbc_news", "rotten_tomatoes", "digits", "fashion_mnist", "vader_tweets", "vader_amazon",
                     "vader_nyt", "vader_movies", "wnut16")
# Sources whose examples are images; csv: holds images when --image_column is set.
_IMAGE_KINDS = ("imagedir", "tfds", "digits", "fashion_mnist")


# Which runs an option applies to: a value other than its default on a run of the other modality is an error.
ALL, TEXT, IMAGE = "all", "text", "image"

def option(default, help: str, *, choices: Sequence[str] = (), applies: str = ALL, resume: bool = False,  # pylint: disable=redefined-builtin
           item=None, parse: Optional[Callable[[str], object]] = None, kind_only: bool = False,
           rows: bool = False):
  """Declares one option: a dataclass field whose metadata makes its flag, flagfile line and checks.

  Declaring the field is all a new option needs: tfft.flags defines the absl flag from it (type from the default,
  `choices` as an enum), flagfiles read and write it, and `validate` rejects it on a run it does not apply to.

  Args:
    default: the value when the flag is not given; its type is the flag's type (tuple: a comma-separated list).
    help: the flag's --help text.
    choices: the allowed values of a string option.
    applies: ALL, TEXT or IMAGE: which runs read it.
    resume: an interrupted run resumes only with the same value (it fixes the split, the model or the data order).
    item: the type of a list option's items (default str).
    parse: for a structured value (--freeze, --min_metric): turns the flag's text into the value; str() gives
      the text back.
    kind_only: only the kinds of task whose spec lists it read it (tfft.tasks.registry); a value other than its
      default on another kind is an error.
    rows: it says how --dataset's rows are read (a column, a separator, a scheme), so tfft.evaluate takes it too.
  """
  return dataclasses.field(default=default, metadata={
      "help": help, "choices": tuple(choices), "applies": applies, "resume": resume, "item": item or str,
      "parse": parse, "kind_only": kind_only, "rows": rows})


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


class Gates(tuple):
  """--min_metric: (metric, lowest allowed value) pairs; str() gives the flag's NAME:VALUE,… text back."""

  def __str__(self):
    return ",".join(f"{name}:{value:g}" for name, value in self)


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


def parse_min_metric(values) -> Gates:
  """Parses `--min_metric` items of the form NAME:VALUE, e.g. macro_f1:0.9 (a list, or one comma-separated string).
  Which names a run may gate on is its kind's (validation checks them).

  Raises:
    UserError: naming --min_metric for a malformed item or a value outside [0, 1].
  """
  if isinstance(values, str):
    values = [v for v in values.split(",") if v.strip()]
  gates = []
  for item in values:
    name, sep, value = item.strip().partition(":")
    if not sep:
      raise UserError(f"--min_metric={item!r}: write NAME:VALUE, e.g. macro_f1:0.9")
    try:
      threshold = float(value)
    except ValueError:
      threshold = math.nan
    if not 0.0 <= threshold <= 1.0:  # NaN fails too
      raise UserError(f"--min_metric={item!r}: the lowest allowed value must be a number in [0, 1]")
    gates.append((name, threshold))
  return Gates(gates)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the examples come from and how they are split."""
  dataset: str = option(
      "bbc_news", "Text: bbc_news or rotten_tomatoes (built in), textdir:PATH (one subfolder per class), csv:PATH "
      "(.csv, .tsv, .jsonl). Images: digits (built in), fashion_mnist (Debian's dataset-fashion-mnist), "
      "imagedir:PATH (one subfolder per class), tfds:NAME, csv:PATH with --image_column. --task=pairs: bbc_pairs; "
      "--task=regress: vader_tweets, vader_amazon, vader_nyt, vader_movies (built in). --task=multilabel: "
      "wnut16_types (built in), csv:PATH. --task=tag: wnut16 (built in), conll:PATH (a word and its tag per line; "
      ".jsonl: tokens and tags lists). --task=generate: bbc_headlines (built in: article body -> headline), csv:PATH "
      "with --prompt_column and --response_column.", resume=True)
  task: str = option(
      "classify", "What the model predicts: classify (one class per example), pairs (one class per pair of texts), "
      "regress (a number per example), multilabel (a set of labels per example), tag (a BIO tag per word), "
      "generate (a decoder writes a response to each prompt). See docs/tasks.md.", resume=True)
  text_column: str = option("text", "csv/tsv/jsonl: the column holding the text (--task=pairs: A,B, the two "
                            "columns holding the texts of each pair).", resume=True, rows=True)
  pair_columns: Tuple[str, ...] = option(
      (), "--task=pairs, csv/tsv/jsonl: the two columns holding the texts of each pair, A,B (or give them as "
      "--text_column=A,B).", resume=True, kind_only=True)
  label_column: str = option("label", "csv/tsv/jsonl: the column holding the label (--task=multilabel: the labels, "
                             "separated by --label_separator).", resume=True, rows=True)
  label_separator: str = option("|", "--task=multilabel: what separates an example's labels in --label_column.",
                                resume=True, kind_only=True, rows=True)
  label_columns: Tuple[str, ...] = option(
      (), "--task=multilabel, csv/tsv/jsonl of texts: one 0/1 column per label, e.g. sport,politics (instead of "
      "--label_column).", resume=True, kind_only=True, rows=True)
  tag_scheme: str = option("bio", "--task=tag: the tags' scheme: bio (IOB2: every entity starts with B-) or iob1 "
                           "(I- may start one; read and rewritten as BIO).", choices=("bio", "iob1"), resume=True,
                           kind_only=True, rows=True)
  prompt_column: str = option("prompt", "--task=generate, csv/tsv/jsonl: the column holding the prompt.",
                               resume=True, kind_only=True, rows=True)
  response_column: str = option("response", "--task=generate, csv/tsv/jsonl: the column holding the response the "
                                "model learns to write.", resume=True, kind_only=True, rows=True)
  val_fraction: float = option(0.1, "Fraction of each class held out for validation.", resume=True)
  test_fraction: float = option(0.2, "Fraction of each class held out for the test.", resume=True)
  examples_per_class: int = option(0, "Keep at most this many examples per class before splitting (0 keeps all).",
                                   resume=True, kind_only=True)
  max_examples: int = option(0, "Keep only the first N examples, in the source's order, before splitting (0 keeps "
                             "all): a quick run on a subset.", resume=True)
  train_examples_per_class: int = option(
      0, "Few-shot: after splitting, train on the first N training examples of each class; val and test keep "
      "their full size (0 trains on the whole train split).", resume=True, kind_only=True)
  classes: Tuple[str, ...] = option((), "Keep only these classes, e.g. 0,1,2,3,4 (empty keeps every class).",
                                    resume=True, kind_only=True)
  dedupe: str = option(
      "split", "Texts that are equal, exactly or after collapsing whitespace and case: split keeps each group of "
      "them in one split (that of its first example), drop keeps only the first of each group, off splits them as "
      "separate examples (a duplicate across splits is then only warned about).", choices=DEDUPES, applies=TEXT,
      resume=True)
  image_column: str = option(
      "", "csv/tsv/jsonl of images: the column holding image paths (relative to the file's folder).", resume=True,
      rows=True)
  on_bad_file: str = option("skip", "An image file that does not decode: skip it (logged by path, counted in the "
                            "summary) or fail.", choices=ON_BAD_FILE, applies=IMAGE)
  allow_external_paths: bool = option(
      False, "csv: with --image_column: allow image paths outside the table's folder (absolute, or with ..).",
      applies=IMAGE)
  tfds_data_dir: str = option("", "tfds:NAME: the prepared TFDS data directory (empty: TFDS's default).",
                              applies=IMAGE)
  tfds_split: str = option("train", "tfds:NAME: the TFDS split(s) to read, e.g. train or train+test; tfft splits "
                           "them itself.", applies=IMAGE)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The backbone and the new head on top of it."""
  backbone: str = option(
      "minilm-l6", "Alias (minilm-l6), keras-hub preset name, hf://…, kaggle://…, or a local directory holding a "
      "keras-hub preset or a HF checkpoint; for images a keras.applications name, tiny_cnn, efficientnet_lite0, a "
      "keras-hub image preset, or keras:PATH (a .keras file or a Keras-2 .h5 model).", resume=True)
  sequence_length: int = option(128, "Tokens per example, [CLS] and [SEP] included.", applies=TEXT, resume=True)
  eval_windows: int = option(1, "Scoring and the export read up to N windows of --sequence_length tokens per text "
                             "and average their logits.", applies=TEXT)
  train_windows: int = option(
      1, "Training and validation read up to N windows of --sequence_length tokens per text, each window an "
      "example with its text's label (1: the first window only). Pair it with --eval_windows.", applies=TEXT,
      resume=True)
  pooling: str = option("auto", "How the head sees the sequence: cls (first token), mean over tokens, or last "
                        "(the last real token, for decoders); auto picks per backbone (last for decoders).", choices=POOLINGS, applies=TEXT, resume=True)
  head_units: Tuple[int, ...] = option(
      (), "Widths of hidden Dense layers in the head, e.g. 256 or 512,128; empty for a linear head.", item=int,
      resume=True)
  max_new_tokens: int = option(32, "--task=generate: the most tokens the model writes per prompt (greedy, in the "
                               "report and the export); the export cuts each templated prompt to --sequence_length "
                               "minus this.", applies=TEXT, kind_only=True)
  dropout: float = option(0.1, "Dropout before each head layer.")
  l1: float = option(0.0, "L1 regularisation on the head kernels.")
  l2: float = option(0.0, "L2 regularisation on the head kernels.")
  image_size: int = option(0, "Images: height and width the model reads (0: the backbone's default size).",
                           applies=IMAGE, resume=True)
  backbone_weights: str = option(
      "imagenet", "Images: imagenet (Keras' download and cache; for keras:PATH the file's own weights), none "
      "(random init), or a path to a .weights.h5 / .keras file of the same backbone.", applies=IMAGE)
  backbone_output: str = option(
      "", "Images, --backbone=keras:PATH: the layer whose output is the backbone's features (empty: the layer "
      "before the model's classifier).", applies=IMAGE, resume=True)
  preprocessing: str = option(
      "auto", "Images: the pixel normalisation inside the model. auto: the backbone's own (for keras:PATH, none if "
      "the file starts with a Rescaling/Normalization layer, else it must be stated); for keras:PATH also none, tf "
      "(x/127.5 - 1), torch, caffe, or SCALE,OFFSET (x * SCALE + OFFSET on 0..255 pixels).", applies=IMAGE,
      resume=True)
  bn: str = option("frozen", "Images: frozen keeps BatchNorm in inference mode (moving statistics fixed) even "
                   "where the backbone trains; train lets unfrozen BatchNorm layers use and update batch "
                   "statistics.", choices=BN_POLICIES, applies=IMAGE)
  bn_momentum: float = option(
      0.0, "Images, --bn=train: the momentum of the backbone's BatchNorm moving statistics (0 keeps the "
      "backbone's own, 0.99 for most). Training from scratch on few steps needs less, e.g. 0.9: at 0.99 the "
      "statistics inference uses are still half their initial values after 70 steps.", applies=IMAGE,
      resume=True)
  flip: str = option("none", "Images: random flips while training.",
                     choices=FLIPS, applies=IMAGE)
  rotation: float = option(0.0, "Images: random rotation, as a fraction of a full turn.", applies=IMAGE)
  zoom: float = option(0.0, "Images: random zoom, as a fraction of the size.", applies=IMAGE)
  translation: float = option(0.0, "Images: random shift, as a fraction of the size.", applies=IMAGE)
  contrast: float = option(0.0, "Images: random contrast factor range.", applies=IMAGE)

  @property
  def augments(self) -> bool:
    return self.flip != "none" or any((self.rotation, self.zoom, self.translation, self.contrast))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The two phases (head, then fine-tune), the optimiser, the LR schedule and how the steps run."""
  batch_size: int = option(32, "Global batch size, split across replicas.", resume=True)
  head_epochs: int = option(2, "Phase 1: epochs training the head on a frozen backbone.")
  head_learning_rate: float = option(1e-3, "Phase 1 peak learning rate.")
  head_min_steps: int = option(
      200, "Phase 1 takes at least this many optimizer steps: when the training set is so small that "
      "--head_epochs x steps per epoch falls short (few-shot data: an epoch of one or two steps), it runs more "
      "epochs, and early stopping waits at least a tenth of them. 0 turns this off.", resume=True)
  epochs: int = option(3, "Phase 2: epochs fine-tuning with --freeze applied.")
  learning_rate: float = option(5e-5, "Phase 2 peak learning rate (10-100x below the head's).")
  warmup_fraction: float = option(0.1, "Phase 2: fraction of its steps spent warming up.")
  cache_features: bool = option(
      True, "Run frozen layers once over train and val and train on their cached outputs: the head phase on pooled "
      "features, a top_k phase on the states entering its blocks. Much faster; frozen layers then skip their "
      "dropout.", resume=True)
  freeze: Freeze = option(
      Freeze("none"), "Phase 2 policy: all (only the head ever trains), none (fine-tune all), top_k:N (last N "
      "blocks: transformer blocks for text, layers holding weights for images), from_layer:NAME (that backbone "
      "layer and every layer after it).", parse=parse_freeze, resume=True)
  optimizer: str = option("adamw", "Optimiser.", choices=OPTIMIZERS)
  weight_decay: float = option(0.01, "Decoupled weight decay (adamw; sgd uses it too).")
  momentum: float = option(0.9, "sgd momentum.")
  clipnorm: float = option(1.0, "Clip each gradient to this norm; 0 turns clipping off.")
  lr_schedule: str = option("linear", "LR decay after warmup.",
                            choices=LR_SCHEDULES)
  lr_decay_rate: float = option(0.5, "exponential: LR factor per epoch.")
  lr_alpha: float = option(0.0, "cosine, cosine_restarts, linear: final LR as a fraction of peak.")
  lr_restart_epochs: int = option(1, "cosine_restarts: epochs in the first cycle.")
  label_smoothing: float = option(0.0, "Label smoothing for the cross-entropy.", kind_only=True)
  loss: str = option(
      "auto", "Training loss. classify, pairs: crossentropy, or focal (Keras' CategoricalFocalCrossentropy, which "
      "down-weights examples the model already gets right; see --focal_gamma). regress: mse, or huber (delta 1, on "
      "the standardised target). auto: crossentropy, or mse for regress.", choices=LOSSES,
      kind_only=True)
  focal_gamma: float = option(2.0, "--loss=focal: the focusing exponent (0 is plain cross-entropy).",
                              kind_only=True)
  class_weight: str = option(
      "none", "Weight of each class in the loss: none, balanced (n / (classes * n_class) over the training "
      "examples, as scikit-learn) or a path to a JSON file {\"class name\": weight, ...} (classes left out "
      "weigh 1).", resume=True, kind_only=True)
  lora_rank: int = option(
      0, "Phase 2 trains low-rank adapters (Keras' LoRA) of this rank instead of the backbone's weights; the "
      "head trains fully. The export merges them into the base weights. 0: off.", applies=TEXT, resume=True)
  lora_alpha: float = option(0.0, "--lora_rank: the adapters' scale is alpha / rank (0: alpha = rank, scale 1).",
                             applies=TEXT, resume=True)
  lora_targets: Tuple[str, ...] = option(
      (), "--lora_rank: names of the backbone layers that get adapters (empty: the backbone's own default, the "
      "attention query and value projections).", applies=TEXT, resume=True)
  layer_decay: float = option(
      1.0, "Layer-wise LR decay in phase 2: the head trains at the LR, block i from the top at LR x decay^i, the "
      "embeddings lowest (1: off). It scales each variable's update, not its gradient.", resume=True)
  unfreeze: str = option(
      "none", "Phase 2: none unfreezes per --freeze at once; gradual unfreezes one more block from the top every "
      "--unfreeze_every epochs (then the embeddings too), each stage its own compiled fit.", choices=UNFREEZES,
      resume=True)
  unfreeze_every: int = option(1, "--unfreeze=gradual: epochs per stage.", resume=True)
  monitor: str = option("auto", "Validation metric for the best checkpoint and early stopping; auto: "
                        "val_accuracy for classification, val_loss for regression.", choices=MONITORS)
  early_stopping_patience: int = option(2, "Epochs without improvement before a phase stops; 0 turns it off.")
  strategy: str = option("auto", "tf.distribute strategy; auto picks mirrored with >1 GPU, else default.",
                         choices=STRATEGIES)
  tpu: str = option("", "--strategy=tpu: TPU name or address.")
  worker_hosts: Tuple[str, ...] = option(
      (), "--strategy=multi_worker_mirrored without TF_CONFIG: HOST:PORT of every worker, chief first; each worker "
      "gets the same list and its own --task_index.")
  task_index: int = option(0, "This worker's position in --worker_hosts (0: the chief).")
  seed: int = option(42, "Seed for the split, the initialisation and the shuffling.", resume=True)
  # Speed: none of these changes results beyond float round-off, except mixed precision and --padding=bucket
  # (which regroups batches by length).
  mixed_precision: str = option(
      "float32", "Compute dtype policy for training. The logits and the export stay float32. bfloat16 pays off only "
      "on CPUs with native bf16 (AVX512_BF16/AMX) or TPUs; float16 on GPUs.",
      choices=PRECISIONS)
  jit_compile: bool = option(False, "Compile the train step with XLA.")
  steps_per_execution: int = option(1, "Batches per call into the compiled train step (fewer Python round trips); "
                                    "lowered to the largest divisor of an epoch's batches.")
  padding: str = option(
      "auto", "fixed: every batch is --sequence_length tokens. dynamic: each batch is cut to its longest text, "
      "rounded up to --pad_to_multiple_of (same results, less compute on short texts). bucket: also groups texts of "
      "similar length into batches (faster still; changes batch composition). auto: dynamic when it would cut "
      "enough tokens to pay for the unknown-length graph it needs, else fixed (same results either way).",
      choices=PADDINGS, applies=TEXT, resume=True)
  pad_to_multiple_of: int = option(
      16, "dynamic/bucket padding: round each batch's length up to a multiple of this, which bounds the number of "
      "shapes the graph is traced for.", applies=TEXT)
  profile_batches: Tuple[int, ...] = option(
      (), "FIRST,LAST: trace these training batches of each phase with the TensorFlow profiler, into "
      "MODEL_DIR/logs/PHASE (TensorBoard's Profile tab; bench/profile_summary.py prints the time per op). Empty: "
      "no tracing.", item=int)


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Where the run writes: its model dir and the export base dir."""
  model_dir: str = option("runs/tfft", "Run directory: checkpoints, logs, metrics, split manifest.")
  export_dir: str = option("saved_models", "Export base: the SavedModel goes to EXPORT_DIR/NAME/VERSION.")
  name: str = option("tfft", "Model name under --export_dir (TF Serving's model name).")
  overwrite: bool = option(False, "Start afresh in a model dir that holds a finished run.")


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """What is measured beside the model, what it must reach to be exported, and what the export carries."""
  baseline: str = option(
      "auto", "auto: fit a scikit-learn baseline on the same train split (text: TF-IDF + linear SVM) and report it "
      "beside the model on the same test split; none: skip it.", choices=BASELINES)
  min_metric: Gates = option(
      Gates(), "Quality gate, NAME:VALUE[,NAME:VALUE]: any test metric the report holds, e.g. macro_f1:0.9. Unmet, "
      "train exits 1 and writes no export; the run dir keeps its checkpoints and report.", parse=parse_min_metric)
  warmup: bool = option(True, "Write assets.extra/tf_serving_warmup_requests (validation examples) into the export.")
  calibrate: str = option(
      "temperature", "temperature: fit one temperature on the validation logits (lowest NLL) and divide the "
      "export's logits by it, so served probabilities are calibrated (argmax unchanged); none: raw softmax.",
      choices=CALIBRATIONS, kind_only=True)
  threshold: str = option(
      "argmax", "Two classes: when the positive class is predicted. argmax: the likelier class; a probability T in "
      "(0, 1): p(positive) >= T; f1: the threshold of highest F1 of the positive class on the validation split; "
      "precision@R: the lowest threshold reaching precision R on validation. Chosen on the (calibrated) validation "
      "probabilities; the export's class_id and class_name use it.", kind_only=True)
  positive_class: str = option(
      "", "--threshold: the positive class (empty: the second class in labels.txt).", kind_only=True)


@dataclasses.dataclass(frozen=True)
class Config:
  """A whole train run: every option of tfft.train, by section."""
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  run: RunConfig = RunConfig()
  report: ReportConfig = ReportConfig()


SECTIONS = ("data", "model", "train", "run", "report")


def options():
  """(section name, dataclasses.Field) of every option of Config, in declaration order."""
  return [(section, field) for section in SECTIONS
          for field in dataclasses.fields(Config.__dataclass_fields__[section].default)]


def option_value(field: dataclasses.Field, raw):
  """An option's value from its flag: a flagfile's text, or the value absl parsed (a list for list options).

  Raises:
    UserError: naming the flag when the text is not of the option's type.
  """
  meta, default = field.metadata, field.default
  if meta["parse"] is not None:
    return meta["parse"](raw if isinstance(raw, str) else ",".join(raw))
  if isinstance(default, tuple):
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    if meta["item"] is str:
      return tuple(item.strip() for item in items) if any(item.strip() for item in items) else ()
    try:
      return tuple(meta["item"](item) for item in items if item.strip())
    except ValueError:
      raise UserError(f"--{field.name}={','.join(items)!r}: must be comma-separated integers, e.g. "
                      f"{'3,5' if field.name == 'profile_batches' else '256 or 512,128'}") from None
  if not isinstance(raw, str) or isinstance(default, str):
    return raw
  try:
    if isinstance(default, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(raw)
      return raw.lower() in ("true", "1")
    return type(default)(raw)
  except ValueError:
    raise UserError(f"--{field.name}={raw!r}: must be a {type(default).__name__}") from None


def option_text(value) -> str:
  """An option's value as its flag's text, which option_value reads back."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, tuple) and not isinstance(value, Gates):
    return ",".join(map(str, value))
  return str(value)


def to_flag_lines(config: "Config", *, leave_out: Sequence[str] = ("overwrite",)) -> List[str]:
  """Every option as a `--name=value` line, which absl and from_flag_lines read back to the same Config.

  `overwrite` is left out by default, so that re-running the lines resumes a run rather than clobbering it.
  """
  return [f"--{field.name}={option_text(getattr(getattr(config, section), field.name))}"
          for section, field in options() if field.name not in leave_out]


def to_flagfile(config: "Config") -> str:
  """The config as a flagfile (tfft.train --flagfile=… re-runs it); `overwrite` is left out, so a re-run resumes."""
  header = "# Resolved tfft flags; re-run with: python -m tfft.train --flagfile=THIS_FILE"
  return "\n".join([header, *to_flag_lines(config)]) + "\n"


def from_flag_lines(lines: Sequence[str], *, where: str) -> "Config":
  """Reads `--name=value` lines (a run's flags.cfg) into a Config, without absl (tfft.tasks.registry.validate
  checks it).

  Options not named keep their defaults. `--name` and `--noname` are read as absl reads boolean flags.

  Raises:
    UserError: naming `where` for an option this version of tfft does not know, or a bad value.
  """
  fields = {field.name: (section, field) for section, field in options()}
  values: Dict[str, dict] = {section: {} for section in SECTIONS}
  for line in lines:
    line = line.strip()
    if not line.startswith("--"):
      continue  # comments and blank lines
    name, sep, text = line[2:].partition("=")
    if not sep and name not in fields and name.startswith("no") and name[2:] in fields:
      name, text = name[2:], "false"
    elif not sep:
      text = "true"
    if name not in fields:
      raise UserError(f"{where}: --{name} is not a tfft.train option; was it written by another version of tfft?")
    section, field = fields[name]
    values[section][name] = option_value(field, text)
  defaults = Config()
  return Config(**{section: dataclasses.replace(getattr(defaults, section), **values[section])
                   for section in SECTIONS})


def resume_options() -> Tuple[str, ...]:
  """Options that fix the split, the model or the data order: an interrupted run resumes only with their values."""
  return tuple(field.name for _, field in options() if field.metadata["resume"])


def split_dataset_spec(dataset: str, sources: Mapping[str, str] = MappingProxyType({})) -> Tuple[str, Optional[str]]:
  """Splits `--dataset` into (kind, path): ('bbc_news', None), ('rotten_tomatoes', None), ('digits', None), or
  (scheme, PATH or NAME).

  Args:
    dataset: the --dataset value.
    sources: the kinds' own built-in datasets and schemes ("NAME" or "SCHEME:" -> modality), beside tfft.data's.

  Raises:
    UserError: naming --dataset when it is none of them.
  """
  names = _BUILTIN_DATASETS + tuple(name for name in sources if not name.endswith(":"))
  if dataset in names:
    return dataset, None
  scheme, sep, path = dataset.partition(":")
  if sep and (scheme in _DATASET_SCHEMES or f"{scheme}:" in sources) and path:
    return scheme, path
  own = "".join(f", {name}PATH" for name in sources if name.endswith(":"))
  raise UserError(
      f"--dataset={dataset!r} is not a dataset: use one of {', '.join(names)}, "
      f"textdir:PATH (one subfolder per class), imagedir:PATH (one subfolder of images per class), tfds:NAME{own}, "
      "csv:PATH (.csv, .tsv or .jsonl) or conll:PATH (a word and its tag per line, --task=tag)")


def modality(data: DataConfig, sources: Mapping[str, str] = MappingProxyType({})) -> str:
  """'image' for image sources (imagedir, tfds, digits, csv with --image_column, a kind's own image source), else
  'text'."""
  kind, path = split_dataset_spec(data.dataset, sources)
  own = sources.get(kind if path is None else f"{kind}:")
  if own:
    return own
  return "image" if kind in _IMAGE_KINDS or (kind == "csv" and data.image_column) else "text"
