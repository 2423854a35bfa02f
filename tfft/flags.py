"""The only module that defines absl flags: it turns them into a frozen, validated Config."""

import copy
import pathlib
import sys
from typing import Sequence

from absl import flags

from tfft import config as config_lib
from tfft.errors import UserError

FLAGS = flags.FLAGS
_d = config_lib.Config()

# Data.
flags.DEFINE_string("dataset", _d.data.dataset,
                    "Text: bbc_news (built in), textdir:PATH (one subfolder per class), csv:PATH (.csv, .tsv, "
                    ".jsonl). Images: digits (built in), imagedir:PATH (one subfolder per class), tfds:NAME, "
                    "csv:PATH with --image_column.")
flags.DEFINE_string("text_column", _d.data.text_column, "csv/tsv/jsonl: the column holding the text.")
flags.DEFINE_string("label_column", _d.data.label_column, "csv/tsv/jsonl: the column holding the label.")
flags.DEFINE_float("val_fraction", _d.data.val_fraction, "Fraction of each class held out for validation.")
flags.DEFINE_float("test_fraction", _d.data.test_fraction, "Fraction of each class held out for the test.")
flags.DEFINE_integer("examples_per_class", _d.data.examples_per_class,
                     "Keep at most this many examples per class before splitting (0 keeps all).")
flags.DEFINE_integer("train_examples_per_class", _d.data.train_examples_per_class,
                     "Few-shot: after splitting, train on the first N training examples of each class; val and "
                     "test keep their full size (0 trains on the whole train split).")
flags.DEFINE_list("classes", list(_d.data.classes),
                  "Keep only these classes, e.g. 0,1,2,3,4 (empty keeps every class).")
flags.DEFINE_string("image_column", _d.data.image_column,
                    "csv/tsv/jsonl of images: the column holding image paths (relative to the file's folder).")
flags.DEFINE_enum("on_bad_file", _d.data.on_bad_file, config_lib.ON_BAD_FILE,
                  "An image file that does not decode: skip it (logged by path, counted in the summary) or fail.")
flags.DEFINE_bool("allow_external_paths", _d.data.allow_external_paths,
                  "csv: with --image_column: allow image paths outside the table's folder (absolute, or with ..).")
flags.DEFINE_string("tfds_data_dir", _d.data.tfds_data_dir,
                    "tfds:NAME: the prepared TFDS data directory (empty: TFDS's default).")
flags.DEFINE_string("tfds_split", _d.data.tfds_split,
                    "tfds:NAME: the TFDS split(s) to read, e.g. train or train+test; tfft splits them itself.")

# Model.
flags.DEFINE_string("backbone", _d.model.backbone,
                    "Alias (minilm-l6), keras-hub preset name, hf://…, kaggle://…, or a local directory holding "
                    "a keras-hub preset or a HF checkpoint.")
flags.DEFINE_integer("sequence_length", _d.model.sequence_length, "Tokens per example, [CLS] and [SEP] included.")
flags.DEFINE_integer("eval_windows", _d.model.eval_windows,
                     "Scoring and the export read up to N windows of --sequence_length tokens per text and average "
                     "their logits.")
flags.DEFINE_integer("train_windows", _d.model.train_windows,
                     "Training and validation read up to N windows of --sequence_length tokens per text, each window "
                     "an example with its text's label (1: the first window only). Pair it with --eval_windows.")
flags.DEFINE_enum("pooling", _d.model.pooling, config_lib.POOLINGS,
                  "How the head sees the sequence: cls token or mean over tokens; auto picks per backbone.")
flags.DEFINE_list("head_units", list(map(str, _d.model.head_units)),
                  "Widths of hidden Dense layers in the head, e.g. 256 or 512,128; empty for a linear head.")
flags.DEFINE_float("dropout", _d.model.dropout, "Dropout before each head layer.")
flags.DEFINE_float("l1", _d.model.l1, "L1 regularisation on the head kernels.")
flags.DEFINE_float("l2", _d.model.l2, "L2 regularisation on the head kernels.")
flags.DEFINE_integer("image_size", _d.model.image_size,
                     "Images: height and width the model reads (0: the backbone's default size).")
flags.DEFINE_string("backbone_weights", _d.model.backbone_weights,
                    "Images: imagenet (Keras' download and cache), none (random init), or a path to a "
                    ".weights.h5 / .keras file of the same backbone.")
flags.DEFINE_enum("bn", _d.model.bn, config_lib.BN_POLICIES,
                  "Images: frozen keeps BatchNorm in inference mode (moving statistics fixed) even where the "
                  "backbone trains; train lets unfrozen BatchNorm layers use and update batch statistics.")
