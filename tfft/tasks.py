"""What differs between modalities in the train job: loading examples, the backbone and model, batches, scoring and
the export. tfft.pipeline runs one flow for both; each task here fills in its parts."""

import dataclasses
import functools
import math
import pathlib
from typing import Callable

import numpy as np
from absl import logging

from tfft import config as config_lib
from tfft.backbones import image as image_backbones
from tfft.backbones import text as text_backbones
from tfft.config import Config
from tfft.data import images as image_data
from tfft.data import split as split_lib
from tfft.data import text as text_data
from tfft.errors import UserError

BACKBONE_WEIGHTS = "backbone.weights.h5"


class TextTask:
  """Text: a keras-hub backbone, texts tokenized once, a string-in export."""

  def __init__(self, config: Config):
    self.config = config
    self.spec = text_backbones.resolve(config.model.backbone)
    self.pooling = self.spec.default_pooling if config.model.pooling == "auto" else config.model.pooling
    self.backbone = self.blocks = self.preprocessor = self._features = self._units = None

  def load_examples(self) -> text_data.Examples:
    """Raises: UserError for a bad source or --classes."""
    examples = text_data.load_examples(self.config.data)
    if self.config.data.classes:
      keep = split_lib.select_classes(examples.labels, self.config.data.classes, flag_value=self.config.data.dataset)
      examples = text_data.Examples([examples.texts[i] for i in keep], [examples.labels[i] for i in keep],
                                    [examples.ids[i] for i in keep], examples.source)
    return examples

  def build_model(self, num_classes: int, strategy, *, weights: str = None):  # pylint: disable=unused-argument
    """Loads the backbone and preprocessor and builds the classifier under `strategy`; sets backbone and blocks.

    The backbone computes in --mixed_precision; the logits stay float32. `weights` is for the image task's
    signature: a text backbone's weights come with its preset.
    """
    import keras  # pylint: disable=g-import-not-at-top
    m, precision = self.config.model, self.config.train.mixed_precision
    keras.mixed_precision.set_global_policy(precision)
    self.preprocessor = text_backbones.load_preprocessor(self.spec, m.sequence_length)
    with strategy.scope():
      self.backbone = text_backbones.load_backbone(self.spec, dtype=None if precision == "float32" else precision)
      text_backbones.check_sequence_length(self.backbone, self.spec, m.sequence_length)
      model = self._head(num_classes)(self.backbone)
    self.blocks = text_backbones.transformer_blocks(self.backbone)
    logging.info("backbone %s (%s pooling), sequence length %d", self.spec.flag_value, self.pooling,
                 m.sequence_length)
    return model

  def _head(self, num_classes: int):
    from tfft import modeling  # pylint: disable=g-import-not-at-top
    m = self.config.model
    return functools.partial(modeling.build_text_classifier, num_classes=num_classes, pooling=self.pooling,
                             head_units=m.head_units, dropout=m.dropout, l1=m.l1, l2=m.l2)

  def float32_model(self, model, strategy):
    """The trained mixed-precision classifier as float32, for scoring and the export."""
    from tfft import modeling  # pylint: disable=g-import-not-at-top
    return modeling.float32_copy(model, self.backbone, self._head(int(model.output.shape[-1])), strategy=strategy)

  @property
  def _trim(self):
    """Scoring and serving cut each batch of windows to a multiple of this many tokens (None: --padding=fixed)."""
    t = self.config.train
    return None if t.padding == "fixed" else t.pad_to_multiple_of

  def dataset_fn(self, examples, labels: np.ndarray, split) -> Callable:
    """Tokenizes every text once; returns make(split_name, shuffle=False, seed=0) -> batched tf.data.Dataset.

    Resolves --padding=auto (tensors.auto_padding) in self.config: read `self.config.train.padding` after this.

    With --train_windows=N > 1, the examples of training and validation are the texts' windows (see
    training_units); scoring still reads whole texts through predict_logits.
    """
    from tfft.data import tensors  # pylint: disable=g-import-not-at-top
    windows = self.config.model.train_windows
    if windows > 1:
      from tfft import windows as windows_lib  # pylint: disable=g-import-not-at-top
      self._features, doc = windows_lib.window_arrays(self.preprocessor, examples.texts, windows)
      self._units = labels[doc], {name: np.flatnonzero(np.isin(doc, indices)) for name, indices in split.items()}
      logging.info("--train_windows=%d: %s windows per split", windows,
                   {name: len(indices) for name, indices in self._units[1].items()})
    else:
      self._features = tensors.tokenize(self.preprocessor, examples.texts)
      self._units = labels, split
    unit_labels, unit_split = self._units
    t = self.config.train
    if t.padding == "auto":
      cut = tensors.dynamic_cut(self._features, unit_split["train"], batch_size=t.batch_size,
                                pad_to_multiple_of=t.pad_to_multiple_of, seed=t.seed)
      t = dataclasses.replace(t, padding=tensors.auto_padding(cut, t.mixed_precision))
      self.config = dataclasses.replace(self.config, train=t)
      logging.info("--padding=auto: %s (dynamic padding would cut %.0f%% of the training token positions)",
                   t.padding, 100 * cut)
    num_classes = int(labels.max()) + 1
    return lambda name, **kw: tensors.make_dataset(
        self._features, unit_labels, unit_split[name], num_classes=num_classes, batch_size=t.batch_size,
        **{"padding": t.padding, "pad_to_multiple_of": t.pad_to_multiple_of, **kw})

  def training_units(self, labels: np.ndarray, split):
    """(labels, split) of what training and validation see, after dataset_fn: the texts themselves, or with
    --train_windows > 1 their windows (each with its text's label; a text's windows stay in its split)."""
    return self._units

  def num_batches(self, indices: np.ndarray) -> int:
    """Training batches per epoch (length bucketing leaves a partial batch per bucket)."""
    from tfft.data import tensors  # pylint: disable=g-import-not-at-top
    t = self.config.train
    return tensors.num_batches(self._features, indices, batch_size=t.batch_size, padding=t.padding,
                               pad_to_multiple_of=t.pad_to_multiple_of)

  def run_data(self, examples, labels, split, class_names):
    from tfft import reporting  # pylint: disable=g-import-not-at-top
    return reporting.RunData("text", examples.texts, examples.ids, labels, split, class_names)

  def contract(self):
    from tfft import reporting  # pylint: disable=g-import-not-at-top
    return reporting.text_contract(self.preprocessor, self.config.model)

  def cache_top_k(self):
    """The k whose lower blocks FeatureCache may cache, or None; False when nothing may be cached."""
    freeze = self.config.train.freeze
    return freeze.k if freeze.kind == "top_k" else None

  def predict_logits(self, model, examples, indices: np.ndarray, make: Callable) -> np.ndarray:
    from tfft import windows  # pylint: disable=g-import-not-at-top
    return windows.predict_logits(model, self.preprocessor, [examples.texts[i] for i in indices],
                                  self.config.model.eval_windows, batch_size=self.config.train.batch_size,
                                  pad_to_multiple_of=self._trim)

  def save_artifacts(self, model, model_dir: pathlib.Path):
    """Nothing beyond the checkpoints: the backbone is a keras-hub preset already."""

  def export(self, model, class_names, *, export_base: pathlib.Path, finalize=None, metadata=None) -> pathlib.Path:
    from tfft import serving  # pylint: disable=g-import-not-at-top
    return serving.export_text_classifier(model, self.preprocessor, class_names, export_base=export_base,
                                          eval_windows=self.config.model.eval_windows,
                                          pad_to_multiple_of=self._trim, finalize=finalize, metadata=metadata)


