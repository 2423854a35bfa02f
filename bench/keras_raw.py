"""Contender (b): a plain Keras `fit` of MiniLM + mean pooling + Dense on pre-tokenized in-memory tensors.

No tfft code: this is what a user would write by hand. Prints one JSON line with the steady-state training
throughput: optimizer steps x batch / their wall time, after --warmup_steps, for --min_seconds (bench/stats.py).

Usage: python bench/keras_raw.py DATA.jsonl BACKBONE_DIR --precision=float32 --batch_size=32 --seq=128
       [--profile_dir=DIR --profile_batches=3,5]
"""

import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import stats  # noqa: E402  (bench/stats.py)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def load_data(data, backbone_dir, seq):
  """The texts of DATA.jsonl tokenized by the backbone's preprocessor, the label ids and the class names."""
  import keras_hub
  import numpy as np
  import tensorflow as tf

  rows = [json.loads(line) for line in open(data)]
  names = sorted({r["label"] for r in rows})
  y = np.array([names.index(r["label"]) for r in rows])
  preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(backbone_dir, sequence_length=seq)
  x = preprocessor(tf.constant([r["text"] for r in rows]))
  return {k: np.asarray(v) for k, v in x.items()}, y, names


def build_model(backbone_dir, num_classes, precision="float32", steps_per_execution=1):
  """MiniLM + mean pooling + dropout + Dense, compiled with AdamW: the model a user would write by hand."""
  import keras
  import keras_hub

  keras.mixed_precision.set_global_policy(precision)
  backbone = keras_hub.models.Backbone.from_preset(backbone_dir, dtype=precision)
  inputs = {k: keras.Input((None,), dtype="int32", name=k) for k in ("token_ids", "segment_ids", "padding_mask")}
  sequence = backbone(inputs)["sequence_output"]
  pooled = keras.layers.GlobalAveragePooling1D()(sequence, mask=inputs["padding_mask"])
  logits = keras.layers.Dense(num_classes, dtype="float32")(keras.layers.Dropout(0.1)(pooled))
  model = keras.Model(inputs, logits)
  model.compile(optimizer=keras.optimizers.AdamW(5e-5), metrics=["accuracy"],
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=steps_per_execution)
  return model


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("data")
  parser.add_argument("backbone")
  parser.add_argument("--precision", default="float32")
  parser.add_argument("--epochs", type=int, default=100, help="at most; the fit stops after --min_seconds")
  parser.add_argument("--warmup_steps", type=int, default=2, help="first optimizer steps left out (tracing)")
  parser.add_argument("--min_seconds", type=float, default=30, help="steady-state seconds to measure")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--steps_per_execution", type=int, default=1)
  parser.add_argument("--profile_dir", default="", help="trace --profile_batches with the TF profiler into this dir")
  parser.add_argument("--profile_batches", default="3,5", help="FIRST,LAST batch to trace (counted across epochs)")
  args = parser.parse_args()

  import keras

  x, y, names = load_data(args.data, args.backbone, args.seq)
  model = build_model(args.backbone, len(names), args.precision, args.steps_per_execution)
  clock = stats.step_clock(keras, batch_size=args.batch_size, warmup_steps=args.warmup_steps,
                           min_seconds=args.min_seconds)
  callbacks = [clock]
  if args.profile_dir:
    first, last = (int(b) for b in args.profile_batches.split(","))
    callbacks.append(keras.callbacks.TensorBoard(args.profile_dir, profile_batch=(first, last)))
  model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0, callbacks=callbacks)
  print(json.dumps({**clock.result(), "total_steps": int(model.optimizer.iterations.numpy())}))


if __name__ == "__main__":
  main()