flags.DEFINE_enum("flip", _d.model.flip, config_lib.FLIPS, "Images: random flips while training.")
flags.DEFINE_float("rotation", _d.model.rotation, "Images: random rotation, as a fraction of a full turn.")
flags.DEFINE_float("zoom", _d.model.zoom, "Images: random zoom, as a fraction of the size.")
flags.DEFINE_float("translation", _d.model.translation, "Images: random shift, as a fraction of the size.")
flags.DEFINE_float("contrast", _d.model.contrast, "Images: random contrast factor range.")

# Training.
flags.DEFINE_integer("batch_size", _d.train.batch_size, "Global batch size, split across replicas.")
flags.DEFINE_integer("head_epochs", _d.train.head_epochs, "Phase 1: epochs training the head on a frozen backbone.")
flags.DEFINE_float("head_learning_rate", _d.train.head_learning_rate, "Phase 1 peak learning rate.")
flags.DEFINE_integer("epochs", _d.train.epochs, "Phase 2: epochs fine-tuning with --freeze applied.")
flags.DEFINE_float("learning_rate", _d.train.learning_rate, "Phase 2 peak learning rate (10-100x below the head's).")
flags.DEFINE_float("warmup_fraction", _d.train.warmup_fraction, "Phase 2: fraction of its steps spent warming up.")
flags.DEFINE_bool("cache_features", _d.train.cache_features,
                  "Run frozen layers once over train and val and train on their cached outputs: the head phase "
                  "on pooled features, a top_k phase on the states entering its blocks. Much faster; frozen "
                  "layers then skip their dropout.")
flags.DEFINE_string("freeze", str(_d.train.freeze),
                    "Phase 2 policy: all (only the head ever trains), none (fine-tune all), top_k:N (last N "
                    "blocks: transformer blocks for text, layers holding weights for images), from_layer:NAME "
                    "(that backbone layer and every layer after it).")
flags.DEFINE_enum("optimizer", _d.train.optimizer, config_lib.OPTIMIZERS, "Optimiser.")
flags.DEFINE_float("weight_decay", _d.train.weight_decay, "Decoupled weight decay (adamw; sgd uses it too).")
flags.DEFINE_float("momentum", _d.train.momentum, "sgd momentum.")
flags.DEFINE_float("clipnorm", _d.train.clipnorm, "Clip each gradient to this norm; 0 turns clipping off.")
flags.DEFINE_enum("lr_schedule", _d.train.lr_schedule, config_lib.LR_SCHEDULES, "LR decay after warmup.")
flags.DEFINE_float("lr_decay_rate", _d.train.lr_decay_rate, "exponential: LR factor per epoch.")
flags.DEFINE_float("lr_alpha", _d.train.lr_alpha, "cosine, cosine_restarts, linear: final LR as a fraction of peak.")
flags.DEFINE_integer("lr_restart_epochs", _d.train.lr_restart_epochs, "cosine_restarts: epochs in the first cycle.")
flags.DEFINE_float("label_smoothing", _d.train.label_smoothing, "Label smoothing for the cross-entropy.")
flags.DEFINE_enum("monitor", _d.train.monitor, config_lib.MONITORS,
                  "Validation metric for the best checkpoint and early stopping.")
flags.DEFINE_integer("early_stopping_patience", _d.train.early_stopping_patience,
                     "Epochs without improvement before a phase stops; 0 turns it off.")
flags.DEFINE_enum("strategy", _d.train.strategy, config_lib.STRATEGIES,
                  "tf.distribute strategy; auto picks mirrored with >1 GPU, else default.")
flags.DEFINE_string("tpu", _d.train.tpu, "--strategy=tpu: TPU name or address.")
flags.DEFINE_list("worker_hosts", list(_d.train.worker_hosts),
                  "--strategy=multi_worker_mirrored without TF_CONFIG: HOST:PORT of every worker, chief first; "
                  "each worker gets the same list and its own --task_index.")
flags.DEFINE_integer("task_index", _d.train.task_index, "This worker's position in --worker_hosts (0: the chief).")
flags.DEFINE_enum("mixed_precision", _d.train.mixed_precision, config_lib.PRECISIONS,
                  "Compute dtype policy for training. The logits and the export stay float32. bfloat16 pays off "
                  "only on CPUs with native bf16 (AVX512_BF16/AMX) or TPUs; float16 on GPUs.")
flags.DEFINE_bool("jit_compile", _d.train.jit_compile, "Compile the train step with XLA.")
flags.DEFINE_integer("steps_per_execution", _d.train.steps_per_execution,
                     "Batches per call into the compiled train step (fewer Python round trips).")
