"""The train CLI on images end to end: a 16x16 image folder, tiny_cnn weights written by the test and loaded through
--backbone_weights, both phases, export, and a clean-process round trip of both signatures with raw JPEG bytes.
The bad image inputs are rows of the catalogue in tests/test_cli_errors.py."""

import io
import json
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import image_flags, make_image, run_tfft

NAMES = ["2", "10", "dots"]


@pytest.fixture(scope="module")
def image_run(tiny_imagedir, tiny_cnn_weights, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("image_cli")
  flagfile = tmp / "img.cfg"
  # Augmentation on: the export must leave it out. A non-image file in a class folder is skipped and counted.
  data = tmp / "data"
  shutil.copytree(tiny_imagedir, data)
  (data / "dots" / "readme.txt").write_text("not an image")
  flagfile.write_text("\n".join(image_flags(data, tmp, backbone_weights=tiny_cnn_weights, flip="horizontal",
                                            rotation=0.05, contrast=0.2, head_epochs=2, epochs=2)) + "\n")
  proc = run_tfft("train", [f"--flagfile={flagfile}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp, proc


def test_train_writes_the_run_the_backbone_and_one_export(image_run):
  tmp, proc = image_run
  run = tmp / "run"
  for name in ("flags.cfg", "labels.txt", "split_manifest.csv", "metrics.json", "backbone.weights.h5",
               "checkpoints/after_finetune.weights.h5"):
    assert (run / name).exists(), name
  assert (run / "labels.txt").read_text().split() == NAMES
  export = tmp / "exports" / "img" / "1"
  assert sorted(p.name for p in export.parent.iterdir()) == ["1"]
  assert (export / "assets.extra" / "labels.txt").read_text() == (run / "labels.txt").read_text()
  metrics = json.loads((run / "metrics.json").read_text())
  assert metrics["split_sizes"] == {"train": 24, "val": 6, "test": 6}
  out = proc.stdout
  assert "data:     train=24  val=6  test=6" in out
  assert "skipped:  1 file(s) that do not decode as images" in out
  assert "readme.txt" in proc.stderr  # logged by path
  assert "phase head" in out and "phase finetune" in out and f"export:   {export}" in out


def test_saved_backbone_weights_load_into_a_new_run(image_run, tiny_cnn_weights):
  from tfft.model import image_backbones

  tmp, _ = image_run
  spec = image_backbones.resolve("tiny_cnn")
  backbone = image_backbones.load_backbone(spec, image_size=16, weights=str(tmp / "run" / "backbone.weights.h5"))
  initial = image_backbones.load_backbone(spec, image_size=16, weights=str(tiny_cnn_weights))
  # Fine-tuning (--freeze=none) moved the backbone away from the weights the run started from.
  assert any(not np.array_equal(a, b) for a, b in zip(backbone.get_weights(), initial.get_weights()))


def _requests():
  """Raw JPEG and PNG bytes of 24x24 images (not the model's 16x16, so the graph resizes), and uint8 pixels."""
  from PIL import Image

  encoded = []
  for i, (label, fmt) in enumerate([("2", "JPEG"), ("10", "PNG"), ("dots", "JPEG")]):
    buffer = io.BytesIO()
    Image.fromarray(make_image(label, 100 + i, size=24)[..., :3]).save(buffer, format=fmt)
    encoded.append(buffer.getvalue())
  pixels = np.stack([make_image(label, 200 + i, size=20)[..., :3] for i, label in enumerate(NAMES)])
  return encoded, pixels


# Runs with the op set of stock TF Serving: TensorFlow plus TF Text, nothing of Keras, keras-hub or tfft.
_SERVE = textwrap.dedent("""
    import base64, json, sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # stock TF Serving links these ops
    loaded = tf.saved_model.load(sys.argv[1])
    request = json.loads(sys.stdin.read())
    # What TF Serving's REST API hands the graph for {"b64": ...}: the decoded raw bytes.
    raw = [base64.b64decode(b) for b in request["b64"]]
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(raw))
    by_pixels = loaded.signatures["serving_images"](images=tf.constant(np.array(request["pixels"], np.uint8)))
    out = {name: {"probabilities": o["probabilities"].numpy().tolist(), "class_id": o["class_id"].numpy().tolist(),
                  "class_name": [c.decode() for c in o["class_name"].numpy()], "dtype": o["probabilities"].dtype.name}
           for name, o in (("bytes", by_bytes), ("pixels", by_pixels))}
    out["leaked"] = sorted(m for m in ("keras_hub", "tfft") if m in sys.modules)
    print(json.dumps(out))
""")


def test_export_round_trip_matches_the_in_process_model(image_run):
  import base64

  import tensorflow as tf

  from tfft import flags as tfft_flags
  from tfft.tasks import registry as tasks
  from tfft.data import image_batches

  tmp, _ = image_run
  encoded, pixels = _requests()
  request = json.dumps({"b64": [base64.b64encode(b).decode() for b in encoded], "pixels": pixels.tolist()})
  proc = subprocess.run([sys.executable, "-c", _SERVE, str(tmp / "exports" / "img" / "1")], input=request,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["leaked"] == []

  # The in-process model, rebuilt from the run's own flags.cfg and trained weights.
  try:
    tfft_flags.FLAGS(["prog", f"--flagfile={tmp / 'run' / 'flags.cfg'}"])
    config = tfft_flags.config_from_flags()
  finally:
    tfft_flags.FLAGS.unparse_flags()
  task = tasks.build_task(config)
  model = task.build_model(3, tf.distribute.get_strategy()).model
  model.load_weights(str(tmp / "run" / "checkpoints" / "after_finetune.weights.h5"))
  temperature = json.loads((tmp / "run" / "metrics.json").read_text())["calibration"]["temperature"]
  # Fed the same pixels TF decodes from the JPEG/PNG bytes, through the same resize as training.
  decoded = tf.stack([image_batches.decode(tf.constant(b), 16) for b in encoded])
  for name, inputs in (("bytes", decoded), ("pixels", image_batches.resize(pixels, 16))):
    expected = tf.nn.softmax(model(inputs, training=False) / temperature).numpy()  # --calibrate=temperature
    got = served[name]
    assert got["dtype"] == "float32"
    assert np.abs(np.array(got["probabilities"]) - expected).max() <= 1e-5, name
    assert got["class_id"] == expected.argmax(-1).tolist()
    assert got["class_name"] == [NAMES[i] for i in got["class_id"]]


def test_saved_model_cli_shows_both_signatures(image_run):
  tmp, _ = image_run
  cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
  out = subprocess.run([str(cli if cli.exists() else "saved_model_cli"), "show", "--dir", str(tmp / "exports" / "img" / "1"), "--all"],
                       capture_output=True, text=True, check=True).stdout
  assert "signature_def['serving_default']" in out and "inputs['image_bytes']" in out and "DT_STRING" in out
  assert "signature_def['serving_images']" in out and "inputs['images']" in out and "DT_UINT8" in out


def test_evaluate_scores_the_image_export_as_train_did(image_run):
  tmp, _ = image_run
  run = tmp / "run"
  proc = run_tfft("evaluate", [f"--model={tmp / 'exports' / 'img' / '1'}", f"--report_dir={tmp / 'eval'}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  evaluated = json.loads((tmp / "eval" / "metrics.json").read_text())
  trained = json.loads((run / "metrics.json").read_text())
  assert evaluated["num_examples"] == trained["num_examples"] == 6
  assert evaluated["accuracy"] == pytest.approx(trained["accuracy"])
  assert evaluated["confusion_matrix"] == trained["confusion_matrix"]
  assert (tmp / "eval" / "misclassified.csv").exists() and (tmp / "eval" / "confusion_matrix.png").exists()
