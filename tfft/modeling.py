"""The classifier: a pretrained backbone, a pooling, a named Dense head, and the freezing and BatchNorm policies."""

from typing import Optional, Sequence

import keras
import numpy as np

from tfft.config import Freeze
from tfft.errors import UserError

# keras-hub BERT builds a pooler on [CLS] that the heads here never read; it stays frozen so that the
# trainable counts are honest and no weight trains without a gradient.
_UNUSED_BACKBONE_LAYERS = ("pooled_dense",)
POOLED = "pooled"
BACKBONE = "backbone"


@keras.saving.register_keras_serializable(package="tfft")
class BackboneCall(keras.layers.Layer):
  """Calls the backbone in inference mode unless `train_mode` is set and `inference_only` is not.

  A `training=False` given when a functional model is built does not hold in Keras 3: the model passes its own
  `training` to every node that takes one. This layer decides instead. Frozen, the backbone is a pure function
  (no dropout, BatchNorm statistics untouched), so its features can be cached; fine-tuned, text backbones train
  with their dropout, as in the BERT recipe. Image backbones under --bn=frozen are `inference_only`: even while
  their weights train, BatchNorm normalises with its moving statistics and never updates them. Set `train_mode`
  between phases, then compile.
  """

  def __init__(self, backbone, inference_only: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.backbone = backbone
    self.inference_only = inference_only
    self.train_mode = False

  def call(self, inputs, training=None):
    return self.backbone(inputs, training=bool(training) and self.train_mode and not self.inference_only)

  def get_config(self):
    return {**super().get_config(), "backbone": keras.saving.serialize_keras_object(self.backbone),
            "inference_only": self.inference_only}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
    return cls(**config)


def build_text_classifier(backbone, *, num_classes: int, pooling: str, head_units: Sequence[int] = (),
                          dropout: float = 0.1, l1: float = 0.0, l2: float = 0.0) -> keras.Model:
  """Puts a new head on a keras-hub text backbone.

  Args:
    backbone: a keras-hub Backbone whose outputs include "sequence_output".
    num_classes: width of the output layer.
    pooling: "cls" (first token) or "mean" (over unpadded tokens).
    head_units: widths of hidden Dense layers before the output layer.
    dropout: rate of the Dropout before each head Dense.
    l1: L1 strength on head kernels.
    l2: L2 strength on head kernels.

  Returns:
    A functional keras.Model mapping the preprocessor's feature dict to float32 logits.
  """
  inputs = {name: keras.Input(shape=(None,), dtype=tensor.dtype, name=name)
            for name, tensor in backbone.input.items()}
  sequence = BackboneCall(backbone, name=BACKBONE)(inputs)["sequence_output"]
  x = _pool(sequence, inputs["padding_mask"], pooling)
  return keras.Model(inputs, _head(x, num_classes=num_classes, head_units=head_units, dropout=dropout, l1=l1, l2=l2),
                     name="tfft_classifier")


def _head(x, *, num_classes: int, head_units: Sequence[int], dropout: float, l1: float, l2: float):
  """The named head on pooled features: [Dropout, Dense(gelu)] per hidden width, Dropout, float32 logits."""
  x = keras.layers.Identity(name=POOLED)(x)  # the seam between encoder and head, see split_at_pooling
  regularizer = keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None
  for i, units in enumerate(head_units):
    x = keras.layers.Dropout(dropout, name=f"head_dropout_{i}")(x)
    x = keras.layers.Dense(units, activation="gelu", kernel_regularizer=regularizer, name=f"head_dense_{i}")(x)
  x = keras.layers.Dropout(dropout, name="head_dropout")(x)
  # Logits stay float32 under any mixed-precision policy.
  return keras.layers.Dense(num_classes, kernel_regularizer=regularizer, dtype="float32", name="logits")(x)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="tfft")
