"""SavedModel export for TF Serving: raw inputs in, the target's outputs (probabilities and class names, or a score)
out, versioned atomically."""

import json
import os
import pathlib
import shutil
import uuid
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf
from absl import logging

from tfft.data import image_batches, windows
from tfft.files import TMP_PREFIX, write_atomically
from tfft.rundir import write_labels
from tfft.serving import versions
from tfft.testhooks import pause_point


def export_text_classifier(model: keras.Model, preprocessor, class_names: Sequence[str], *,
                           export_base: pathlib.Path, eval_windows: int = 1,
                           pad_to_multiple_of: Optional[int] = None,
                           finalize: Optional[Callable[[pathlib.Path], None]] = None,
                           metadata: Optional[Dict] = None, outputs: Optional[Callable] = None) -> pathlib.Path:
  """Exports `serving_default`: a [None] tf.string batch of raw UTF-8 texts, tokenized in the graph.

  Each text is read as up to `eval_windows` windows whose logits are averaged (see tfft.data.windows), exactly as
  the run's test scoring does. With `pad_to_multiple_of`, each request batch is cut to its longest window
  (rounded up), so short texts are served at short-text cost.

  Outputs are `outputs(logits)` (a target's, tfft.tasks.api.Target); by default classification's `probabilities`
  (float32 [N, C]), `class_id` (int64 [N]) and `class_name` (string [N]). The SavedModel is written under a
  temporary name and renamed to EXPORT_BASE/<next version>, so TF Serving never sees a half-written version; labels.txt and tfft.json ({"task": "text", "input": "text", **metadata})
  go to its assets.extra/. `finalize(tmp_dir)` runs on the complete export before the rename: it may add files
  to assets.extra/ or raise to abort, and then no version is published.

  Returns:
    The version directory.
  """
  preprocessor(tf.constant(["build"]))  # ExportArchive tracks only built layers.
  outputs = outputs or class_outputs(class_names)

  def serve(text):
    return outputs(windows.windowed_logits(model, preprocessor, text, eval_windows, pad_to_multiple_of))

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.track(preprocessor)
  archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  return write_export(archive, class_names, export_base=export_base, info={"task": "text", "input": "text"},
                      metadata=metadata, finalize=finalize)


def export_image_classifier(model: keras.Model, class_names: Sequence[str], *, export_base: pathlib.Path,
                            image_size: int, finalize: Optional[Callable[[pathlib.Path], None]] = None,
                            metadata: Optional[Dict] = None, outputs: Optional[Callable] = None) -> pathlib.Path:
  """Exports two signatures that decode/resize in the graph; the model inside holds the preprocessing.

  `serving_default` takes `image_bytes`, a [None] tf.string batch of encoded JPEG/PNG/GIF/BMP files. TF Serving's
  REST API turns {"b64": ...} into these raw bytes before the graph runs, so nothing here decodes base64.
  `serving_images` takes `images`, uint8 [None, H, W, 3] pixels of any H and W. Both resize to the model's
  `image_size` exactly as training did (tfft.data.image_batches.resize); augmentation layers are inert at
  inference. Outputs, versioning, `finalize` and `metadata` as export_text_classifier.

  Returns:
    The version directory.
  """
  outputs = outputs or class_outputs(class_names)

  def serve_bytes(image_bytes):
    pixels = tf.map_fn(lambda b: image_batches.decode(b, image_size), image_bytes,
                       fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
    return outputs(model(pixels, training=False))

  def serve_images(images):
    return outputs(model(image_batches.resize(images, image_size), training=False))

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint("serving_default", serve_bytes,
                       input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
  archive.add_endpoint("serving_images", serve_images,
                       input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
  return write_export(archive, class_names, export_base=export_base,
                      info={"task": "image", "input": "image_bytes", "image_size": image_size},
                      metadata=metadata, finalize=finalize)


def class_outputs(class_names: Sequence[str]):
  """Logits -> the served outputs: float32 probabilities, int64 class_id, string class_name."""
  names = tf.constant(list(class_names))

  def outputs(logits):
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    class_id = tf.argmax(probabilities, axis=-1)
    return {"probabilities": probabilities, "class_id": class_id, "class_name": tf.gather(names, class_id)}

  return outputs


def store_each_variable_once(archive: keras.export.ExportArchive):
  """Makes the archive's variable lists hold the tf.Variables its endpoints capture.

  On the TensorFlow backend, `ExportArchive.track` lists the keras.Variable wrappers while the traced endpoints
  capture the tf.Variables inside them; the checkpoint cannot tell the two objects are one weight and stores every
  weight twice (keras-team/keras#23553): twice the export's size on disk and twice its variable memory in every
  process that loads it, TF Serving included. With the wrapped tf.Variables in the lists, TensorFlow's checkpoint
  keeps one copy of each.
  """
  trackable = archive._tf_trackable  # pylint: disable=protected-access
  for name in ("variables", "trainable_variables", "non_trainable_variables"):
    tracked = getattr(trackable, name, None)
    if tracked is None:
      continue
    unwrapped = []
    for variable in tracked:
      value = getattr(variable, "value", None) if isinstance(variable, keras.Variable) else None
      unwrapped.append(value if isinstance(value, tf.Variable) else variable)
    setattr(trackable, name, unwrapped)


def write_export(archive: keras.export.ExportArchive, class_names: Sequence[str], *, export_base: pathlib.Path,
                 info: Dict, metadata: Optional[Dict] = None,
                 finalize: Optional[Callable[[pathlib.Path], None]] = None) -> pathlib.Path:
  """Writes the archive under a temporary name, then renames it to the next version.

  assets.extra/ gets labels.txt and tfft.json (`info`, which names the task and the input, plus `metadata`).
  `finalize(tmp_dir)` runs on the complete export before the rename; if it raises, nothing is published.

  Returns:
    The version directory.
  """
  export_base.mkdir(parents=True, exist_ok=True)
  versions.remove_abandoned(export_base)
  tmp = export_base / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
  try:
    store_each_variable_once(archive)
    archive.write_out(str(tmp), verbose=False)
    (tmp / "assets.extra").mkdir()
    write_labels(tmp / "assets.extra" / "labels.txt", class_names)
    write_atomically(tmp / "assets.extra" / "tfft.json", json.dumps({**info, **(metadata or {})}))
    if finalize:
      finalize(tmp)
    pause_point("export")
    path = versions.publish(tmp, export_base)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  logging.info("exported SavedModel to %s", path)
  return path
