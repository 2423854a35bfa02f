"""Decoder text classification's preprocessing: strings -> token ids padded on the right, ending in the end token.

A causal model's summary of a text is the hidden state of its last real token, which has attended to every token
before it. Packing here is: [start token if the tokenizer adds one] tokens [end token], truncated to keep the
text's start, then padded on the right up to the sequence length. Right padding keeps the last real token at
`sum(padding_mask) - 1` under fixed padding and under dynamic padding (which only cuts pads off the right), and
causal attention means no real token ever sees a pad.

Many decoders have no padding token (SmolLM2's GGUF has none): tfft then pads with the end token, as llama.cpp's
server and Hugging Face's loader do. Pads are never found by comparing token ids (a real end token has the same
id); the padding mask comes from the packer.
"""

import keras
import keras_hub
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import preprocessing_function


@keras.saving.register_keras_serializable(package="tfft")
class DecoderClassifierPreprocessor(keras_hub.models.Preprocessor):
  """Strings -> {"token_ids", "padding_mask"} for a classifier on a decoder backbone.

  Args:
    tokenizer: the decoder's keras-hub tokenizer (e.g. GGUFBytePairTokenizer).
    sequence_length: the packed length, start and end tokens included.
    add_start_token: prepend the start token; default the tokenizer's `add_bos` (False for SmolLM2).
    **kwargs: keras Layer arguments.
  """

  def __init__(self, tokenizer, sequence_length: int = 128, add_start_token=None, **kwargs):
    super().__init__(**kwargs)
    self.tokenizer = tokenizer
    self.sequence_length = sequence_length
    self.add_start_token = bool(getattr(tokenizer, "add_bos", False) if add_start_token is None else add_start_token)
    self.packer = None

  def build(self, input_shape):
    self.packer = keras_hub.layers.StartEndPacker(
        start_value=self.tokenizer.start_token_id, end_value=self.tokenizer.end_token_id,
        pad_value=self.tokenizer.pad_token_id, sequence_length=self.sequence_length, return_padding_mask=True)
    self.built = True

  @property
  def window_room(self) -> int:
    """Text tokens a window holds: the sequence length less the start and end tokens."""
    return self.sequence_length - 1 - int(self.add_start_token)

  def pack(self, token_ids: tf.RaggedTensor):
    """Packs ragged token ids (each at most `window_room` long) into the model's features."""
    if not self.built:
      self.build(None)
    ids, mask = self.packer(token_ids, add_start_value=self.add_start_token, add_end_value=True)
    return {"token_ids": ids, "padding_mask": mask}

  @preprocessing_function
  def call(self, x):
    ids = self.tokenizer(x)
    if not isinstance(ids, tf.RaggedTensor):  # eager calls tokenize in Python (the `tokenizers` package): lists
      ids = tf.ragged.constant(ids, dtype=tf.int32, ragged_rank=1) if len(ids) else tf.ragged.constant([[]], tf.int32)
    return self.pack(ids[:, :self.window_room])

  def get_config(self):
    return {**super().get_config(), "sequence_length": self.sequence_length, "add_start_token": self.add_start_token}
