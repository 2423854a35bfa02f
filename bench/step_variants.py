"""Changes to tfft's fp32 fine-tune step tried for MFU, each against the unchanged step in the same process.

Contenders (bench/quick.py's TfftContender: MiniLM on BBC articles, seq 128, batch 32, AdamW at 5e-5), in turn,
--repeats times each, --min_seconds of steady-state steps per measurement (bench/stats.py):

  base        the step as tfft runs it
  jit         the whole train step compiled by XLA (--jit_compile)
  fused_gelu  the feed-forward GELU (keras-hub BERT's tanh approximation) and its gradient as one XLA-compiled
              element-wise kernel each, instead of TF's chain of Pow, Mul, AddV2 and Tanh ops
  mask_dropout  every Dropout layer as one multiply by a mask of 0 and 1/(1-rate), so that its gradient is one
              multiply too, instead of TF's scale-then-select (a select forward and one backward); the same
              random numbers, so the same outputs and gradients, bit for bit
  no_dropout  every Dropout layer's rate set to 0: not a candidate (it changes what is trained), the most any
              cheaper dropout could buy
  inter_op_1  TensorFlow's inter-op thread pool at 1 thread instead of its default (one per core); whole
              processes, the base step in processes of its own, in turn with them

Usage: python bench/step_variants.py [--variants=jit,fused_gelu,mask_dropout,no_dropout,inter_op_1] [--repeats=3]
       [--min_seconds=30]
Prints each measurement, then each variant's paired ratio against base (median, min-max, verdict). MFU is
bench/quick.py's figure, whose matmul peak is measured in turn with the step.
"""

import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile

BENCH = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]
import quick  # noqa: E402  (bench/quick.py)
import run  # noqa: E402
import stats  # noqa: E402

_TANH_C = math.sqrt(2 / math.pi)
VARIANTS = ("jit", "fused_gelu", "mask_dropout", "no_dropout", "inter_op_1")
PROCESS_VARIANTS = {"inter_op_1": ["--inter_op_threads=1"]}  # thread pools are fixed once TF starts


def fused_gelu():
  """keras.activations.gelu(x, approximate=True) with its gradient, each an XLA-compiled function."""
  import tensorflow as tf

  @tf.function(jit_compile=True)
  def forward(x):
    return 0.5 * x * (1 + tf.tanh(_TANH_C * (x + 0.044715 * x * x * x)))

  @tf.function(jit_compile=True)
  def backward(x, dy):
    t = tf.tanh(_TANH_C * (x + 0.044715 * x * x * x))
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _TANH_C * (1 + 3 * 0.044715 * x * x))

  @tf.custom_gradient
  def gelu(x):
    return forward(x), lambda dy: backward(x, dy)

  return gelu


def check_gelu(gelu) -> dict:
  """Largest differences of `gelu` and its gradient from Keras' on normal inputs scaled by 3."""
  import keras
  import tensorflow as tf
  x = tf.random.stateless_normal((64, 1536), seed=(0, 1)) * 3
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    reference, fused = keras.activations.gelu(x, approximate=True), gelu(x)
  return {"max_abs_diff": float(tf.reduce_max(tf.abs(reference - fused))),
          "max_abs_grad_diff": float(tf.reduce_max(tf.abs(tape.gradient(reference, x) - tape.gradient(fused, x))))}


def mask_dropout(layer):
  """Makes a keras.layers.Dropout multiply its input by a mask of 0 and 1/(1-rate) drawn as Keras draws it."""
  import tensorflow as tf
  from keras.src.backend.tensorflow import random as tf_random  # Keras' own seed handling, for the same draws

  def call(inputs, training=False):
    if not (training and layer.rate > 0):
      return inputs
    seed = tf_random._cast_seed(tf_random.draw_seed(layer.seed_generator))  # pylint: disable=protected-access
    shape = tf_random._get_concrete_noise_shape(inputs, layer.noise_shape)  # pylint: disable=protected-access
    keep = tf.random.stateless_uniform(shape, seed=seed, dtype=inputs.dtype) >= layer.rate
    return inputs * tf.where(keep, tf.constant(1 / (1 - layer.rate), inputs.dtype), tf.constant(0, inputs.dtype))

  layer.call = call


def dropout_layers(model):
  import keras
  layers = model._flatten_layers()  # pylint: disable=protected-access
  return [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]


