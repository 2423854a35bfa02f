"""Batches of token-tagging windows: (features, tag index per position, loss weight per position)."""

from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfft.data import text_batches
from tfft.data.batching import per_epoch, shard_by_data


def make_dataset(features: Dict[str, np.ndarray], labels: np.ndarray, weights: np.ndarray, indices: np.ndarray, *,
                 batch_size: int, shuffle: bool = False, seed: int = 0, padding: str = "fixed",
                 pad_to_multiple_of: int = 16, epochs: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
  """A batched dataset of (features, labels [B, L], weights [B, L]) over the given windows.

  The weights are the loss mask: 1 at each word's first piece, 0 at its other pieces, [CLS], [SEP] and padding.
  With padding="dynamic" (or "bucket", which here batches as dynamic does), each batch is cut to its longest
  window rounded up to `pad_to_multiple_of`, labels and weights with it. Epochs as text_batches.make_dataset.
  """
  x = {k: v[indices] for k, v in features.items()}
  ds = tf.data.Dataset.from_tensor_slices((x, labels[indices], weights[indices]))

  def batched(d):
    d = d.batch(batch_size)
    if padding in ("dynamic", "bucket"):
      d = d.map(lambda x, y, w: _trim(x, y, w, pad_to_multiple_of), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return d

  if shuffle and epochs:
    return per_epoch(lambda s: batched(ds.shuffle(len(indices), seed=s)), seed=seed, epochs=epochs)
  if shuffle:
    ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
  return shard_by_data(batched(ds).prefetch(tf.data.AUTOTUNE))


def _trim(x, y, w, multiple):
  x = text_batches.trim_to_longest(x, multiple)
  length = tf.shape(x["padding_mask"])[1]
  return x, y[:, :length], w[:, :length]


def num_batches(indices: np.ndarray, *, batch_size: int) -> int:
  return -(-len(indices) // batch_size)
