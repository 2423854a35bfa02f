"""GFLOP/s of the MiniLM fine-tune step's own matrix products, forward and backward, beside the bench's peak.

The step (batch 32, 128 tokens, so 4096 token rows) multiplies by 384x384 (the attention's query, key, value and
output projections), 384x1536 and 1536x384 (the feed-forward layers); its backward pass runs two products per
forward one (dy @ W^T and x^T @ dy, each with a random dy, so that no graph optimisation can fold them). The
attention core (softmax(Q K^T / sqrt(d)) V over 32 x 12 heads of 128 x 32) is timed forward and backward as one
call. `peak` is bench/run.py's matmul_peak product (4096x1536 by 1536x1536, forward), in the same process.

Usage: python bench/matmul_shapes.py [--blocks=5]
Prints one line of JSON: GFLOP/s per product (best block of 10 calls) and each as a share of the peak.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # tfft's kernel settings, as bench/run.py's matmul_peak


def best_gflops(fn, args, flops, blocks):
  import tensorflow as tf
  tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
  best = float("inf")
  for _ in range(blocks):
    start = time.perf_counter()
    for _ in range(10):
      out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), out)
    best = min(best, (time.perf_counter() - start) / 10)
  return flops / best / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--blocks", type=int, default=5, help="blocks of 10 calls per product; the best is kept")
  args = parser.parse_args()
  import tensorflow as tf
  rows, hidden, inter, heads, seq = 4096, 384, 1536, 12, 128
  forward = tf.function(lambda x, w: tf.matmul(x, w))
  backward = tf.function(lambda x, w, dy: (tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)))
  out = {}
  x, w = tf.random.normal((rows, inter)), tf.random.normal((inter, inter))
  out["peak"] = best_gflops(forward, (x, w), 2 * rows * inter * inter, args.blocks)
  for name, k, n in (("proj_384x384", hidden, hidden), ("ffn_in_384x1536", hidden, inter),
                     ("ffn_out_1536x384", inter, hidden)):
    x, w, dy = tf.random.normal((rows, k)), tf.random.normal((k, n)), tf.random.normal((rows, n))
    out[f"{name}_forward"] = best_gflops(forward, (x, w), 2 * rows * k * n, args.blocks)
    out[f"{name}_backward"] = best_gflops(backward, (x, w, dy), 4 * rows * k * n, args.blocks)

  head = hidden // heads

  @tf.function
  def attention(q, k, v, dy):
    with tf.GradientTape() as tape:
      tape.watch([q, k, v])
      probs = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * head ** -0.5, axis=-1)
      context = tf.matmul(probs, v)
    return tape.gradient(context, [q, k, v], output_gradients=dy)

  q, k, v, dy = (tf.random.normal((32, heads, seq, head)) for _ in range(4))
  attention_flops = 3 * 2 * 2 * 32 * heads * seq * seq * head  # QK^T and PV, forward and their two backward each
  out["attention_core_forward_backward"] = best_gflops(attention, (q, k, v, dy), attention_flops, args.blocks)
  out["share_of_peak"] = {key: value / out["peak"] for key, value in out.items() if key != "peak"}
  print(json.dumps(out))


if __name__ == "__main__":
  main()
