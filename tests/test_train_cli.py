"""The train CLI end to end on a tiny BERT: flagfile -> both phases -> metrics -> export -> reload in a clean process."""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np

from conftest import run_tfft, tiny_flags

# The last text is longer than one 16-token window, so the export must read it as two (--eval_windows=2).
TEXTS = ["cat dog horse", "red blue green", "one two three four", "the very purple fox",
         "one two three four five six " * 3 + "red blue green yellow purple orange " * 2]


def test_train_writes_the_run_and_one_export(tiny_run):
  tmp, proc = tiny_run
  run = tmp / "run"
  for name in ("flags.cfg", "labels.txt", "split_manifest.csv", "metrics.json", "run_state.json",
               "history_head.csv", "history_finetune.csv", "checkpoints/best_finetune.weights.h5"):
    assert (run / name).exists(), name
  assert (run / "logs" / "finetune").is_dir()
  assert (run / "labels.txt").read_text().split() == ["animals", "colors", "numbers"]
  versions = sorted(p.name for p in (tmp / "exports" / "tiny").iterdir())
  assert versions == ["1"], versions  # no temporary directory left behind
  export = tmp / "exports" / "tiny" / "1"
  assert (export / "saved_model.pb").exists()
  assert (export / "assets.extra" / "labels.txt").read_text() == (run / "labels.txt").read_text()

  metrics = json.loads((run / "metrics.json").read_text())
  assert metrics["split_sizes"] == {"train": 36, "val": 12, "test": 12}
  assert metrics["num_examples"] == 12 and len(metrics["confusion_matrix"]) == 3
  assert metrics["accuracy"] > 0.6, metrics["accuracy"]  # three word-disjoint classes; chance is 1/3

  # TensorFlow's C++ start-up notes are filtered out: stderr starts with tfft's own log lines.
  assert not any(line.startswith(("WARNING: All log messages", "I0000")) for line in proc.stderr.splitlines())
  assert "] strategy " in proc.stderr.splitlines()[0], proc.stderr.splitlines()[:3]

  out = proc.stdout
  assert "data:     train=36  val=12  test=12" in out
  assert "phase head" in out and "phase finetune" in out and "trainable=51" in out
  assert f"accuracy={metrics['accuracy']:.4f}" in out and "macro_f1=" in out
  assert f"export:   {export}" in out

  # 36 training texts at batch 8 are 5 steps per epoch: --head_min_steps=10 stretches the one head epoch to 2.
  head = json.loads((run / "run_state.json").read_text())["phases"]["head"]
  assert head["planned_epochs"] == 2 and head["epochs_run"] == 2, head
  assert "phase head: 5 steps per epoch, so up to 2 epochs instead of 1 (--head_min_steps=10)" in proc.stderr
  assert "| head | backbone frozen, head trains | 2 / 2 |" in (export / "assets.extra" / "model_card.md").read_text()


def test_flags_cfg_reproduces_the_config(tiny_run):
  from tfft import flags as tfft_flags

  tmp, _ = tiny_run
  try:
    tfft_flags.FLAGS(["prog", f"--flagfile={tmp / 'tiny.cfg'}"])
    original = tfft_flags.config_from_flags()
    tfft_flags.FLAGS.unparse_flags()
    tfft_flags.FLAGS(["prog", f"--flagfile={tmp / 'run' / 'flags.cfg'}"])
    assert tfft_flags.config_from_flags() == original
  finally:
    tfft_flags.FLAGS.unparse_flags()


def test_rerunning_a_finished_run_refuses_and_keeps_everything(tiny_run):
  tmp, _ = tiny_run
  before = (tmp / "run" / "metrics.json").read_text()
  proc = run_tfft("train", [f"--flagfile={tmp / 'tiny.cfg'}"])
  assert proc.returncode == 2
  assert "holds a finished run; pass --overwrite" in proc.stderr
  assert (tmp / "run" / "metrics.json").read_text() == before
  assert sorted(p.name for p in (tmp / "exports" / "tiny").iterdir()) == ["1"]