def check_mask_dropout() -> dict:
  """Whether mask_dropout gives Keras' outputs and gradients exactly, on one seed."""
  import keras
  import numpy as np
  import tensorflow as tf
  keras_layer, masked = keras.layers.Dropout(0.1, seed=3), keras.layers.Dropout(0.1, seed=3)
  mask_dropout(masked)
  x = tf.random.stateless_normal((4, 128, 384), seed=(0, 1))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    reference, out = keras_layer(x, training=True), masked(x, training=True)
  return {"outputs_equal": bool(np.array_equal(reference.numpy(), out.numpy())),
          "gradients_equal": bool(np.array_equal(tape.gradient(reference, x).numpy(), tape.gradient(out, x).numpy())),
          "dropped_share": float(tf.reduce_mean(tf.cast(out == 0, tf.float32)))}


def one_fit(args) -> dict:
  """The base step in this process, under --inter_op_threads (0: TensorFlow's default)."""
  import tensorflow as tf
  if args.inter_op_threads:
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
  with tempfile.TemporaryDirectory(prefix="tfft-step-variants-") as tmp:
    tmp = pathlib.Path(tmp)
    paths, n_full, _ = run.write_data(tmp, args.examples)
    return quick.articles_contender(tmp, paths["full"], n_full).fit(min_seconds=args.min_seconds)


def in_process(args, *flags) -> dict:
  """one_fit in a process of its own."""
  out = run._run([run.PY, __file__, "--one_fit", f"--examples={args.examples}",  # pylint: disable=protected-access
                  f"--min_seconds={args.min_seconds}", *flags])
  return run._last_json(out)  # pylint: disable=protected-access


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variants", default="jit,fused_gelu")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--min_seconds", type=float, default=30.0)
  parser.add_argument("--examples", type=int, default=320)
  parser.add_argument("--one_fit", action="store_true", help=argparse.SUPPRESS)  # a process of a process variant
  parser.add_argument("--inter_op_threads", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  variants = [v for v in args.variants.split(",") if v]
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    parser.error(f"--variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
  import tfft  # noqa: F401  (first: it sets TF's kernel options before TensorFlow loads, as in a tfft run)
  if args.one_fit:
    print(json.dumps(one_fit(args)))
    return
  processes = [v for v in variants if v in PROCESS_VARIANTS]
  if processes and len(processes) < len(variants):
    parser.error(f"--variants: {', '.join(processes)} run in whole processes; measure them apart from "
                 f"{', '.join(v for v in variants if v not in PROCESS_VARIANTS)}")
  if processes:
    contenders = {"base": lambda: in_process(args)}
    contenders.update({v: (lambda flags: lambda: in_process(args, *flags))(PROCESS_VARIANTS[v]) for v in processes})
    report(stats.interleave(contenders, args.repeats))
    return

  with tempfile.TemporaryDirectory(prefix="tfft-step-variants-") as tmp:
    tmp = pathlib.Path(tmp)
    paths, n_full, _ = run.write_data(tmp, args.examples)
    make = lambda: quick.articles_contender(tmp, paths["full"], n_full)
    base = make()
    contenders = {"base": lambda: base.fit(min_seconds=args.min_seconds)}
    if "jit" in variants:  # the same model as base, compiled by XLA in its own fit
      contenders["jit"] = lambda: base.fit(jit_compile=True, warmup_steps=3, min_seconds=args.min_seconds)
    if "fused_gelu" in variants:
      gelu = fused_gelu()
      print(json.dumps({"fused_gelu_vs_keras": check_gelu(gelu)}))
      fused = make()
      for block in fused.blocks:
        block._feedforward_intermediate_dense.activation = gelu  # pylint: disable=protected-access
      contenders["fused_gelu"] = lambda: fused.fit(min_seconds=args.min_seconds)
    if "mask_dropout" in variants:
      print(json.dumps({"mask_dropout_vs_keras": check_mask_dropout()}))
      masked = make()
      for layer in dropout_layers(masked.model):
        mask_dropout(layer)
      contenders["mask_dropout"] = lambda: masked.fit(min_seconds=args.min_seconds)
    if "no_dropout" in variants:
      undropped = make()
      for layer in dropout_layers(undropped.model):
        layer.rate = 0.0
      contenders["no_dropout"] = lambda: undropped.fit(min_seconds=args.min_seconds)
    results = stats.interleave(contenders, args.repeats)
  report(results)


def report(results):
  values = {k: [r["examples_per_sec"] for r in v] for k, v in results.items()}
  summary = {"examples_per_sec": {k: stats.spread(v) for k, v in values.items()},
             "ratio_to_base": {k: stats.paired_ratio(values[k], values["base"]) for k in values if k != "base"}}
  print(json.dumps(summary))
  for k, r in summary["ratio_to_base"].items():
    print(f"{k} / base: {stats.format_spread(r)}, {r['verdict']}")


if __name__ == "__main__":
  main()
