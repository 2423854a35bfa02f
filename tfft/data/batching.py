"""What text and image batches share: epochs with a fixed order each, and sharding across the workers of a job."""

import functools
from typing import Tuple

import tensorflow as tf


def per_epoch(epoch_dataset, *, seed: int, epochs: Tuple[int, int]) -> tf.data.Dataset:
  """Epochs first..stop-1 of `epoch_dataset(shuffle_seed)` back to back, epoch e drawn with seed + e.

  Keras reshuffles a dataset per iterator, so a run resumed at epoch e would replay epoch 0's order; here
  epoch e's order depends on (seed, e) alone. Fit it with steps_per_epoch, since its length is unknown to tf.data.
  """
  first, stop = epochs
  # One dataset per epoch, chained: Python seeds, since tf.data rejects a tensor seed when the global seed is 0.
  ds = functools.reduce(lambda a, b: a.concatenate(b),
                        [epoch_dataset(seed + e) for e in range(first, max(stop, first + 1))])
  return shard_by_data(ds.prefetch(tf.data.AUTOTUNE))


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
  """In a multi-worker job each worker takes its share of every global batch: the data is in memory, not in
  files that could be split between workers (elsewhere the option does nothing)."""
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return ds.with_options(options)