flags.DEFINE_enum("padding", _d.train.padding, config_lib.PADDINGS,
                  "fixed: every batch is --sequence_length tokens. dynamic: each batch is cut to its longest "
                  "text, rounded up to --pad_to_multiple_of (same results, less compute on short texts). bucket: "
                  "also groups texts of similar length into batches (faster still; changes batch composition). "
                  "auto: dynamic when it would cut enough tokens to pay for the unknown-length graph it needs, "
                  "else fixed (same results either way).")
flags.DEFINE_integer("pad_to_multiple_of", _d.train.pad_to_multiple_of,
                     "dynamic/bucket padding: round each batch's length up to a multiple of this, which bounds "
                     "the number of shapes the graph is traced for.")
flags.DEFINE_list("profile_batches", [str(b) for b in _d.train.profile_batches],
                  "FIRST,LAST: trace these training batches of each phase with the TensorFlow profiler, into "
                  "MODEL_DIR/logs/PHASE (TensorBoard's Profile tab; bench/profile_summary.py prints the time per op). "
                  "Empty: no tracing.")
flags.DEFINE_integer("seed", _d.train.seed, "Seed for the split, the initialisation and the shuffling.")

# Outputs.
flags.DEFINE_string("model_dir", _d.run.model_dir, "Run directory: checkpoints, logs, metrics, split manifest.")
flags.DEFINE_string("export_dir", _d.run.export_dir, "Export base: the SavedModel goes to EXPORT_DIR/NAME/VERSION.")
flags.DEFINE_string("name", _d.run.name, "Model name under --export_dir (TF Serving's model name).")
flags.DEFINE_bool("overwrite", _d.run.overwrite, "Start afresh in a model dir that holds a finished run.")

# Report, baseline, quality gate and export extras.
flags.DEFINE_enum("baseline", _d.report.baseline, config_lib.BASELINES,
                  "auto: fit a scikit-learn baseline on the same train split (text: TF-IDF + linear SVM) and report it "
                  "beside the model on the same test split; none: skip it.")
flags.DEFINE_list("min_metric", [f"{n}:{v:g}" for n, v in _d.report.min_metric],
                  "Quality gate, NAME:VALUE[,NAME:VALUE]: any test metric the report holds, e.g. macro_f1:0.9. "
                  "Unmet, train exits 1 and writes no export; the run dir keeps its checkpoints and report.")
flags.DEFINE_bool("warmup", _d.report.warmup,
                  "Write assets.extra/tf_serving_warmup_requests (validation examples) into the export.")


def config_from_flags(flag_values=FLAGS) -> config_lib.Config:
  """Builds the frozen Config from parsed flags and validates it.

  Raises:
    UserError: naming the first bad flag.
  """
  f = flag_values
  try:
    head_units = tuple(int(u) for u in f.head_units if u.strip())
  except ValueError:
    raise config_lib.UserError(
        f"--head_units={','.join(f.head_units)!r}: must be comma-separated integers, e.g. 256 or 512,128") from None
  try:
    profile_batches = tuple(int(b) for b in f.profile_batches if b.strip())
  except ValueError:
    raise config_lib.UserError(
        f"--profile_batches={','.join(f.profile_batches)!r}: must be FIRST,LAST batch numbers, e.g. 3,5") from None
  cfg = config_lib.Config(
      data=config_lib.DataConfig(
          dataset=f.dataset, text_column=f.text_column, label_column=f.label_column,
          val_fraction=f.val_fraction, test_fraction=f.test_fraction, examples_per_class=f.examples_per_class,
          train_examples_per_class=f.train_examples_per_class, classes=tuple(c.strip() for c in f.classes),
          image_column=f.image_column, on_bad_file=f.on_bad_file, allow_external_paths=f.allow_external_paths,
          tfds_data_dir=f.tfds_data_dir,
          tfds_split=f.tfds_split),
      model=config_lib.ModelConfig(
          backbone=f.backbone, sequence_length=f.sequence_length, eval_windows=f.eval_windows,
          train_windows=f.train_windows, pooling=f.pooling, head_units=head_units,
          dropout=f.dropout, l1=f.l1, l2=f.l2, image_size=f.image_size, backbone_weights=f.backbone_weights,
          bn=f.bn, flip=f.flip, rotation=f.rotation, zoom=f.zoom, translation=f.translation, contrast=f.contrast),
      train=config_lib.TrainConfig(
          batch_size=f.batch_size, head_epochs=f.head_epochs, head_learning_rate=f.head_learning_rate,
          epochs=f.epochs, learning_rate=f.learning_rate, warmup_fraction=f.warmup_fraction,
          cache_features=f.cache_features, freeze=config_lib.parse_freeze(f.freeze), optimizer=f.optimizer,
          weight_decay=f.weight_decay,
          momentum=f.momentum, clipnorm=f.clipnorm, lr_schedule=f.lr_schedule, lr_decay_rate=f.lr_decay_rate,
          lr_alpha=f.lr_alpha, lr_restart_epochs=f.lr_restart_epochs, label_smoothing=f.label_smoothing,
          monitor=f.monitor, early_stopping_patience=f.early_stopping_patience, strategy=f.strategy,
          tpu=f.tpu, worker_hosts=tuple(h.strip() for h in f.worker_hosts if h.strip()),
          task_index=f.task_index, seed=f.seed, mixed_precision=f.mixed_precision, jit_compile=f.jit_compile,
          steps_per_execution=f.steps_per_execution, padding=f.padding, pad_to_multiple_of=f.pad_to_multiple_of,
          profile_batches=profile_batches),
      run=config_lib.RunConfig(
          model_dir=f.model_dir, export_dir=f.export_dir, name=f.name, overwrite=f.overwrite),
      report=config_lib.ReportConfig(
          baseline=f.baseline, min_metric=config_lib.parse_min_metric(f.min_metric), warmup=f.warmup),
  )
  return config_lib.validate(cfg)


