"""Image classification: a keras.applications, built-in or keras-hub backbone, images decoded in tf.data, and an
export that takes encoded image bytes."""

import math
import pathlib
from typing import List, Mapping, Optional, Sequence

import numpy as np
from absl import logging

from tfft.config import Config
from tfft.data import images as image_data
from tfft.data import image_batches
from tfft.errors import UserError
from tfft.files import write_atomically
from tfft.model import weights as weights_io
from tfft.model import heads, image_backbones, layers
from tfft.report import run_report
from tfft.serving import savedmodel
from tfft.tasks.api import Built, Prepared, Target, Targets


class ImageClassifier:
  """The Task for image datasets (tfft.tasks.api): one prediction per image, of the --task's target."""
  kind = "image"

  def __init__(self, config: Config, target: Target, *, numeric_labels: bool = False):
    """Resolves --backbone, its input size and --backbone_weights.

    Raises:
      UserError: for an unknown backbone, a size it cannot take, a weights file that does not exist, or a saved
        Keras model that cannot be loaded safely or whose preprocessing is not stated.
    """
    self.config = config
    self.target = target
    self.numeric_labels = numeric_labels
    self.spec = image_backbones.resolve(config.model.backbone)
    self.image_size = image_backbones.image_size(self.spec, config.model.image_size)
    self.channels = image_backbones.channels(self.spec)
    self.preprocessing = image_backbones.preprocessing(self.spec, config.model.preprocessing)
    weights = config.model.backbone_weights
    if weights not in ("imagenet", "none") and not pathlib.Path(weights).expanduser().is_file():
      raise UserError(f"--backbone_weights={weights}: no such file; pass imagenet, none, or a path to a "
                      ".weights.h5 / .keras file")

  def load_examples(self) -> image_data.ImageExamples:
    """Raises: UserError for a bad source, a bad file under --on_bad_file=fail, or --classes."""
    return image_data.load_examples(self.config.data, numeric_labels=self.numeric_labels)

  def encode(self, examples, *, names: Optional[Sequence[str]] = None) -> Targets:
    """Raises: UserError for a label the target cannot read, or one `names` (labels.txt) does not hold."""
    return self.target.encode(examples.labels, where=f"--dataset={self.config.data.dataset}", names=names,
                              ids=examples.ids)

  def build_model(self, num_classes: int, strategy, *, precision: Optional[str] = None,
                  weights: Optional[str] = None) -> Built:
    """Builds the backbone with its weights and the classifier under `strategy`.

    Args:
      num_classes: width of the output layer.
      strategy: the tf.distribute strategy to build under.
      precision: the dtype policy (default --mixed_precision); the logits stay float32 either way.
      weights: overrides --backbone_weights ("none" for a copy whose weights are loaded next).

    Raises:
      UserError: when the weights cannot be had or do not fit.
    """
    import keras  # pylint: disable=g-import-not-at-top
    m = self.config.model
    keras.mixed_precision.set_global_policy(precision or self.config.train.mixed_precision)
    with strategy.scope():
      backbone = image_backbones.load_backbone(self.spec, image_size=self.image_size,
                                               weights=weights or m.backbone_weights, output_layer=m.backbone_output)
      if m.bn_momentum:
        image_backbones.set_bn_momentum(backbone, m.bn_momentum)
      augmentation = layers.build_augmentation(flip=m.flip, rotation=m.rotation, zoom=m.zoom,
                                               translation=m.translation, contrast=m.contrast,
                                               seed=self.config.train.seed)
      model = heads.build_image_classifier(
          backbone, num_classes=num_classes, image_size=self.image_size,
          preprocessing=self.preprocessing, augmentation=augmentation, bn_frozen=m.bn == "frozen",
          head_units=m.head_units, dropout=m.dropout, l1=m.l1, l2=m.l2, channels=self.channels)
    logging.info("backbone %s at %dx%dx%d, weights %s, preprocessing %s, BatchNorm %s", self.spec.flag_value,
                 self.image_size, self.image_size, self.channels, weights or m.backbone_weights, self.preprocessing,
                 m.bn)
    return Built(model, backbone, image_backbones.blocks(self.spec, backbone))

  def prepare(self, examples, targets: Targets, split: Mapping[str, np.ndarray]) -> Prepared:
    """The images themselves are the units of training; they are decoded and resized in tf.data."""
    batch_size = self.config.train.batch_size
    rows = self.target.rows(targets, targets.values)

    def make(name, padding=None, **kw):  # pylint: disable=unused-argument  (images have no padding)
      return image_batches.make_dataset(examples, rows, split[name], num_classes=None,
                                        image_size=self.image_size, batch_size=batch_size, **kw)

    return Prepared(examples, targets, dict(split), targets.values, dict(split), "fixed",
                    math.ceil(len(split["train"]) / batch_size), make, rows)

  def cache_top_k(self):
    """Only the head phase is cached for images, and only without augmentation (cached features would freeze
    one random draw of it)."""
    if self.config.model.augments:
      logging.info("augmentation is on: --cache_features is skipped, every phase runs the whole model")
      return False
    return None

  def predict_logits(self, model, prepared: Prepared, indices: np.ndarray) -> np.ndarray:
    ds = image_batches.make_dataset(prepared.examples, prepared.unit_rows, np.asarray(indices), num_classes=None,
                                    image_size=self.image_size, batch_size=self.config.train.batch_size)
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float32)

  def run_data(self, prepared: Prepared):
    """The report's view: each image as its file path, or, for images held in memory, as PNG bytes."""
    return run_report.RunData("image", image_data.served_inputs(prepared.examples), prepared.examples.ids,
                              prepared.labels, prepared.split, prepared.class_names, prepared.targets)

  def contract(self) -> List[str]:
    return [f"Input `image_bytes`: encoded JPEG, PNG, GIF or BMP files (REST: {{\"b64\": ...}}); decoded to 3 "
            f"channels (grey repeated, alpha dropped) and resized to {self.image_size}x{self.image_size} exactly as "
            "in training.",
            "Input `images` (signature serving_images): uint8 [N, H, W, 3] pixels, resized the same way.",
            *(["The backbone reads grayscale: the model turns the 3 decoded channels into one "
               "(0.299 R + 0.587 G + 0.114 B)."] if self.channels == 1 else []),
            f"Preprocessing inside the model, applied once: {self.preprocessing}; "
            "augmentation layers are inactive at inference."]

  def save_artifacts(self, built: Built, run_dir):
    """Saves the trained backbone's weights, for --backbone_weights=MODEL_DIR/backbone.weights.h5 in a later run."""
    write_atomically(run_dir.backbone_weights, weights_io.weights_h5_bytes(built.backbone))

  def export(self, model, prepared: Prepared, *, export_base, finalize=None, metadata=None):
    return savedmodel.export_image_classifier(model, prepared.class_names, export_base=export_base,
                                              image_size=self.image_size, finalize=finalize, metadata=metadata,
                                              outputs=self.target.outputs(prepared.targets))