class ImagePreprocessing(keras.layers.Layer):
  """Maps RGB pixels in [0, 255] to what the backbone was trained on; the model's only normalisation.

  Modes reproduce keras.applications' preprocess_input (see tfft.backbones.image.PREPROCESS_MODES); `affine`
  is a keras-hub image converter's `x * scale + offset`; `none` leaves the pixels to a backbone that rescales
  them itself.
  """

  def __init__(self, mode: str, scale: Optional[Sequence[float]] = None, offset: Optional[Sequence[float]] = None,
               **kwargs):
    super().__init__(**kwargs)
    if mode not in ("caffe", "tf", "torch", "none", "affine"):
      raise ValueError(f"unknown preprocessing mode {mode!r}")
    self.mode, self.scale, self.offset = mode, scale, offset

  def call(self, x):
    x = keras.ops.cast(x, self.compute_dtype)
    if self.mode == "tf":
      return x / 127.5 - 1.0
    if self.mode == "torch":
      return (x / 255.0 - keras.ops.array(_IMAGENET_MEAN, x.dtype)) / keras.ops.array(_IMAGENET_STD, x.dtype)
    if self.mode == "caffe":
      return keras.ops.flip(x, axis=-1) - keras.ops.array(_CAFFE_MEAN_BGR, x.dtype)
    if self.mode == "affine":
      return x * keras.ops.array(self.scale, x.dtype) + keras.ops.array(self.offset, x.dtype)
    return x

  def get_config(self):
    return {**super().get_config(), "mode": self.mode, "scale": self.scale, "offset": self.offset}


def affine_matrix(angle, scale, shift_x, shift_y, *, height, width, mirror_x=None, mirror_y=None):
  """[N, 8] transforms in keras.ops.image.affine_transform's layout (each maps an output pixel to the input pixel
  it reads) that rotate each image by `angle` radians and scale it by 1 / `scale` about its centre, move it by
  (-shift_x, -shift_y), and mirror it left-right where `mirror_x` is 1 and top-bottom where `mirror_y` is 1."""
  ops = keras.ops
  w, h = ops.cast(width, "float32") - 1, ops.cast(height, "float32") - 1
  cx, cy = w / 2, h / 2
  # input = scale * R(angle) @ (mirrored output - centre) + centre + shift
  a0, a1 = scale * ops.cos(angle), -scale * ops.sin(angle)
  b0, b1 = scale * ops.sin(angle), scale * ops.cos(angle)
  a2 = cx - a0 * cx - a1 * cy + shift_x
  b2 = cy - b0 * cx - b1 * cy + shift_y
  if mirror_x is not None:  # x -> w - x before the warp
    a2, b2 = a2 + a0 * w * mirror_x, b2 + b0 * w * mirror_x
    a0, b0 = a0 * (1 - 2 * mirror_x), b0 * (1 - 2 * mirror_x)
  if mirror_y is not None:
    a2, b2 = a2 + a1 * h * mirror_y, b2 + b1 * h * mirror_y
    a1, b1 = a1 * (1 - 2 * mirror_y), b1 * (1 - 2 * mirror_y)
  zeros = ops.zeros_like(a0)
  return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package="tfft")
class RandomAffine(keras.layers.Layer):
  """Random flips, rotation, zoom and shift of each image as one affine warp; inert unless training.

  Keras' RandomFlip, RandomRotation, RandomZoom and RandomTranslation each pass over the image, and the last three
  resample it. Composed into one transform, the image is resampled once: under half the time of the chain
  (bench/image_pipeline.py), and one bilinear blur instead of three. The ranges are theirs: each flip with
  probability 1/2, an angle within +-rotation of a full turn, a scale within 1 +- zoom (the same on both axes, as
  RandomZoom with no width factor), a shift within +-translation of the width and height; pixels from outside the
  image are filled by reflection, their default.
  """

  def __init__(self, rotation: float = 0.0, zoom: float = 0.0, translation: float = 0.0, flip: str = "none",
               fill_mode: str = "reflect", seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    self.rotation, self.zoom, self.translation = float(rotation), float(zoom), float(translation)
    self.flip, self.fill_mode, self.seed = flip, fill_mode, seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  def transforms(self, batch, height: int, width: int):
    """A random [batch, 8] transform per image (affine_matrix)."""
    ops, uniform = keras.ops, keras.random.uniform
    draw = lambda bound: uniform((batch,), -bound, bound, seed=self.seed_generator)
    coin = lambda axis: (ops.cast(uniform((batch,), seed=self.seed_generator) < 0.5, "float32")
                         if self.flip in (axis, "horizontal_and_vertical") else None)
    angle = draw(self.rotation * 2 * np.pi)
    scale = 1.0 + draw(self.zoom)
    shift_x = draw(self.translation) * ops.cast(width, "float32")
    shift_y = draw(self.translation) * ops.cast(height, "float32")
    return affine_matrix(angle, scale, shift_x, shift_y, height=height, width=width, mirror_x=coin("horizontal"),
                         mirror_y=coin("vertical"))

  def call(self, images, training=None):
    if not training:
      return images
    ops = keras.ops
    unbatched = len(images.shape) == 3
    if unbatched:
      images = ops.expand_dims(images, 0)
    shape = ops.shape(images)
    out = ops.image.affine_transform(images, self.transforms(shape[0], shape[1], shape[2]),
                                     interpolation="bilinear", fill_mode=self.fill_mode)
    return out[0] if unbatched else out

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom, "translation": self.translation,
            "flip": self.flip, "fill_mode": self.fill_mode, "seed": self.seed}