def test_saved_model_cli_shows_a_string_input(tiny_run):
  tmp, _ = tiny_run
  cli = pathlib.Path(sys.executable).parent / "saved_model_cli"  # beside the interpreter running the tests
  cli = cli if cli.exists() else "saved_model_cli"
  out = subprocess.run([str(cli), "show", "--dir", str(tmp / "exports" / "tiny" / "1"), "--all"],
                       capture_output=True, text=True, check=True).stdout
  assert "inputs['text']" in out and "DT_STRING" in out
  for name in ("probabilities", "class_id", "class_name"):
    assert f"outputs['{name}']" in out


# Runs with the op set of stock TF Serving: TensorFlow plus TF Text, nothing of Keras, keras-hub or tfft.
_SERVE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tokenizer ops, as TF Serving links them
    sig = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    out = sig(text=tf.constant(json.loads(sys.argv[2])))
    leaked = sorted(m for m in ("keras_hub", "tfft") if m in sys.modules)
    print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                      "class_id": out["class_id"].numpy().tolist(),
                      "class_name": [c.decode() for c in out["class_name"].numpy()],
                      "dtype": out["probabilities"].dtype.name, "leaked": leaked}))
""")


def test_export_round_trip_matches_the_in_process_model(tiny_run, tiny_bert_preset):
  import keras

  from tfft.data import windows
  from tfft.model import heads
  from tfft.model import text_backbones

  tmp, _ = tiny_run
  proc = subprocess.run([sys.executable, "-c", _SERVE, str(tmp / "exports" / "tiny" / "1"), json.dumps(TEXTS)],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["leaked"] == [] and served["dtype"] == "float32"

  spec = text_backbones.resolve(str(tiny_bert_preset))
  model = heads.build_text_classifier(text_backbones.load_backbone(spec), num_classes=3, pooling="mean")
  model.load_weights(str(tmp / "run" / "checkpoints" / "after_finetune.weights.h5"))
  preprocessor = text_backbones.load_preprocessor(spec, 16)
  # The export serves softmax(logits / T), T fitted on validation (--calibrate=temperature, the default).
  temperature = json.loads((tmp / "run" / "metrics.json").read_text())["calibration"]["temperature"]
  expected = keras.ops.convert_to_numpy(keras.ops.softmax(
      windows.predict_logits(model, preprocessor, TEXTS, 2) / temperature))
  # The served model really read two windows of the long text: one window alone gives other probabilities.
  first_window = keras.ops.convert_to_numpy(keras.ops.softmax(
      model(preprocessor(TEXTS[-1:]), training=False) / temperature))
  assert np.abs(first_window[0] - expected[-1]).max() > 1e-4

  np.testing.assert_allclose(np.array(served["probabilities"]), expected, atol=1e-5)
  assert served["class_id"] == expected.argmax(-1).tolist()
  names = ["animals", "colors", "numbers"]
  assert served["class_name"] == [names[i] for i in served["class_id"]]


def test_mixed_precision_bucketed_run_exports_float32(tiny_bert_preset, tiny_textdir, tmp_path):
  import tensorflow as tf

  proc = run_tfft("train", tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path, mixed_precision="mixed_bfloat16",
                                      padding="bucket", pad_to_multiple_of=4, steps_per_execution=2, epochs=1))
  assert proc.returncode == 0, proc.stderr[-3000:]
  history = (tmp_path / "run" / "history_finetune.csv").read_text().splitlines()
  assert "examples_per_sec" in history[0].split(",") and len(history) == 2
  loaded = tf.saved_model.load(str(tmp_path / "exports" / "tiny" / "1"))
  dtypes = {v.dtype.name for v in loaded.variables}
  assert dtypes <= {"float32", "int64", "int32"} and "float32" in dtypes, dtypes
  out = loaded.signatures["serving_default"](text=tf.constant(TEXTS))
  assert out["probabilities"].dtype == tf.float32
  np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)
