"""From image files or pixels to batches: decode and resize in tf.data, the same ops the export runs in its graph."""

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from tfft.data.batching import per_epoch, shard_by_data

# Decoded images above this many bytes (float32) are re-read each epoch instead of cached in memory.
CACHE_BUDGET_BYTES = 2 << 30


def resize(images, size: int):
  """RGB images (any dtype, [H, W, 3] or [N, H, W, 3]) to float32 [size, size] pixels in [0, 255].

  Training, scoring and both serving signatures go through this one function, so they see the same pixels.
  """
  images = tf.cast(images, tf.float32)
  # Antialiasing keeps downscaled photos from aliasing; the op (ScaleAndTranslate) is core TF, so TF Serving has it.
  return tf.image.resize(images, [size, size], method="bilinear", antialias=True)


def decode(contents, size: int):
  """Encoded JPEG/PNG/GIF/BMP bytes (a scalar tf.string) to float32 [size, size, 3]; gray and RGBA become RGB,
  an animated GIF gives its first frame."""
  image = tf.io.decode_image(contents, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return resize(image, size)


def make_dataset(examples, labels: np.ndarray, indices: np.ndarray, *, num_classes: Optional[int], image_size: int,
                 batch_size: int, shuffle: bool = False, seed: int = 0, cache: Optional[bool] = None,
                 epochs: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
  """A batched dataset of (float32 [B, size, size, 3] pixels, one-hot labels) for the given example indices.

  Files are read and decoded in parallel; the decoded split is cached in memory when it fits, so later epochs
  skip the decoding; shuffling comes after the cache, so each epoch is reshuffled.

  Args:
    examples: tfft.data.images.ImageExamples (files or in-memory pixels).
    labels: class index of every example (or its target row, with num_classes=None).
    indices: which examples this split holds.
    num_classes: width of the one-hot labels; None when `labels` are the target rows themselves.
    image_size: the model's input size.
    batch_size: the global batch size.
    shuffle: reshuffle every epoch (training only).
    seed: shuffle seed.
    cache: force caching on or off; None caches when the decoded split fits CACHE_BUDGET_BYTES.
    epochs: with `shuffle`, (first, stop): those epochs back to back, epoch e shuffled with seed + e, as
      tfft.data.batching.per_epoch.
  """
  y = (np.eye(num_classes, dtype="float32")[labels[indices]] if num_classes is not None
       else np.asarray(labels, dtype="float32")[indices])
  if examples.paths is not None:
    paths = tf.constant([examples.paths[i] for i in indices], tf.string)
    ds = tf.data.Dataset.from_tensor_slices((paths, y))
    ds = ds.map(lambda p, t: (decode(tf.io.read_file(p), image_size), t), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
  else:
    ds = tf.data.Dataset.from_tensor_slices((examples.pixels[indices], y))
    ds = ds.map(lambda x, t: (resize(x, image_size), t), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if cache if cache is not None else len(indices) * image_size * image_size * 3 * 4 <= CACHE_BUDGET_BYTES:
    ds = ds.cache()
  if shuffle and epochs:
    return per_epoch(lambda s: ds.shuffle(len(indices), seed=s).batch(batch_size), seed=seed,
                             epochs=epochs)
  if shuffle:
    ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
  return shard_by_data(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))
