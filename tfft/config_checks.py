"""Validation of a Config: every value and combination that holds whatever the kind of task, checked before anything
heavy runs (a kind's own rules are its spec's; tfft.tasks.registry.validate runs both).

Each failure is a UserError naming the flag, the value it got and what it accepts. No absl, no TensorFlow.
"""

import dataclasses
import math
import pathlib
import re
from typing import Mapping, Sequence, Tuple

from tfft.config import ALL, BACKBONE_WEIGHTS_HELP, Config, IMAGE, modality, options, split_dataset_spec, TEXT
from tfft.errors import UserError
from tfft.model import decoder_backbones, keras_file


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


def _fail(flag: str, value, fix: str):
  raise UserError(f"--{flag}={value!r}: {fix}")


def _check_choice(flag, value, choices):
  if value not in choices:
    _fail(flag, value, f"must be one of {', '.join(choices)}")


def validate(config: Config, *, gate_names: Sequence[str], sources: Mapping[str, str]) -> Config:
  """Checks every value and combination that holds whatever the kind, before anything heavy runs.

  Args:
    config: the run's config.
    gate_names: every metric --min_metric may name (the kinds' gates).
    sources: the kinds' own built-in datasets and schemes, with their modality (tfft.config.split_dataset_spec).

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
  for section, field in options():
    if field.metadata["choices"]:
      _check_choice(field.name, getattr(getattr(config, section), field.name), field.metadata["choices"])
  split_dataset_spec(d.dataset, sources)
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
  if not d.tfds_split.strip():
    _fail("tfds_split", d.tfds_split, "must name a tfds split, e.g. train or train+test")

  if not m.backbone:
    _fail("backbone", m.backbone, "must name a backbone: an alias, a keras-hub preset, hf://…, kaggle://… or a directory")
  if decoder_backbones.is_decoder(m.backbone) and m.pooling == "cls":
    _fail("pooling", m.pooling, f"--backbone={m.backbone} is a causal decoder: its first token has seen nothing of "
          "the text; use --pooling=last (the default for decoders) or mean")
  if not decoder_backbones.is_decoder(m.backbone) and m.pooling == "last":
    _fail("pooling", m.pooling, "last-token pooling is for decoder backbones (smollm2-135m, gguf:PATH); an "
          "encoder's last token is its [SEP]: use --pooling=auto, cls or mean")
  if m.sequence_length < 8:
    _fail("sequence_length", m.sequence_length, "must be at least 8 tokens")
  if m.eval_windows < 1:
    _fail("eval_windows", m.eval_windows, "must be >= 1 (1 reads only the first --sequence_length tokens)")
  if m.train_windows < 1:
    _fail("train_windows", m.train_windows, "must be >= 1 (1 trains on the first --sequence_length tokens only)")
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
  if not 0.0 <= m.bn_momentum < 1.0:
    _fail("bn_momentum", m.bn_momentum, "must be in [0, 1) (0 keeps the backbone's own)")
  if m.bn_momentum and m.bn != "train":
    _fail("bn_momentum", m.bn_momentum, "acts only with --bn=train (under --bn=frozen the statistics never move)")
  keras_backbone = m.backbone.startswith(keras_file.SCHEME)
  if keras_backbone:
    keras_file.file_path(m.backbone)  # a missing file fails here, before TensorFlow loads
  if m.backbone_output and not keras_backbone:
    _fail("backbone_output", m.backbone_output, "applies to --backbone=keras:PATH only; use --freeze=from_layer:NAME "
          "to choose what trains")
  if m.preprocessing != "auto":
    if not keras_backbone:
      _fail("preprocessing", m.preprocessing, f"--backbone={m.backbone} brings its own preprocessing; drop "
            "--preprocessing (it applies to --backbone=keras:PATH)")
    keras_file.parse_preprocessing(m.preprocessing)
  for flag, value in (("rotation", m.rotation), ("zoom", m.zoom), ("translation", m.translation),
                      ("contrast", m.contrast)):
    if not 0.0 <= value < 1.0:
      _fail(flag, value, "must be in [0, 1) (0 turns it off)")
  kind = modality(d, sources)
  for section, field in options():  # a flag of the other modality is an error, not silently ignored
    applies, value = field.metadata["applies"], getattr(getattr(config, section), field.name)
    if applies not in (ALL, kind) and value != field.default:
      sources = ("bbc_news, rotten_tomatoes, textdir:, csv: without --image_column" if applies == TEXT else
                 "imagedir:, tfds:, digits, fashion_mnist, csv: with --image_column")
      _fail(field.name, value, f"applies to {applies} datasets only ({sources}); drop it for "
            f"{'images' if kind == IMAGE else 'text'}")

  if t.batch_size <= 0:
    _fail("batch_size", t.batch_size, "must be a positive integer (it is the global batch)")
  for flag, value in (("head_epochs", t.head_epochs), ("epochs", t.epochs)):
    if value < 0:
      _fail(flag, value, "must be >= 0")
  if t.head_epochs + t.epochs == 0:
    _fail("epochs", t.epochs, "both phases have 0 epochs: set --head_epochs and/or --epochs above 0")
  if t.freeze.kind == "all" and t.epochs > 0 and t.unfreeze != "gradual":  # gradual's own check names both
    _fail("freeze", str(t.freeze),
          "freezes the whole backbone, so only the head trains: set --epochs=0 and use --head_epochs")
  for flag, value in (("head_learning_rate", t.head_learning_rate), ("learning_rate", t.learning_rate)):
    if not value > 0:
      _fail(flag, value, "must be > 0")
  if not 0.0 <= t.warmup_fraction < 1.0:
    _fail("warmup_fraction", t.warmup_fraction, "must be in [0, 1)")
  if t.weight_decay < 0:
    _fail("weight_decay", t.weight_decay, "must be >= 0")
  if not 0.0 <= t.momentum < 1.0:
    _fail("momentum", t.momentum, "must be in [0, 1)")
  if t.clipnorm < 0:
    _fail("clipnorm", t.clipnorm, "must be >= 0 (0 turns clipping off)")
  if not 0.0 < t.lr_decay_rate <= 1.0:
    _fail("lr_decay_rate", t.lr_decay_rate, "the per-epoch decay factor must be in (0, 1]")
  if not 0.0 <= t.lr_alpha <= 1.0:
    _fail("lr_alpha", t.lr_alpha, "the final LR fraction must be in [0, 1]")
  if t.lr_restart_epochs < 1:
    _fail("lr_restart_epochs", t.lr_restart_epochs, "must be >= 1")
  if not 0.0 <= t.label_smoothing < 1.0:
    _fail("label_smoothing", t.label_smoothing, "must be in [0, 1)")
  if t.focal_gamma < 0:
    _fail("focal_gamma", t.focal_gamma, "must be >= 0 (0 is plain cross-entropy)")
  if t.focal_gamma != 2.0 and t.loss != "focal":
    _fail("focal_gamma", t.focal_gamma, "acts only with --loss=focal")
  if t.class_weight not in ("none", "balanced") and not pathlib.Path(t.class_weight).expanduser().is_file():
    _fail("class_weight", t.class_weight, "must be none, balanced, or the path of a JSON file "
          '{"class name": weight, ...}; no such file')
  if t.lora_rank < 0:
    _fail("lora_rank", t.lora_rank, "must be a positive rank such as 8 (0 turns LoRA off)")
  if not t.lora_rank:
    for flag, value, off in (("lora_alpha", t.lora_alpha, 0.0), ("lora_targets", t.lora_targets, ())):
      if value != off:
        _fail(flag, ",".join(value) if isinstance(value, tuple) else value, "acts only with --lora_rank=R > 0")
  if t.lora_alpha < 0:
    _fail("lora_alpha", t.lora_alpha, "must be > 0 (0: the rank)")
  if t.lora_rank and t.epochs == 0:
    _fail("lora_rank", t.lora_rank, "adapters train in phase 2: set --epochs above 0")
  if t.lora_rank and t.freeze.kind != "none":
    _fail("lora_rank", t.lora_rank, f"adapts every targeted layer, so it replaces --freeze={t.freeze}; drop "
          "--freeze (choose the layers with --lora_targets)")
  if not 0.0 < t.layer_decay <= 1.0:
    _fail("layer_decay", t.layer_decay, "must be in (0, 1], e.g. 0.8 (1 turns it off)")
  if t.unfreeze == "gradual":
    if t.freeze.kind != "none":
      _fail("unfreeze", t.unfreeze, f"gradual unfreezing decides what trains in each stage, so it cannot be "
            f"combined with --freeze={t.freeze}; drop --freeze")
    if t.lora_rank:
      _fail("unfreeze", t.unfreeze, "gradual unfreezing trains the backbone's weights, LoRA only adapters: "
            "choose one")
    if t.epochs == 0:
      _fail("unfreeze", t.unfreeze, "unfreezes during phase 2: set --epochs above 0")
  if t.unfreeze_every < 1:
    _fail("unfreeze_every", t.unfreeze_every, "must be >= 1 epoch per stage")
  if t.unfreeze_every != 1 and t.unfreeze != "gradual":
    _fail("unfreeze_every", t.unfreeze_every, "acts only with --unfreeze=gradual")
  if t.early_stopping_patience < 0:
    _fail("early_stopping_patience", t.early_stopping_patience, "must be >= 0 (0 turns early stopping off)")
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
  if t.steps_per_execution < 1:
    _fail("steps_per_execution", t.steps_per_execution, "must be >= 1 (batches run per call into the graph)")
  if t.pad_to_multiple_of < 1:
    _fail("pad_to_multiple_of", t.pad_to_multiple_of, "must be >= 1 (1 pads each batch to its longest text)")
  if t.profile_batches and not (len(t.profile_batches) == 2 and 1 <= t.profile_batches[0] <= t.profile_batches[1]):
    _fail("profile_batches", ",".join(map(str, t.profile_batches)),
          "must be FIRST,LAST with 1 <= FIRST <= LAST, e.g. 3,5 (leave the first batches out: they trace the graph)")

  rep = config.report
  for name, threshold in rep.min_metric:
    if name not in gate_names:
      _fail("min_metric", f"{name}:{threshold:g}", f"unknown metric {name!r}; use one of {', '.join(gate_names)}")

  if not r.model_dir:
    _fail("model_dir", r.model_dir, "must name the run directory")
  if not r.export_dir:
    _fail("export_dir", r.export_dir, "must name the export base directory")
  if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", r.name):
    _fail("name", r.name, "must be a plain directory name (letters, digits, '_', '.', '-')")
  return config
