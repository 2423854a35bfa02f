"""From texts to tensors: tokenize each text once, then batch the cached token ids with tf.data."""

from typing import Dict, Sequence, Union

import numpy as np
import tensorflow as tf


def tokenize(preprocessor, texts: Sequence[str], *, batch_size: int = 256) -> Dict[str, np.ndarray]:
  """Runs the keras-hub preprocessor over all texts once and returns its outputs as numpy arrays.

  Training then reads token ids from memory, so no text is re-tokenized per epoch.
  """
  ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string)).batch(batch_size)
  ds = ds.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  parts = [{k: v.numpy() for k, v in batch.items()} for batch in ds]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def make_dataset(features: Union[Dict[str, np.ndarray], np.ndarray], labels: np.ndarray, indices: np.ndarray, *,
                 num_classes: int, batch_size: int, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
  """A batched dataset of (features, one-hot labels) for the given example indices.

  Args:
    features: tokenized features of every example (a dict), or one array such as cached pooled features.
    labels: class index of every example.
    indices: which examples this split holds.
    num_classes: width of the one-hot labels (one-hot so that label smoothing applies).
    batch_size: the global batch size.
    shuffle: reshuffle every epoch (training only); the split itself is fixed elsewhere.
    seed: shuffle seed.
  """
  x = {k: v[indices] for k, v in features.items()} if isinstance(features, dict) else features[indices]
  y = np.eye(num_classes, dtype="float32")[labels[indices]]
  ds = tf.data.Dataset.from_tensor_slices((x, y))
  if shuffle:
    ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
