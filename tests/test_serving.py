"""predict on text and image exports, and TF Serving's REST bodies decoded as the server does, in a clean process.

The image export is built here directly with tfft's serving contract (encoded image bytes in as a [None] tf.string,
decoded in the graph; probabilities, class_id and class_name out), without a training run.
"""

import base64
import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfft.fit import scoring
from tfft.tasks import registry

from conftest import run_tfft

COLORS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
  """EXPORT/1: names an image's dominant colour; and IMAGES/ with a red and a blue PNG and a green JPEG."""
  import tensorflow as tf
  from PIL import Image

  root = tmp_path_factory.mktemp("image_export")
  images = root / "images"
  images.mkdir()
  for name, rgb, fmt in (("red", (230, 20, 30), "png"), ("blue", (10, 40, 220), "png"), ("green", (20, 200, 40), "jpeg")):
    Image.new("RGB", (20, 14), rgb).save(images / f"{name}.{'jpg' if fmt == 'jpeg' else fmt}", format=fmt.upper())

  class ColorClassifier(tf.Module):

    def __init__(self):
      super().__init__()
      self.scale = tf.Variable(10.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(self, image_bytes):
      def mean_rgb(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return tf.reduce_mean(tf.image.resize(tf.cast(image, tf.float32), [8, 8]), axis=[0, 1]) / 255.0

      probabilities = tf.nn.softmax(self.scale * tf.map_fn(mean_rgb, image_bytes, fn_output_signature=tf.float32))
      class_id = tf.argmax(probabilities, axis=-1)
      return {"probabilities": probabilities, "class_id": class_id, "class_name": tf.gather(tf.constant(COLORS), class_id)}

  module = ColorClassifier()
  export = root / "export" / "1"
  tf.saved_model.save(module, str(export), signatures={"serving_default": module.serve})
  (export / "assets.extra").mkdir()
  (export / "assets.extra" / "labels.txt").write_text("".join(c + "\n" for c in COLORS))
  (export / "assets.extra" / "tfft.json").write_text(json.dumps({"task": "image", "input": "image_bytes"}))
  return export, images


def test_predict_cli_on_images_takes_paths_and_globs(image_export):
  export, images = image_export
  proc = run_tfft("predict", [f"--model={export.parent}", "--format=json", "--top_k=2", images / "*.png",
                              images / "green.jpg"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads(proc.stdout)
  assert [r["input"] for r in rows] == [str(images / "blue.png"), str(images / "red.png"), str(images / "green.jpg")]
  assert [r["predictions"][0]["class_name"] for r in rows] == ["blue", "red", "green"]
  for row in rows:
    p = [x["probability"] for x in row["predictions"]]
    assert len(p) == 2 and p[0] > p[1] and row["predictions"][0]["class_id"] == COLORS.index(row["predictions"][0]["class_name"])


def test_predict_cli_on_texts_reads_stdin_and_prints_a_table(tiny_run):
  from tfft.serving import loaded

  tmp, _ = tiny_run
  export = tmp / "exports" / "tiny" / "1"
  texts = ["cat dog horse fox", "red blue green yellow"]
  proc = subprocess.run([sys.executable, "-m", "tfft.predict", f"--model={tmp / 'run'}", "--top_k=3"],
                        input="\n".join(texts) + "\n", capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  expected = scoring.load(str(export)).probabilities([t.encode() for t in texts])
  lines = proc.stdout.strip().splitlines()
  assert lines[0].split() == ["input", "class", "probability"] and len(lines) == 1 + 3 * len(texts)
  for i, text in enumerate(texts):
    block = [line.split() for line in lines[1 + 3 * i: 4 + 3 * i]]
    assert " ".join(block[0][:-2]) == text
    ranked = np.argsort(-expected[i])
    assert [row[-2] for row in block] == [["animals", "colors", "numbers"][j] for j in ranked]
    assert [float(row[-1]) for row in block] == pytest.approx(expected[i][ranked], abs=1e-4)


def test_predict_inputs_from_arguments_file_and_stdin(tmp_path):
  from tfft.fit import scoring
  from tfft.errors import UserError

  path = tmp_path / "in.txt"
  path.write_text("first text\n\nsecond text\n")
  assert scoring.read_inputs(["a b"], input_file=str(path), stdin=io.StringIO("")) == ["a b", "first text",
                                                                                        "second text"]
  assert scoring.read_inputs([], stdin=io.StringIO("x\ny\n")) == ["x", "y"]
  assert scoring.read_inputs(["a", "-"], stdin=io.StringIO("x\n")) == ["a", "x"]
  with pytest.raises(UserError, match="no inputs"):
    scoring.read_inputs([], stdin=io.StringIO(""))
  with pytest.raises(UserError, match="--input_file=.*no such file"):
    scoring.read_inputs([], input_file=str(tmp_path / "missing.txt"))
  with pytest.raises(UserError, match="no such image file"):
    scoring.expand_images([str(tmp_path / "*.png")])


def test_predict_rejects_a_path_that_is_not_a_saved_model(tmp_path):
  proc = run_tfft("predict", [f"--model={tmp_path}", "some text"])
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert [line for line in proc.stderr.splitlines() if line.startswith("tfft.predict: error:")] == [
      f"tfft.predict: error: --model={tmp_path} is not a SavedModel (no saved_model.pb): pass an export dir "
      "(EXPORT_DIR/NAME/VERSION), a model base dir or a run dir"]


# What TF Serving's REST handler does with a body before it calls the signature (row format, one named input):
# each instance is the input's value, a {"b64": …} object is base64-decoded to raw bytes, and the batch goes to
# the signature's single input. Only TensorFlow and TF Text are imported, as TF Serving links nothing else.
_SERVER = textwrap.dedent("""
    import base64, json, sys
    import tensorflow as tf
    import tensorflow_text
    sig = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    (name, spec), = sig.structured_input_signature[1].items()
    def value(v):
      if isinstance(v, dict):
        if set(v) == {"b64"}:
          return base64.b64decode(v["b64"])
        (key, v), = v.items()
        assert key == name, key
        return value(v)
      return v.encode("utf-8")
    body = json.loads(sys.stdin.read())
    out = sig(**{name: tf.constant([value(v) for v in body["instances"]], spec.dtype)})
    print(json.dumps({"predictions": [{"class_name": n.decode(), "class_id": int(i), "probabilities": p.tolist()}
                                      for n, i, p in zip(out["class_name"].numpy(), out["class_id"].numpy(),
                                                         out["probabilities"].numpy())],
                      "leaked": sorted(m for m in ("keras_hub", "tfft") if m in sys.modules)}))
""")


def _serve(export, body: str):
  proc = subprocess.run([sys.executable, "-c", _SERVER, str(export)], input=body, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["leaked"] == []
  return out["predictions"]


def test_rest_bodies_for_a_text_and_an_image(tiny_run, image_export):
  from tfft.serving import loaded

  tmp, _ = tiny_run
  text_export = tmp / "exports" / "tiny" / "1"
  # The README's text request, byte for byte (the tiny model reads its unknown words as [UNK]).
  body = '{"instances": ["Shares in the carmaker fell after profits slumped.", "The striker scored twice."]}'
  texts = json.loads(body)["instances"]
  predictions = _serve(text_export, body)
  expected = scoring.load(str(text_export)).probabilities([t.encode() for t in texts])
  np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, atol=1e-6)
  assert [p["class_name"] for p in predictions] == [["animals", "colors", "numbers"][i] for i in expected.argmax(1)]

  export, images = image_export
  encoded = base64.b64encode((images / "green.jpg").read_bytes()).decode()
  body = '{"instances": [{"b64": "%s"}]}' % encoded  # the README's image request, as its curl line builds it
  [prediction] = _serve(export, body)
  assert prediction["class_name"] == "green" and prediction["class_id"] == 1
  expected = scoring.load(str(export)).probabilities([(images / "green.jpg").read_bytes()])[0]
  np.testing.assert_allclose(prediction["probabilities"], expected, atol=1e-6)


def test_concurrent_exports_get_distinct_versions(tmp_path):
  """Eight writers publish complete exports into one base at the same moment: each gets its own version."""
  import threading

  from tfft.files import TMP_PREFIX
  from tfft.serving import versions

  base = tmp_path / "model"
  base.mkdir()
  (base / "1").mkdir()  # an existing version is never overwritten
  (base / "1" / "who").write_text("earlier")
  barrier = threading.Barrier(8)
  published = {}

  def export(i):
    tmp = base / f"{TMP_PREFIX}{i}"
    tmp.mkdir()
    (tmp / "who").write_text(str(i))
    barrier.wait()
    published[i] = versions.publish(tmp, base)

  threads = [threading.Thread(target=export, args=(i,)) for i in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert sorted(int(p.name) for p in published.values()) == list(range(2, 10))
  assert all((path / "who").read_text() == str(i) for i, path in published.items())
  assert (base / "1" / "who").read_text() == "earlier"


def test_the_export_stores_each_weight_once(tiny_run):
  """Keras' ExportArchive would store every weight twice (keras-team/keras#23553); write_export keeps one copy."""
  tmp, _ = tiny_run
  finetune = json.loads((tmp / "run" / "run_state.json").read_text())["phases"]["finetune"]
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      reader = tf.train.load_checkpoint({str(tmp / "exports" / "tiny" / "1" / "variables" / "variables")!r})
      dtypes = reader.get_variable_to_dtype_map()  # weights are float; dropout's seed states are integers
      print(sum(int(np.prod(s)) for k, s in reader.get_variable_to_shape_map().items()
                if s and dtypes[k].is_floating))
  """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert int(proc.stdout.split()[-1]) == finetune["trainable_params"] + finetune["frozen_params"]
