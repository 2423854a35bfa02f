"""Words to word pieces for token tagging, in TensorFlow ops that run in scoring and in the export alike.

A sentence's words are tokenized one by one with the backbone's tokenizer and their pieces concatenated. Each
word's tag is read at (and trained on) its first piece; the other pieces of the word carry no label and are
left out of the loss. Because BERT's tokenizer splits punctuation itself, the piece sequence of a sentence is the
same whether a client splits "U.S." into one word or four: only the pieces whose tag is read differ.

A sentence with more pieces than one window holds (--sequence_length less [CLS] and [SEP]) is read as several
windows, each starting half a window after the previous one; a word's tag is read from the window in which its
first piece is farthest from an edge, so every piece is read with at least a quarter window of context on both
sides where the sentence has it. Nothing is cut.
"""

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

# BERT's basic tokenizer, as keras-hub's WordPieceTokenizer applies it: split at whitespace, and keep each
# punctuation mark and CJK character as a word of its own. The raw-text signature splits sentences with these.
from keras_hub.src.tokenizers.word_piece_tokenizer import (  # pylint: disable=g-importing-member
    PUNCTUATION_AND_CJK_REGEX, WHITESPACE_PUNCTUATION_AND_CJK_REGEX)
from tfft.data.text_batches import int_mask, trim_to_longest


