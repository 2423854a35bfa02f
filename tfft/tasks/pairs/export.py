"""--task=pairs' export: serving_default takes the two texts of each pair as two string inputs."""

import pathlib
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf

from tfft.serving import savedmodel
from tfft.tasks.pairs import data as pair_data


def export_text_pair_classifier(model: keras.Model, preprocessor, class_names: Sequence[str], *,
                                export_base: pathlib.Path, pad_to_multiple_of: Optional[int] = None,
                                finalize: Optional[Callable[[pathlib.Path], None]] = None,
                                metadata: Optional[Dict] = None, outputs: Optional[Callable] = None) -> pathlib.Path:
  """Exports `serving_default` taking two [None] tf.string batches, `text_a` and `text_b` (pair i is text_a[i],
  text_b[i]), packed in the graph as the backbone's tokenizer packs pairs (tfft.tasks.pairs.data.pack).

  Outputs, versioning, `finalize` and `metadata` as tfft.serving.savedmodel.export_text_classifier.

  Returns:
    The version directory.
  """
  preprocessor(tf.constant(["build"]))  # ExportArchive tracks only built layers.
  outputs = outputs or savedmodel.class_outputs(class_names)

  def serve(text_a, text_b):
    return outputs(pair_data.pair_logits(model, preprocessor, text_a, text_b, pad_to_multiple_of))

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.track(preprocessor)
  archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text_a"),
                                                                  tf.TensorSpec([None], tf.string, name="text_b")])
  return savedmodel.write_export(archive, class_names, export_base=export_base,
                      info={"task": "text", "input": "text_a,text_b", "inputs": ["text_a", "text_b"]},
                      metadata=metadata, finalize=finalize)