class ImageTask:
  """Images: a keras.applications / built-in / keras-hub backbone, decoded in tf.data, a bytes-in export."""

  def __init__(self, config: Config):
    self.config = config
    self.spec = image_backbones.resolve(config.model.backbone)
    self.image_size = 0
    if self.spec.family is not None:  # a preset's size is known only once keras-hub reads it
      self.image_size = image_backbones.image_size(self.spec, config.model.image_size)
    weights = config.model.backbone_weights
    if weights not in ("imagenet", "none") and not pathlib.Path(weights).expanduser().is_file():
      raise UserError(f"--backbone_weights={weights}: no such file; pass imagenet, none, or a path to a "
                      ".weights.h5 / .keras file")
    self.backbone = self.blocks = None

  def load_examples(self) -> image_data.ImageExamples:
    """Raises: UserError for a bad source, a bad file under --on_bad_file=fail, or --classes."""
    return image_data.load_examples(self.config.data)

  def build_model(self, num_classes: int, strategy, *, weights: str = None):
    """Builds the backbone with its weights and the classifier under `strategy`; sets backbone and blocks.

    The model computes in --mixed_precision; the logits stay float32. `weights` overrides --backbone_weights.

    Raises:
      UserError: when the weights cannot be had or do not fit, or the size does not suit the backbone.
    """
    import keras  # pylint: disable=g-import-not-at-top
    from tfft import modeling  # pylint: disable=g-import-not-at-top
    m = self.config.model
    keras.mixed_precision.set_global_policy(self.config.train.mixed_precision)
    if not self.image_size:
      self.image_size = image_backbones.image_size(self.spec, m.image_size)
    with strategy.scope():
      self.backbone = image_backbones.load_backbone(self.spec, image_size=self.image_size,
                                                    weights=weights or m.backbone_weights)
      augmentation = modeling.build_augmentation(flip=m.flip, rotation=m.rotation, zoom=m.zoom,
                                                 translation=m.translation, contrast=m.contrast,
                                                 seed=self.config.train.seed)
      model = modeling.build_image_classifier(
          self.backbone, num_classes=num_classes, image_size=self.image_size,
          preprocessing=image_backbones.preprocessing(self.spec), augmentation=augmentation,
          bn_frozen=m.bn == "frozen", head_units=m.head_units, dropout=m.dropout, l1=m.l1, l2=m.l2)
    self.blocks = image_backbones.weighted_layers(self.backbone)
    logging.info("backbone %s at %dx%d, weights %s, preprocessing %s, BatchNorm %s", self.spec.flag_value,
                 self.image_size, self.image_size, m.backbone_weights, image_backbones.preprocessing(self.spec),
                 m.bn)
    return model

  def float32_model(self, model, strategy):
    """The trained mixed-precision classifier rebuilt as float32 with its trained weights."""
    import keras  # pylint: disable=g-import-not-at-top
    policy = self.config.train.mixed_precision
    try:
      self.config = dataclasses.replace(self.config, train=dataclasses.replace(self.config.train,
                                                                               mixed_precision="float32"))
      copy = self.build_model(int(model.output.shape[-1]), strategy, weights="none")
    finally:
      self.config = dataclasses.replace(self.config, train=dataclasses.replace(self.config.train,
                                                                               mixed_precision=policy))
    keras.mixed_precision.set_global_policy("float32")
    copy.set_weights(model.get_weights())
    return copy

  def num_batches(self, indices: np.ndarray) -> int:
    return math.ceil(len(indices) / self.config.train.batch_size)

  def training_units(self, labels: np.ndarray, split):
    """Training and validation see the images themselves."""
    return labels, split

  def run_data(self, examples, labels, split, class_names):
    """The report's view: each image as its file path, or, for images held in memory, as PNG bytes."""
    from tfft import reporting  # pylint: disable=g-import-not-at-top
    return reporting.RunData("image", image_data.served_inputs(examples), examples.ids, labels, split, class_names)

  def contract(self):
    return [f"Input `image_bytes`: encoded JPEG, PNG, GIF or BMP files (REST: {{\"b64\": ...}}); decoded to 3 "
            f"channels (grey repeated, alpha dropped) and resized to {self.image_size}x{self.image_size} exactly as "
            "in training.",
            "Input `images` (signature serving_images): uint8 [N, H, W, 3] pixels, resized the same way.",
            f"Preprocessing inside the model, applied once: {image_backbones.preprocessing(self.spec)}; "
            "augmentation layers are inactive at inference."]

  def dataset_fn(self, examples, labels: np.ndarray, split) -> Callable:
    from tfft.data import image_tensors  # pylint: disable=g-import-not-at-top
    num_classes = int(labels.max()) + 1
    return lambda name, **kw: image_tensors.make_dataset(
        examples, labels, split[name], num_classes=num_classes, image_size=self.image_size,
        batch_size=self.config.train.batch_size, **kw)

  def cache_top_k(self):
    """Only the head phase is cached for images, and only without augmentation (cached features would freeze
    one random draw of it)."""
    if self.config.model.augments:
      logging.info("augmentation is on: --cache_features is skipped, every phase runs the whole model")
      return False
    return None

  def predict_logits(self, model, examples, indices: np.ndarray, make: Callable) -> np.ndarray:
    return np.asarray(model.predict(make("test"), verbose=0), dtype=np.float32)

  def save_artifacts(self, model, model_dir: pathlib.Path):
    """Saves the trained backbone's weights, for --backbone_weights=MODEL_DIR/backbone.weights.h5 in a later run."""
    tmp = model_dir / (BACKBONE_WEIGHTS + ".tmp.weights.h5")
    self.backbone.save_weights(str(tmp))
    tmp.replace(model_dir / BACKBONE_WEIGHTS)

  def export(self, model, class_names, *, export_base: pathlib.Path, finalize=None, metadata=None) -> pathlib.Path:
    from tfft import serving  # pylint: disable=g-import-not-at-top
    return serving.export_image_classifier(model, class_names, export_base=export_base, image_size=self.image_size,
                                           finalize=finalize, metadata=metadata)


def build_task(config: Config):
  """The task for the config's modality (tfft.config.modality): ImageTask or TextTask.

  Raises:
    UserError: for a backbone that does not suit the modality, or a size or weights path that cannot work.
  """
  if config_lib.modality(config.data) == "image":
    return ImageTask(config)
  return TextTask(config)