def stride(room: int) -> int:
  """Pieces between the starts of two windows of `room` pieces: half a window."""
  return max(1, room // 2)


def split_words(texts: tf.Tensor):
  """Splits raw sentences into words as BERT's basic tokenizer does, with each word's character span.

  Args:
    texts: [N] tf.string.

  Returns:
    (words, starts, ends): RaggedTensors [N, (W)] of the words (strings) and their [start, end) offsets in
    Unicode characters (code points, as Python indexes a str) of the input sentence.
  """
  words, byte_starts, byte_ends = tf_text.regex_split_with_offsets(
      texts, delim_regex_pattern=WHITESPACE_PUNCTUATION_AND_CJK_REGEX,
      keep_delim_regex_pattern=PUNCTUATION_AND_CJK_REGEX)
  sentence = tf.gather(texts, words.value_rowids())

  def chars(byte_offsets):
    prefix = tf.strings.substr(sentence, tf.zeros_like(byte_offsets.flat_values), byte_offsets.flat_values)
    return words.with_flat_values(tf.cast(tf.strings.length(prefix, unit="UTF8_CHAR"), tf.int64))

  return words, chars(byte_starts), chars(byte_ends)


def layout(tokenizer, words: tf.RaggedTensor, room: int):
  """Where every word's first piece goes: the windows of word pieces, and the window and position of each word.

  Args:
    tokenizer: the backbone's keras-hub tokenizer.
    words: [N, (W)] tf.string.
    room: pieces per window ([CLS] and [SEP] not counted).

  Returns:
    A dict of tensors: "windows" [NW, (P)] piece ids, "window_sentence" [NW] and "window_start" [NW]; per word
    (flat, [sum W]) "word_window" (its row in windows), "word_position" (its first piece's index in the packed
    window, [CLS] at 0), "word_first" (that piece's index in the sentence) and "word_has_piece" (False for a word the tokenizer maps to no piece at all).
  """
  s = stride(room)
  pieces = tokenizer(words.flat_values)
  if isinstance(pieces, list):  # keras-hub hands eager results back as Python lists
    pieces = tf.ragged.constant(pieces, dtype=tf.int32, ragged_rank=1, inner_shape=()) if pieces else \
        tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int32), tf.zeros([0], tf.int64))
  elif not isinstance(pieces, tf.RaggedTensor):
    pieces = tf.RaggedTensor.from_tensor(pieces)
  per_word = pieces.row_lengths()
  counts = tf.reduce_sum(words.with_flat_values(per_word), axis=1)  # pieces per sentence
  sentence_pieces = tf.RaggedTensor.from_row_lengths(pieces.flat_values, counts)
  row_starts = sentence_pieces.row_starts()
  sentence_of_word = words.value_rowids()
  first = tf.cumsum(per_word, exclusive=True) - tf.gather(row_starts, sentence_of_word)

  num_windows = 1 + tf.maximum(tf.zeros_like(counts), (counts - room + s - 1) // s)
  window_sentence = tf.repeat(tf.range(tf.size(counts, out_type=tf.int64)), num_windows)
  window_start = tf.ragged.range(num_windows).flat_values * s
  window_length = tf.clip_by_value(tf.gather(counts, window_sentence) - window_start, 0, room)
  begin = tf.gather(row_starts, window_sentence) + window_start
  windows = tf.gather(sentence_pieces.flat_values, tf.ragged.range(begin, begin + window_length))

  last = tf.gather(num_windows, sentence_of_word) - 1
  later = tf.minimum(first // s, last)
  earlier = later - 1
  score = lambda k: tf.minimum(first - k * s, k * s + room - 1 - first)
  use_earlier = (earlier >= 0) & (first < earlier * s + room) & (score(earlier) > score(later))
  k = tf.where(use_earlier, earlier, later)
  window_row_starts = tf.cumsum(num_windows, exclusive=True)
  return {"windows": windows, "window_sentence": window_sentence, "window_start": window_start,
          "word_window": tf.gather(window_row_starts, sentence_of_word) + k, "word_position": 1 + first - k * s,
          "word_first": first, "word_has_piece": per_word > 0}


def built(preprocessor):
  """The preprocessor with its packer: keras-hub creates the packer when the preprocessor is first called."""
  if getattr(preprocessor, "packer", None) is None:
    preprocessor(tf.constant(["build"]))
  return preprocessor


def pack(preprocessor, windows: tf.RaggedTensor):
  """Packs windows of piece ids as the preprocessor packs one segment: [CLS] pieces [SEP], padded.

  Returns:
    The model's feature dict (token_ids, segment_ids, padding_mask).
  """
  token_ids, segment_ids = preprocessor.packer(windows)
  return int_mask({"token_ids": token_ids, "segment_ids": segment_ids,
                   "padding_mask": token_ids != preprocessor.tokenizer.pad_token_id})


def word_logits(model, preprocessor, words: tf.RaggedTensor, *, outside_index: int, pad_to_multiple_of=None):
  """Logits of every word, read at its first piece in its chosen window.

  A word that the tokenizer maps to no piece (a lone control character) gets the outside tag with certainty.

  Returns:
    [N, (W), C] float32 RaggedTensor.
  """
  room = preprocessor.sequence_length - 2
  plan = layout(preprocessor.tokenizer, words, room)
  features = pack(preprocessor, plan["windows"])
  features = {name: features[name] for name in model.input}
  if pad_to_multiple_of:
    features = trim_to_longest(features, pad_to_multiple_of)
  logits = tf.cast(model(features, training=False), tf.float32)
  picked = tf.gather_nd(logits, tf.stack([plan["word_window"], plan["word_position"]], axis=1))
  certain = 100.0 * tf.one_hot(tf.fill(tf.shape(picked)[:1], outside_index), tf.shape(logits)[-1])
  picked = tf.where(plan["word_has_piece"][:, None], picked, certain)
  return words.with_flat_values(picked)


def training_windows(preprocessor, tokens, tag_ids, *, batch_size: int = 256):
  """Every sentence's windows as arrays, with each word's tag at its first piece.

  Args:
    preprocessor: the backbone's keras-hub preprocessor (its tokenizer, packer and sequence length).
    tokens: list of sentences, each a list of words.
    tag_ids: per sentence, the tag index of each word.

  Returns:
    (features, labels, weights, sentence): the packed features of every window ([NW, L] arrays), the tag index
    at every position ([NW, L] int32, 0 where there is none), the loss weight of every position (1.0 at a word's
    first piece inside the window, else 0.0), and the sentence each window came from. A word is labelled in
    every window that holds its first piece, so training sees it in each context it can be read in.
  """
  room = built(preprocessor).sequence_length - 2

  def plan_and_pack(words):
    plan = layout(preprocessor.tokenizer, words, room)
    first = tf.where(plan["word_has_piece"], plan["word_first"], -1)
    return pack(preprocessor, plan["windows"]), plan["window_sentence"], plan["window_start"], first, \
        words.row_lengths()

  fn = tf.function(plan_and_pack, input_signature=[tf.RaggedTensorSpec([None, None], tf.string)])
  parts, labels, weights, sentences = [], [], [], []
  for begin in range(0, len(tokens), batch_size):
    batch = tokens[begin:begin + batch_size]
    features, window_sentence, window_start, first, lengths = fn(tf.ragged.constant(batch, dtype=tf.string))
    features = {name: value.numpy() for name, value in features.items()}
    first = np.split(first.numpy(), np.cumsum(lengths.numpy())[:-1])
    y = np.zeros(features["token_ids"].shape, np.int32)
    w = np.zeros(features["token_ids"].shape, np.float32)
    for row, (sentence, start) in enumerate(zip(window_sentence.numpy(), window_start.numpy())):
      for position, tag in zip(first[sentence], tag_ids[begin + sentence]):
        if position >= 0 and start <= position < start + room:
          y[row, 1 + position - start] = tag
          w[row, 1 + position - start] = 1.0
    parts.append(features)
    labels.append(y)
    weights.append(w)
    sentences.append(window_sentence.numpy() + begin)
  features = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
  return features, np.concatenate(labels), np.concatenate(weights), np.concatenate(sentences)


def predict_word_logits(model, preprocessor, sentences, *, outside_index: int, batch_size: int = 32,
                        pad_to_multiple_of=None, raw: bool = False):
  """word_logits over a list of sentences, a batch at a time.

  Args:
    sentences: lists of words, or with `raw` strings split as the export's serving_default splits them.

  Returns:
    Per sentence, a [W, C] numpy array.
  """
  built(preprocessor)

  def run(words):
    return word_logits(model, preprocessor, words, outside_index=outside_index,
                       pad_to_multiple_of=pad_to_multiple_of)

  if raw:
    fn = tf.function(lambda t: run(split_words(t)[0]), input_signature=[tf.TensorSpec([None], tf.string)])
    make = lambda batch: tf.constant(list(batch), tf.string)
  else:
    fn = tf.function(run, input_signature=[tf.RaggedTensorSpec([None, None], tf.string)])
    make = lambda batch: tf.ragged.constant([list(s) for s in batch], dtype=tf.string, ragged_rank=1, inner_shape=())
  out = []
  for begin in range(0, len(sentences), batch_size):
    logits = fn(make(sentences[begin:begin + batch_size]))
    values, lengths = logits.flat_values.numpy(), logits.row_lengths().numpy()
    out += np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []
  return out