def build_augmentation(*, flip: str = "none", rotation: float = 0.0, zoom: float = 0.0, translation: float = 0.0,
                       contrast: float = 0.0, seed: int = 0):
  """Augmentation layers for the flags (RandomAffine, RandomFlip, RandomContrast); they act only when training.

  Returns:
    A list of layers, empty when every flag is off.
  """
  layers = keras.layers
  out = []
  if rotation or zoom or translation:  # the flip joins the warp, at no cost
    out.append(RandomAffine(rotation, zoom, translation, flip=flip, seed=seed + 1, name="augment_affine"))
  elif flip != "none":
    out.append(layers.RandomFlip(flip, seed=seed, name="augment_flip"))
  if contrast:
    # RandomContrast clips to value_range, so it must see the [0, 255] pixels, before the preprocessing.
    out.append(layers.RandomContrast(contrast, value_range=(0, 255), seed=seed + 4, name="augment_contrast"))
  return out


def build_image_classifier(backbone, *, num_classes: int, image_size: int, preprocessing: dict,
                           augmentation: Sequence = (), bn_frozen: bool = True, head_units: Sequence[int] = (),
                           dropout: float = 0.1, l1: float = 0.0, l2: float = 0.0) -> keras.Model:
  """Puts augmentation, the backbone's own preprocessing, and a new head around an image backbone.

  Args:
    backbone: a headless image model mapping [N, H, W, 3] to a feature map ([N, h, w, C]) or tokens ([N, T, C]).
    num_classes: width of the output layer.
    image_size: input height and width.
    preprocessing: keyword arguments of ImagePreprocessing for this backbone (tfft.backbones.image.preprocessing).
    augmentation: layers from build_augmentation, applied before the preprocessing; inert at inference.
    bn_frozen: call the backbone in inference mode in every phase (--bn=frozen).
    head_units, dropout, l1, l2: as build_text_classifier.

  Returns:
    A functional keras.Model mapping float32 RGB pixels in [0, 255] ("image") to float32 logits.
  """
  inputs = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
  x = inputs
  for layer in augmentation:
    x = layer(x)
  x = ImagePreprocessing(**preprocessing, name="preprocessing")(x)
  features = BackboneCall(backbone, inference_only=bn_frozen, name=BACKBONE)(x)
  pool = keras.layers.GlobalAveragePooling2D if len(features.shape) == 4 else keras.layers.GlobalAveragePooling1D
  x = pool(name="avg_pool")(features)
  return keras.Model(inputs, _head(x, num_classes=num_classes, head_units=head_units, dropout=dropout, l1=l1, l2=l2),
                     name="tfft_image_classifier")


def _pool(sequence, padding_mask, pooling: str):
  if pooling == "mean":
    return keras.layers.GlobalAveragePooling1D(name="mean_pool")(sequence, mask=padding_mask)
  if pooling == "cls":
    return sequence[:, 0, :]
  raise ValueError(f"unknown pooling {pooling!r}")


def pooling_of(model: keras.Model) -> str:
  return "mean" if any(layer.name == "mean_pool" for layer in model.layers) else "cls"


def split_at_pooling(model: keras.Model):
  """Splits the classifier into an encoder (inputs -> pooled features) and a head (features -> logits).

  Both share their layers with `model`, so training the head trains the classifier's head. With a frozen
  backbone run in inference mode the encoder is a pure function, so its outputs can be computed once.

  Returns:
    (encoder, head) keras Models.
  """
  pooled = model.get_layer(POOLED)
  encoder = keras.Model(model.inputs, pooled.output, name="encoder")
  x = features = keras.Input(shape=pooled.output.shape[1:], name="pooled_features")
  names = [layer.name for layer in model.layers]
  for layer in model.layers[names.index(POOLED) + 1:]:
    x = layer(x)
  return encoder, keras.Model(features, x, name="head")


