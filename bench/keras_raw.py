"""Contender (b): a plain Keras `fit` of MiniLM + mean pooling + Dense on pre-tokenized in-memory tensors.

No tfft code: this is what a user would write by hand. Prints one JSON line with the steady-state training
throughput (the last epoch; the first one pays for tracing).

Usage: python bench/keras_raw.py DATA.jsonl BACKBONE_DIR --precision=float32 --epochs=2 --batch_size=32 --seq=128
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
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  timer = EpochTimer(keras)
  model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0, callbacks=[timer.callback])
  print(json.dumps({"examples_per_sec": len(rows) / timer.seconds[-1], "epoch_seconds": timer.seconds,
                    "examples": len(rows)}))


if __name__ == "__main__":
  main()
