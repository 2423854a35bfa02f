"""SavedModel export of a multi-label model: sigmoid probabilities and the label names over their thresholds."""

import pathlib
from typing import Callable, Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfft.data import image_batches, windows
from tfft.serving.savedmodel import write_export


def multilabel_outputs(label_names: Sequence[str], thresholds: Sequence[float]):
  """Logits [N, L] -> `probabilities` [N, L] float32 (sigmoid), `predicted` [N, L] bool (probability >= the
  label's threshold), `labels` [N, L] string (the predicted label names, most probable first, padded with "") and
  `num_labels` [N] int32."""
  names = tf.constant(list(label_names))
  limit = tf.constant(np.asarray(thresholds, np.float32))

  def outputs(logits):
    probabilities = tf.sigmoid(tf.cast(logits, tf.float32))
    predicted = probabilities >= limit
    order = tf.argsort(tf.where(predicted, probabilities, -1.0), axis=-1, direction="DESCENDING", stable=True)
    ranked = tf.gather(predicted, order, batch_dims=1)
    return {"probabilities": probabilities, "predicted": predicted,
            "labels": tf.where(ranked, tf.gather(names, order), ""),
            "num_labels": tf.reduce_sum(tf.cast(predicted, tf.int32), axis=-1)}

  return outputs


def export_text_multilabel(model: keras.Model, preprocessor, label_names: Sequence[str], thresholds, *,
                           export_base: pathlib.Path, eval_windows: int = 1, pad_to_multiple_of: Optional[int] = None,
                           finalize: Optional[Callable[[pathlib.Path], None]] = None,
                           metadata: Optional[Dict] = None) -> pathlib.Path:
  """`serving_default` on a [N] tf.string batch of raw texts (tokenized in the graph, windows as the classifier
  reads them); outputs as multilabel_outputs; the thresholds also go to tfft.json."""
  preprocessor(tf.constant(["build"]))
  outputs = multilabel_outputs(label_names, thresholds)

  def serve(text):
    return outputs(windows.windowed_logits(model, preprocessor, text, eval_windows, pad_to_multiple_of))

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.track(preprocessor)
  archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  return write_export(archive, label_names, export_base=export_base,
                      info={"task": "multilabel", "input": "text", "thresholds": [float(t) for t in thresholds]},
                      metadata=metadata, finalize=finalize)


def export_image_multilabel(model: keras.Model, label_names: Sequence[str], thresholds, *, export_base: pathlib.Path,
                            image_size: int, finalize: Optional[Callable[[pathlib.Path], None]] = None,
                            metadata: Optional[Dict] = None) -> pathlib.Path:
  """`serving_default` on encoded image bytes and `serving_images` on uint8 pixels, as the image classifier's
  export; outputs as multilabel_outputs."""
  outputs = multilabel_outputs(label_names, thresholds)

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
  return write_export(archive, label_names, export_base=export_base,
                      info={"task": "multilabel", "input": "image_bytes", "image_size": image_size,
                            "thresholds": [float(t) for t in thresholds]},
                      metadata=metadata, finalize=finalize)