def split_at_block(model: keras.Model, backbone, blocks, k: int):
  """Splits the classifier before its top `k` transformer blocks, for a top_k phase whose lower part is frozen.

  Returns:
    (lower, upper, upper_encoder): `lower` maps the token features to the hidden states entering block -k;
    `upper` maps {"hidden", "padding_mask" (int32)} through the top k blocks, the pooling and the head to logits, and
    `upper_encoder` stops at the pooled features. All share their layers with `model`. None when the backbone
    is not a plain stack whose last block gives "sequence_output" (then nothing is cached).
  """
  if not blocks or not 1 <= k <= len(blocks):
    return None
  if backbone.output["sequence_output"]._keras_history.operation is not blocks[-1]:
    return None
  node = blocks[-k]._inbound_nodes[0]
  if list(node.arguments.kwargs) != ["padding_mask"]:
    return None
  hidden = node.arguments.args[0]
  lower = keras.Model(backbone.input, hidden, name="lower")
  # The mask comes in as int32: under MirroredStrategy, a bool model input breaks the gradient aggregation (AddN).
  inputs = {"hidden": keras.Input(shape=hidden.shape[1:], dtype=hidden.dtype, name="hidden"),
            "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask")}
  mask = keras.ops.cast(inputs["padding_mask"], "bool")
  x = inputs["hidden"]
  for block in blocks[-k:]:
    x = block(x, padding_mask=mask)
  pooled = _pool(x, mask, pooling_of(model))
  _, head = split_at_pooling(model)
  upper = keras.Model(inputs, head(pooled), name="upper")
  return lower, upper, keras.Model(inputs, pooled, name="upper_encoder")


def apply_freeze(model: keras.Model, backbone, policy: Freeze, *, blocks=None):
  """Sets `trainable` on the backbone's layers for a phase; the caller must compile afterwards.

  The backbone runs in training mode (its dropout on) only when some of it trains.

  Args:
    model: the classifier built by build_text_classifier.
    backbone: the keras-hub backbone inside the model.
    policy: all (frozen), none (everything trains), top_k:N (only the last N blocks train) or from_layer:NAME
      (that layer and every later one in backbone.layers train).
    blocks: the backbone's blocks in order, for top_k: transformer blocks for text, layers holding weights for
      images.

  Raises:
    UserError: if top_k names more blocks than exist, the backbone has no blocks to count, or from_layer names
      no layer of the backbone.
  """
  model.get_layer(BACKBONE).train_mode = policy.kind != "all"
  if policy.kind == "all":
    backbone.trainable = False
    return
  backbone.trainable = True
  if policy.kind == "from_layer":
    names = [layer.name for layer in backbone.layers]
    if policy.layer not in names:
      raise UserError(f"--freeze={policy}: the backbone has no layer {policy.layer!r}; its last layers are "
                      f"{', '.join(names[-6:])} (model.summary() lists them all)")
    start = names.index(policy.layer)
    for i, layer in enumerate(backbone.layers):
      layer.trainable = i >= start
  if policy.kind == "top_k":
    if not blocks:
      raise UserError(f"--freeze={policy}: this backbone exposes no transformer blocks; use --freeze=none or all")
    if policy.k > len(blocks):
      raise UserError(f"--freeze={policy} names more blocks than the backbone has ({len(blocks)}); "
                      f"use top_k:1 to top_k:{len(blocks)}, or none")
    trainable = {id(layer) for layer in blocks[len(blocks) - policy.k:]}
    for layer in backbone.layers:
      layer.trainable = id(layer) in trainable
  for name in _UNUSED_BACKBONE_LAYERS:
    try:
      backbone.get_layer(name).trainable = False
    except ValueError:
      pass


def count_params(weights) -> int:
  return int(sum(np.prod(w.shape) for w in weights))


def float32_copy(model: keras.Model, backbone, build, *, strategy) -> keras.Model:
  """The same classifier in float32, with the trained weights: what a mixed-precision run scores and exports.

  Args:
    model: the trained classifier, built under a mixed-precision policy.
    backbone: the backbone inside it.
    build: builds the classifier around a backbone, as the run did.
    strategy: the run's tf.distribute strategy.
  """
  keras.mixed_precision.set_global_policy("float32")
  with strategy.scope():
    copy = build(type(backbone).from_config({**backbone.get_config(), "dtype": "float32"}))
  copy.set_weights(model.get_weights())  # mixed-precision variables are float32 already
  return copy
