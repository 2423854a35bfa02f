"""tf.distribute strategies by name, and which process of a multi-worker job writes the outputs."""

import json
import os
from typing import Callable, Sequence

import numpy as np

import tensorflow as tf
from absl import logging


def tf_config(worker_hosts: Sequence[str], task_index: int) -> str:
  """The TF_CONFIG that --worker_hosts and --task_index stand for: worker 0 is the chief."""
  return json.dumps({"cluster": {"worker": list(worker_hosts)}, "task": {"type": "worker", "index": task_index}})


def build_strategy(name: str, *, tpu: str = "", worker_hosts: Sequence[str] = (),
                   task_index: int = 0) -> tf.distribute.Strategy:
  """Returns the strategy `--strategy` names; `auto` is mirrored with more than one GPU, else the default.

  The batch size given to tfft is the global batch: Keras splits each batch across the replicas.
  multi_worker_mirrored reads TF_CONFIG, which `worker_hosts` and `task_index` set when given; it must be
  built before TensorFlow runs any op.
  """
  if worker_hosts:
    os.environ["TF_CONFIG"] = tf_config(worker_hosts, task_index)
  if name == "multi_worker_mirrored":  # first: listing devices would start TF before collectives are configured
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    logging.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy
  gpus = tf.config.list_logical_devices("GPU")
  if name == "auto":
    name = "mirrored" if len(gpus) > 1 else "default"
  if name == "default":
    strategy = tf.distribute.get_strategy()
  elif name == "one_device":
    strategy = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  elif name == "mirrored":
    # Without GPUs, mirror over the logical CPUs (one, unless the CPU was split with
    # tf.config.set_logical_device_configuration, as the tests do).
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    strategy = tf.distribute.MirroredStrategy(devices)
  elif name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
  else:
    raise ValueError(f"unknown strategy {name!r}")
  logging.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
  return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the real checkpoints, report and export (always, outside multi-worker jobs)."""
  return bool(getattr(strategy.extended, "should_checkpoint", True))


def worker_index(strategy: tf.distribute.Strategy) -> int:
  """This process's task index in a multi-worker job (0 elsewhere)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  return int(getattr(resolver, "task_id", 0) or 0)


def gather_from_workers(strategy: tf.distribute.Strategy, values: Sequence[int]) -> np.ndarray:
  """Every worker's `values`, one row per replica, through a collective; outside multi-worker jobs just [values]."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return np.array([list(values)], dtype=np.int64)
  local = tf.constant([list(values)], tf.int64)
  per_replica = strategy.experimental_distribute_values_from_function(lambda context: local)
  return strategy.gather(per_replica, axis=0).numpy()


def build_for_multi_worker(model, strategy: tf.distribute.Strategy, batch: Callable):
  """Works around Keras 3's fit/evaluate under MultiWorkerMirroredStrategy (keras-team/keras#20585).

  Before its first step, Keras builds the optimizer and metrics from one batch, which it first averages across
  replicas with strategy.reduce; under MultiWorkerMirroredStrategy that reduce fails on the PerReplica batch
  ("Attempt to convert a value (PerReplica...) to a Tensor"). Here the same build runs on one local,
  undistributed batch (`batch()`), and Keras' own attempt is skipped for this model. Other strategies are left
  alone (and `batch` is not called).
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return
  # Not only before a phase's first step: a resumed phase has its optimizer built already (its state restored),
  # but its compiled metrics and loss are not, and Keras would build them from the PerReplica batch. Keras'
  # _symbolic_build builds only what is unbuilt, so the restored optimizer state is kept.
  patch_keras_multi_worker_reduce()
  with strategy.scope():
    model._symbolic_build(data_batch=batch())  # pylint: disable=protected-access
  model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None  # pylint: disable=protected-access


def patch_keras_multi_worker_reduce():
  """Works around Keras 3 reducing each step's scalar logs with strategy.reduce("MEAN", v, axis=0) under
  MultiWorkerMirroredStrategy, which fails for a scalar ("Invalid reduction dimension 0 for input with 0
  dimensions", keras-team/keras#20585): scalars are averaged across replicas without an axis instead."""
  from keras.src.backend.tensorflow import trainer as tf_trainer  # pylint: disable=g-import-not-at-top
  if getattr(tf_trainer.reduce_per_replica, "_tfft_patched", False):
    return
  original = tf_trainer.reduce_per_replica

  def reduce_per_replica(values, strategy, reduction):
    if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
      def reduce(v):
        if isinstance(v, tf.distribute.DistributedValues) or tf.is_tensor(v):
          rank = v.shape.rank if tf.is_tensor(v) else strategy.experimental_local_results(v)[0].shape.rank
          if rank == 0:
            return strategy.reduce("MEAN", v, axis=None)
        return original(v, strategy, reduction)
      import keras  # pylint: disable=g-import-not-at-top
      return keras.tree.map_structure(reduce, values)
    return original(values, strategy, reduction)

  reduce_per_replica._tfft_patched = True  # pylint: disable=protected-access
  tf_trainer.reduce_per_replica = reduce_per_replica


def split_global_batches(strategy: tf.distribute.Strategy, make_dataset: Callable[[], tf.data.Dataset]):
  """The dataset `make_dataset()` of global batches, distributed so that each replica takes a fixed slice of each.

  Under MultiWorkerMirroredStrategy, tf.data's own sharding of batched data rebatches the stream, so how a batch
  is split between replicas depends on the partial batches before it: a resumed phase, whose stream starts at a
  later epoch, would split its batches differently from an uninterrupted one. Here replica r of R takes rows
  [r * k, (r + 1) * k) of every global batch (k = ceil(rows / R); a short last batch can leave a replica none,
  which Keras' mean loss counts as zero), so the split depends on the batch alone. Other strategies get the
  dataset as it is (Keras splits its batches itself).
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return make_dataset()
  replicas = strategy.num_replicas_in_sync

  def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local

    def take(replica, batch):
      rows = tf.shape(tf.nest.flatten(batch)[0])[0]
      k = (rows + replicas - 1) // replicas
      start = tf.minimum(replica * k, rows)
      stop = tf.minimum(start + k, rows)
      return tf.nest.map_structure(lambda t: t[start:stop], batch)

    ds = make_dataset()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # The local replicas' slices of one global batch, in replica order, then the next batch's.
    return ds.flat_map(lambda *batch: tf.data.Dataset.range(local).map(
        lambda j: take(tf.cast(first + j, tf.int32), batch if len(batch) > 1 else batch[0]))).with_options(options)

  return strategy.distribute_datasets_from_function(per_worker)
