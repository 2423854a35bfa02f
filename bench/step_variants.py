"""Changes to tfft's fp32 fine-tune step tried for MFU, each against the unchanged step in the same process.

Contenders (bench/quick.py's TfftContender: MiniLM on BBC articles, seq 128, batch 32, AdamW at 5e-5), in turn,
--repeats times each, --min_seconds of steady-state steps per measurement (bench/stats.py):

  base        the step as tfft runs it
  jit         the whole train step compiled by XLA (--jit_compile)
  fused_gelu  the feed-forward GELU (keras-hub BERT's tanh approximation) and its gradient as one XLA-compiled
              element-wise kernel each, instead of TF's chain of Pow, Mul, AddV2 and Tanh ops

Usage: python bench/step_variants.py [--variants=jit,fused_gelu] [--repeats=3] [--min_seconds=30]
Prints each measurement, then each variant's paired ratio against base (median, min-max, verdict). MFU is
bench/quick.py's figure, whose matmul peak is measured in turn with the step.
"""

import argparse
import json
import math
import pathlib
import sys
import tempfile

BENCH = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]
import quick  # noqa: E402  (bench/quick.py)
import run  # noqa: E402
import stats  # noqa: E402

_TANH_C = math.sqrt(2 / math.pi)


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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variants", default="jit,fused_gelu")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--min_seconds", type=float, default=30.0)
  parser.add_argument("--examples", type=int, default=320)
  args = parser.parse_args()
  variants = [v for v in args.variants.split(",") if v]
  unknown = set(variants) - {"jit", "fused_gelu"}
  if unknown:
    raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))}; choose from jit, fused_gelu")
  import tfft  # noqa: F401  (first: it sets TF's kernel options before TensorFlow loads, as in a tfft run)

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
    results = stats.interleave(contenders, args.repeats)
  values = {k: [r["examples_per_sec"] for r in v] for k, v in results.items()}
  summary = {"examples_per_sec": {k: stats.spread(v) for k, v in values.items()},
             "ratio_to_base": {k: stats.paired_ratio(values[k], values["base"]) for k in values if k != "base"}}
  print(json.dumps(summary))
  for k, r in summary["ratio_to_base"].items():
    print(f"{k} / base: {stats.format_spread(r)}, {r['verdict']}")


if __name__ == "__main__":
  main()
