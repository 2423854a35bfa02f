"""Keras layers of the image classifiers: the backbone's input channels and normalisation, and the training-time
augmentation."""

from typing import Optional, Sequence

import keras
import numpy as np

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="tfft")
class ImagePreprocessing(keras.layers.Layer):
  """Maps RGB pixels in [0, 255] to what the backbone was trained on; the model's only normalisation.

  Modes reproduce keras.applications' preprocess_input (see tfft.model.image_backbones.PREPROCESS_MODES); `affine`
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


@keras.saving.register_keras_serializable(package="tfft")
class Grayscale(keras.layers.Layer):
  """RGB [..., 3] to one luma channel [..., 1] (ITU-R 601: 0.299 R + 0.587 G + 0.114 B), for a backbone that reads
  grayscale. The weights sum to 1, so a grey image decoded to 3 equal channels maps back to its own values; the
  decode stays the same 3-channel one in training, scoring and both serving signatures."""

  def call(self, x):
    weights = keras.ops.array([[0.299], [0.587], [0.114]], dtype=self.compute_dtype)
    return keras.ops.matmul(keras.ops.cast(x, self.compute_dtype), weights)

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], 1)


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