def serialize(flag_values=FLAGS) -> str:
  """Returns this module's resolved flags in flagfile format, one `--flag=value` a line.

  `overwrite` is left out so that re-running the file resumes rather than clobbers.
  """
  lines = ["# Resolved tfft flags; re-run with: python -m tfft.train --flagfile=THIS_FILE"]
  for flag in flag_values.get_key_flags_for_module(sys.modules[__name__]):
    if flag.name != "overwrite":
      lines.append(flag.serialize())
  return "\n".join(lines) + "\n"


def config_from_flagfile(path: pathlib.Path) -> config_lib.Config:
  """Reads a run's flags.cfg into a Config without touching the entry point's own parsed FLAGS.

  Raises:
    UserError: if the file is missing or holds a flag this version of tfft does not know.
  """
  if not path.is_file():
    raise UserError(f"{path} is missing; it is written by tfft.train into every run dir")
  values = flags.FlagValues()
  for flag in FLAGS.get_key_flags_for_module(sys.modules[__name__]):
    values[flag.name] = copy.deepcopy(flag)
  values.unparse_flags()
  try:
    values(["tfft", f"--flagfile={path}"])
  except flags.Error as e:
    raise UserError(f"{path}: {e}; was it written by another version of tfft?") from None
  return config_from_flags(values)


def reject_train_flags(prog: str, reads: Sequence[str]):
  """For entry points that share some train flags: a train flag they do not read is an error, not ignored.

  Raises:
    UserError: naming the first such flag given on the command line.
  """
  for flag in FLAGS.get_key_flags_for_module(sys.modules[__name__]):
    if flag.present and flag.name not in reads:
      raise UserError(f"--{flag.name} is a tfft.train flag that {prog} does not read; it reads "
                      f"{', '.join('--' + name for name in reads)} and its own flags (see --help)")


def parser_for(prog: str):
  """Returns an absl flags parser for an entry point: a bad flag is one line on stderr and exit code 2."""

  def parse(argv):
    try:
      _check_flagfiles(argv[1:], chain=())
      return FLAGS(argv)
    except flags.Error as e:
      print(f"{prog}: error: {e}. See --helpfull for the flags.", file=sys.stderr)
      sys.exit(2)

  return parse


def _check_flagfiles(args: Sequence[str], *, chain):
  """Follows --flagfile includes, so that a missing file or a loop is an error (absl only warns about a loop).

  Raises:
    flags.Error: naming the missing file, or the loop.
  """
  for arg in args:
    if not arg.startswith("--flagfile="):
      continue
    path = pathlib.Path(arg[len("--flagfile="):]).expanduser()
    key = str(path.resolve())
    if key in chain:
      loop = " -> ".join([*chain[chain.index(key):], key])
      raise flags.Error(f"--flagfile={path} includes itself ({loop}); remove the --flagfile line that closes the loop")
    try:
      lines = path.read_text().splitlines()
    except OSError as e:
      raise flags.Error(f"--flagfile={path}: cannot read it ({e.strerror})") from None
    _check_flagfiles([line.strip() for line in lines], chain=(*chain, key))
