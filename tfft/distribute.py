"""tf.distribute strategies by name, and which process of a multi-worker job writes the outputs."""

import json
import os
from typing import Sequence

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
