"""SavedModel export of a token tagger: raw sentences in, a tag and a character span per token out."""

import pathlib
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf

from tfft.data import tag_pieces
from tfft.serving.savedmodel import write_export


def tag_outputs(tag_names: Sequence[str]):
  """Per-word logits [N, (W), C] -> the served outputs, padded to the longest sentence of the request."""
  names = tf.constant(list(tag_names))

  def outputs(logits: tf.RaggedTensor):
    probabilities = tf.nn.softmax(logits.flat_values, axis=-1)
    tag_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    ragged = logits.with_flat_values
    return {"probabilities": ragged(probabilities).to_tensor(0.0),
            "tag_ids": ragged(tag_id).to_tensor(-1),
            "tags": ragged(tf.gather(names, tag_id)).to_tensor(""),
            "num_tokens": tf.cast(logits.row_lengths(), tf.int32)}

  return outputs


def export_token_tagger(model: keras.Model, preprocessor, tag_names: Sequence[str], *, export_base: pathlib.Path,
                        outside_index: int, pad_to_multiple_of: Optional[int] = None,
                        finalize: Optional[Callable[[pathlib.Path], None]] = None,
                        metadata: Optional[Dict] = None) -> pathlib.Path:
  """Exports two signatures that tokenize in the graph (TF Text ops, servable by stock TF Serving).

  `serving_default` takes `text`, a [N] tf.string batch of raw sentences. They are split into tokens as BERT's
  basic tokenizer splits (whitespace, and each punctuation mark a token of its own), and each token is read as
  tfft.data.tag_pieces describes (first word piece, windows for long sentences). Outputs, padded to the request's
  longest sentence: `tokens` [N, W] string (""), `starts` / `ends` [N, W] int64 character offsets of each
  token in its sentence, end exclusive (-1), `tags` [N, W] string (""), `tag_ids` [N, W] int64 (-1),
  `probabilities` [N, W, C] float32 (0), and `num_tokens` [N] int32, the real tokens of each sentence.

  `serving_words` takes `words`, a [N, W] tf.string batch of pre-split words padded with "", as the training data
  holds them, and returns the same outputs less tokens, starts and ends.

  Versioning, labels.txt (the tag names) and tfft.json as tfft.serving.savedmodel.export_text_classifier.

  Returns:
    The version directory.
  """
  preprocessor(tf.constant(["build"]))  # ExportArchive tracks only built layers; this also creates the packer.
  outputs = tag_outputs(tag_names)

  def logits_of(words):
    return tag_pieces.word_logits(model, preprocessor, words, outside_index=outside_index,
                                  pad_to_multiple_of=pad_to_multiple_of)

  def serve(text):
    words, starts, ends = tag_pieces.split_words(text)
    return {**outputs(logits_of(words)), "tokens": words.to_tensor(""), "starts": starts.to_tensor(-1),
            "ends": ends.to_tensor(-1)}

  def serve_words(words):
    return outputs(logits_of(tf.RaggedTensor.from_tensor(words, padding="")))

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.track(preprocessor)
  archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  archive.add_endpoint("serving_words", serve_words,
                       input_signature=[tf.TensorSpec([None, None], tf.string, name="words")])
  return write_export(archive, tag_names, export_base=export_base, info={"task": "text", "input": "text"},
                      metadata=metadata, finalize=finalize)
