"""What a training step costs besides the graph call: tfft's per-step callbacks and reading the next batch.

Times, per call, (1) the callback list tfft.fit.phases gives a phase's fit (Throughput, StopOnNaN, BestCheckpoint,
LearningRateLogger, CSVLogger, TensorBoard, EpochBackup, and Keras' History and progress logger), dispatching
on_train_batch_begin/end with the tensor logs a train step returns, against Keras' own History + progress logger
alone, and each of tfft's callbacks alone with those two; (2) `next()` on tfft's training dataset of MiniLM-shaped batches (32 x 128 tokens, fixed and dynamic padding).
Prints one JSON line, microseconds per step (median, min, max over --repeats).

Usage: python bench/step_overhead.py [--calls=2000] [--repeats=3]
"""

import argparse
import itertools
import json
import pathlib
import sys
import tempfile
import time

sys.path[:0] = [str(pathlib.Path(__file__).resolve().parents[1]), str(pathlib.Path(__file__).resolve().parent)]
import stats  # noqa: E402  (bench/stats.py)


def per_call_us(fn, calls: int) -> float:
  fn()
  start = time.perf_counter()
  for _ in range(calls):
    fn()
  return (time.perf_counter() - start) / calls * 1e6


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--calls", type=int, default=2000)
  parser.add_argument("--repeats", type=int, default=3, help="measurements of each, in turn")
  args = parser.parse_args()
  import tfft  # noqa: F401  (first: TF's kernel options, as in a tfft run)
  del tfft
  import keras
  import numpy as np
  import tensorflow as tf
  from tfft.config import Freeze
  from tfft.data import text_batches
  from tfft.fit import callbacks as callbacks_lib, phases, recipe
  from tfft.rundir import RunDir

  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  model.compile("sgd", "mse")
  model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0)  # builds the optimizer
  logs = {"loss": tf.constant(0.5), "accuracy": tf.constant(0.25)}
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    tfft_callbacks, _ = phases._callbacks(  # pylint: disable=protected-access
        recipe.Phase("finetune", 2, 1e-3, 0.0, Freeze("none")), run_dir=RunDir(tmp), monitor="val_loss",
        patience=2, examples_per_epoch=288, steps_per_epoch=9, stop=callbacks_lib.StopRequest())
    board = next(i for i, cb in enumerate(tfft_callbacks) if isinstance(cb, keras.callbacks.TensorBoard))
    with_keras_board = list(tfft_callbacks)
    with_keras_board[board] = keras.callbacks.TensorBoard(log_dir=tmp, profile_batch=0)
    lists = [("keras_defaults", []), ("tfft_phase_callbacks", tfft_callbacks),
             ("tfft_phase_callbacks_with_keras_TensorBoard", with_keras_board)]
    lists += [(f"only_{type(cb).__name__}", [cb]) for cb in tfft_callbacks]
    for _, (name, cbs) in itertools.product(range(args.repeats), lists):  # in turn
      cl = keras.callbacks.CallbackList(cbs, add_history=True, add_progbar=True, model=model, verbose=2, epochs=2,
                                        steps=9)
      cl.on_train_begin()
      cl.on_epoch_begin(0)

      def step():
        cl.on_train_batch_begin(0)
        cl.on_train_batch_end(0, logs)

      out.setdefault(f"{name}_us_per_step", []).append(per_call_us(step, args.calls))
      cl._flush_futures() if hasattr(cl, "_flush_futures") else None  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  lengths = rng.integers(20, 129, size=288)
  mask = np.arange(128)[None, :] < lengths[:, None]
  features = {"token_ids": np.where(mask, rng.integers(5, 30000, size=(288, 128)), 0).astype("int32"),
              "segment_ids": np.zeros((288, 128), "int32"), "padding_mask": mask}
  labels = rng.integers(0, 5, size=288)
  for padding in ("fixed", "dynamic"):
    ds = text_batches.make_dataset(features, labels, np.arange(288), num_classes=5, batch_size=32, shuffle=True,
                                   padding=padding, epochs=(0, 30))
    it = iter(ds)
    out[f"next_batch_{padding}_us_per_step"] = [per_call_us(lambda: next(it), 80) for _ in range(args.repeats)]
  print(json.dumps({k: {s: round(x, 1) for s, x in stats.spread(v).items() if s != "values"}
                    for k, v in out.items()}))


if __name__ == "__main__":
  main()
