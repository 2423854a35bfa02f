"""Contender (b): a plain Keras `fit` of MiniLM + mean pooling + Dense on pre-tokenized in-memory tensors.

No tfft code: this is what a user would write by hand. Prints one JSON line with the steady-state training
throughput (the last epoch; the first one pays for tracing).

Usage: python bench/keras_raw.py DATA.jsonl BACKBONE_DIR --precision=float32 --epochs=2 --batch_size=32 --seq=128
       [--profile_dir=DIR --profile_batches=3,5]
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


class EpochTimer:
  """Seconds of the training steps of each epoch (validation excluded)."""

  def __init__(self, keras):
    timer = self

    class _CB(keras.callbacks.Callback):
      def on_epoch_begin(self, epoch, logs=None):
        timer.start = time.perf_counter()

      def on_train_batch_end(self, batch, logs=None):
        timer.end = time.perf_counter()

      def on_epoch_end(self, epoch, logs=None):
        timer.seconds.append(timer.end - timer.start)

    self.seconds, self.callback = [], _CB()


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("data")
  parser.add_argument("backbone")
  parser.add_argument("--precision", default="float32")
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--steps_per_execution", type=int, default=1)
  parser.add_argument("--profile_dir", default="", help="trace --profile_batches with the TF profiler into this dir")
  parser.add_argument("--profile_batches", default="3,5", help="FIRST,LAST batch to trace (counted across epochs)")
  args = parser.parse_args()

  import keras
  import keras_hub
  import numpy as np
  import tensorflow as tf

  rows = [json.loads(line) for line in open(args.data)]
  names = sorted({r["label"] for r in rows})
  y = np.array([names.index(r["label"]) for r in rows])
  keras.mixed_precision.set_global_policy(args.precision)
  preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(args.backbone, sequence_length=args.seq)
  x = preprocessor(tf.constant([r["text"] for r in rows]))
  x = {k: np.asarray(v) for k, v in x.items()}
  backbone = keras_hub.models.Backbone.from_preset(args.backbone, dtype=args.precision)
  inputs = {k: keras.Input((None,), dtype="int32", name=k) for k in ("token_ids", "segment_ids", "padding_mask")}
  sequence = backbone(inputs)["sequence_output"]
  pooled = keras.layers.GlobalAveragePooling1D()(sequence, mask=inputs["padding_mask"])
  logits = keras.layers.Dense(len(names), dtype="float32")(keras.layers.Dropout(0.1)(pooled))
  model = keras.Model(inputs, logits)
  model.compile(optimizer=keras.optimizers.AdamW(5e-5), metrics=["accuracy"],
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=args.steps_per_execution)
  timer = EpochTimer(keras)
  callbacks = [timer.callback]
  if args.profile_dir:
    first, last = (int(b) for b in args.profile_batches.split(","))
    callbacks.append(keras.callbacks.TensorBoard(args.profile_dir, profile_batch=(first, last)))
  model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0, callbacks=callbacks)
  print(json.dumps({"examples_per_sec": len(rows) / timer.seconds[-1], "epoch_seconds": timer.seconds,
                    "examples": len(rows), "steps": int(model.optimizer.iterations.numpy())}))


if __name__ == "__main__":
  main()
