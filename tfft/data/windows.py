"""Long texts read as several token windows whose logits are averaged, in the export graph and in scoring."""

from typing import Optional

import numpy as np
import tensorflow as tf

from tfft.data.text_batches import int_mask, trim_to_longest
from tfft.errors import UserError


def window_features(preprocessor, texts, max_windows: int):
  """Tokenizes texts and cuts each into up to `max_windows` windows of the preprocessor's length.

  Each window is packed as its own sequence ([CLS] … [SEP] for an encoder, tokens then the end token for a decoder:
  tfft.model.decoder_preprocessing); with max_windows=1 this is exactly what the preprocessor does. Pure TensorFlow
  (TF Text ops), so it runs inside a SavedModel.

  Returns:
    (features, doc): the packed features of every window, and the index of the text each window came from.
  """
  if getattr(preprocessor, "packer", "absent") is None:
    preprocessor(tf.constant(["build"]))  # keras-hub creates the packer when the preprocessor is first called
  tokenizer, packer = getattr(preprocessor, "tokenizer", None), getattr(preprocessor, "packer", None)
  if tokenizer is None or packer is None:
    raise UserError("--eval_windows > 1 needs a preprocessor with a tokenizer and a packer; use --eval_windows=1")
  # A decoder preprocessor packs windows itself (its pads are found by the packer, not by id); encoders: [CLS], [SEP].
  room = getattr(preprocessor, "window_room", preprocessor.sequence_length - 2)
  ids = tokenizer(texts)[:, : max_windows * room]
  lengths = ids.row_lengths()
  count = tf.maximum((lengths + room - 1) // room, 1)  # an empty text still gets one window
  doc = tf.repeat(tf.range(tf.size(lengths, out_type=tf.int64)), count)
  position = tf.ragged.range(count).flat_values
  doc_count, doc_length = tf.gather(count, doc), tf.gather(lengths, doc)
  window_length = tf.where(position == doc_count - 1, doc_length - room * (doc_count - 1), room)
  windows = tf.RaggedTensor.from_row_lengths(ids.flat_values, window_length)
  if hasattr(preprocessor, "pack"):
    return int_mask(preprocessor.pack(windows)), doc
  token_ids, segment_ids = packer(windows)
  features = {"token_ids": token_ids, "segment_ids": segment_ids,
              "padding_mask": token_ids != tokenizer.pad_token_id}
  return int_mask(features), doc


def window_arrays(preprocessor, texts, max_windows: int, *, batch_size: int = 256):
  """window_features over a list of texts, a batch at a time, as numpy arrays.

  Returns:
    (features, doc): the packed features of every window (dicts of arrays), and the index into `texts` of the
    text each window came from (non-decreasing: a text's windows are adjacent and in order).
  """
  fn = tf.function(lambda t: window_features(preprocessor, t, max_windows),
                   input_signature=[tf.TensorSpec([None], tf.string)])
  parts, docs = [], []
  for start in range(0, len(texts), batch_size):
    features, doc = fn(tf.constant(list(texts[start:start + batch_size]), tf.string))
    parts.append({name: value.numpy() for name, value in features.items()})
    docs.append(doc.numpy() + start)
  return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}, np.concatenate(docs)


def windowed_logits(model, preprocessor, texts, max_windows: int, pad_to_multiple_of: Optional[int] = None):
  """Logits per text: the mean of the model's logits over the text's windows.

  With `pad_to_multiple_of`, the batch is cut to its longest window rounded up to that many tokens (see
  text_batches.trim_to_longest), so a batch of short texts costs what short texts should.
  """
  features, doc = window_features(preprocessor, texts, max_windows)
  features = {name: features[name] for name in model.input}
  if pad_to_multiple_of:
    features = trim_to_longest(features, pad_to_multiple_of)
  logits = tf.cast(model(features, training=False), tf.float32)
  return tf.math.unsorted_segment_mean(logits, doc, num_segments=tf.size(texts))


def predict_logits(model, preprocessor, texts, max_windows: int, *, batch_size: int = 32,
                   pad_to_multiple_of: Optional[int] = None) -> np.ndarray:
  """windowed_logits over a list of texts, a batch of texts at a time, as one numpy array.

  The texts are batched in order of length (see length_order), so with `pad_to_multiple_of` each batch is cut
  to texts of about one length; the logits come back in the order of `texts`.
  """
  fn = tf.function(lambda t: windowed_logits(model, preprocessor, t, max_windows, pad_to_multiple_of),
                   input_signature=[tf.TensorSpec([None], tf.string)])
  order = length_order(texts)
  ordered = [texts[i] for i in order]
  logits = np.concatenate([fn(tf.constant(ordered[i:i + batch_size])).numpy()
                           for i in range(0, len(ordered), batch_size)])
  out = np.empty_like(logits)
  out[order] = logits
  return out


def length_order(texts) -> np.ndarray:
  """Indices of `texts` from the shortest in UTF-8 bytes to the longest, ties in input order.

  Each input is a str, UTF-8 bytes, or a pair (tuple or list) of them, whose length is the sum of both. Scoring,
  the export's parity check and tfft.serving.loaded batch in this order: a batch of similar lengths is cut to its
  longest input, so it costs what its inputs need, and all of them batch the same inputs together.
  """
  def size(t):
    if isinstance(t, (tuple, list)):
      return sum(map(size, t))
    return len(t.encode("utf-8")) if isinstance(t, str) else len(t)

  return np.argsort(np.asarray([size(t) for t in texts], dtype=np.int64), kind="stable")
