"""From texts to tensors: tokenize each text once, then batch the cached token ids with tf.data."""

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from tfft.data.batching import per_epoch, shard_by_data


def tokenize(preprocessor, texts: Sequence[str], *, batch_size: int = 256) -> Dict[str, np.ndarray]:
  """Runs the keras-hub preprocessor over all texts once and returns its outputs as numpy arrays.

  Training then reads token ids from memory, so no text is re-tokenized per epoch.
  """
  ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string)).batch(batch_size)
  ds = ds.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  parts = [{k: v.numpy() for k, v in batch.items()} for batch in ds]
  return int_mask({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def int_mask(features):
  """`features` with its "padding_mask" as int32 (1 at real tokens), the dtype keras-hub backbones declare for it.

  keras-hub preprocessors and packers give a bool mask. Fed to `fit` under a tf.distribute strategy, a bool input
  fails: Keras builds the model from the first distributed batch, reduced across replicas with a MEAN, and TF's
  AddN has no bool kernel. Every producer of model features passes them through here. Numpy or TF tensors.
  """
  mask = features["padding_mask"]
  mask = mask.astype(np.int32) if isinstance(mask, np.ndarray) else tf.cast(mask, tf.int32)
  return {**features, "padding_mask": mask}


def trim_to_longest(features: Dict[str, tf.Tensor], multiple: int) -> Dict[str, tf.Tensor]:
  """Cuts a padded batch to its longest row, rounded up to `multiple` tokens.

  Every tensor is cut along axis 1, so token features ([B, L]) and cached hidden states ([B, L, H]) both work.
  Padding is masked everywhere downstream (attention, mean pooling), so the outputs for the real tokens are
  the same as at full length, up to float round-off, for a fraction of the compute on short texts.
  """
  mask = features["padding_mask"]
  full = tf.shape(mask)[1]
  longest = tf.reduce_max(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1))
  length = tf.minimum(full, tf.maximum((longest + multiple - 1) // multiple, 1) * multiple)
  return {name: value[:, :length] for name, value in features.items()}


def lengths(features: Dict[str, np.ndarray]) -> np.ndarray:
  """Real tokens per example, from its padding mask."""
  return features["padding_mask"].astype(bool).sum(axis=1)


def _boundaries(full: int, multiple: int):
  return [multiple * i + 1 for i in range(1, math.ceil(full / multiple) + 1)]


def num_batches(features, indices: np.ndarray, *, batch_size: int, padding: str = "fixed",
                pad_to_multiple_of: int = 16) -> int:
  """Batches per epoch of make_dataset: bucketing leaves one partial batch per length bucket."""
  if padding != "bucket" or not isinstance(features, dict):
    return math.ceil(len(indices) / batch_size)
  full = features["padding_mask"].shape[1]
  bucket = np.searchsorted(_boundaries(full, pad_to_multiple_of), lengths(features)[indices], side="right")
  return int(sum(math.ceil(n / batch_size) for n in np.bincount(bucket) if n))


def make_dataset(features: Union[Dict[str, np.ndarray], np.ndarray], labels: np.ndarray, indices: np.ndarray, *,
                 num_classes: Optional[int], batch_size: int, shuffle: bool = False, seed: int = 0,
                 padding: str = "fixed",
                 pad_to_multiple_of: int = 16, epochs: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
  """A batched dataset of (features, one-hot labels) for the given example indices.

  Args:
    features: tokenized features of every example (a dict), or one array such as cached pooled features.
    labels: class index of every example (or its target row, with num_classes=None).
    indices: which examples this split holds.
    num_classes: width of the one-hot labels (one-hot so that label smoothing applies); None when `labels` are
      the target rows themselves (e.g. standardised numbers, [N, 1]).
    batch_size: the global batch size.
    shuffle: reshuffle every epoch (training only); the split itself is fixed elsewhere.
    seed: shuffle seed.
    padding: for features with a "padding_mask": "fixed" keeps their full length; "dynamic" cuts each batch
      to its longest example rounded up to `pad_to_multiple_of`; "bucket" also batches examples of similar
      length together (one length bucket per `pad_to_multiple_of` tokens).
    pad_to_multiple_of: the rounding of dynamic and bucketed lengths, which bounds the number of shapes.
    epochs: with `shuffle`, (first, stop): one dataset holding epochs first..stop-1 back to back, epoch e
      shuffled with seed + e (see per_epoch), so a resumed run sees the same order as an uninterrupted one.
  """
  x = {k: v[indices] for k, v in features.items()} if isinstance(features, dict) else features[indices]
  y = (np.eye(num_classes, dtype="float32")[labels[indices]] if num_classes is not None
       else np.asarray(labels, dtype="float32")[indices])
  ds = tf.data.Dataset.from_tensor_slices((x, y))
  if shuffle and epochs:
    return per_epoch(lambda s: _batched(ds.shuffle(len(indices), seed=s), features, indices, batch_size, padding,
                                        pad_to_multiple_of), seed=seed, epochs=epochs)
  if shuffle:
    ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
  return shard_by_data(_batched(ds, features, indices, batch_size, padding, pad_to_multiple_of).prefetch(tf.data.AUTOTUNE))


def _batched(ds: tf.data.Dataset, features, indices: np.ndarray, batch_size: int, padding: str,
             pad_to_multiple_of: int):
  maskable = isinstance(features, dict) and "padding_mask" in features
  if padding == "bucket" and maskable:
    # tf.data cannot know how many batches the buckets leave; Keras, not told, would find the end of every
    # validation pass by running out of data (and warn that it did).
    batches = num_batches(features, indices, batch_size=batch_size, padding=padding,
                          pad_to_multiple_of=pad_to_multiple_of)
    full = features["padding_mask"].shape[1]
    boundaries = _boundaries(full, pad_to_multiple_of)
    # Each bucket pads to its upper bound (a multiple of pad_to_multiple_of), so few shapes are traced.
    ds = ds.map(lambda x, y: (_trim_example(x), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.bucket_by_sequence_length(
        lambda x, y: tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32)), bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1), pad_to_bucket_boundary=True)
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
  else:
    ds = ds.batch(batch_size)
    if padding == "dynamic" and maskable:
      ds = ds.map(lambda x, y: (trim_to_longest(x, pad_to_multiple_of), y), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)
  return ds


def _trim_example(x: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  length = tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32))
  return {name: value[:length] for name, value in x.items()}
