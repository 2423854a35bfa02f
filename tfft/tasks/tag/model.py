"""The token tagger: a keras-hub text backbone with a Dense layer over every position's hidden state."""

import keras

from tfft.model.heads import BACKBONE, BackboneCall


def build_token_tagger(backbone, *, num_tags: int, dropout: float = 0.1) -> keras.Model:
  """Puts a per-token head on a keras-hub text backbone.

  Args:
    backbone: a keras-hub Backbone whose outputs include "sequence_output".
    num_tags: width of the output layer (the tag set).
    dropout: rate of the Dropout before it.

  Returns:
    A functional keras.Model mapping the preprocessor's feature dict to float32 logits [N, L, num_tags].
  """
  inputs = {name: keras.Input(shape=(None,), dtype=tensor.dtype, name=name)
            for name, tensor in backbone.input.items()}
  sequence = BackboneCall(backbone, name=BACKBONE)(inputs)["sequence_output"]
  x = keras.layers.Dropout(dropout, name="head_dropout")(sequence)
  # Logits stay float32 under any mixed-precision policy.
  logits = keras.layers.Dense(num_tags, dtype="float32", name="logits")(x)
  return keras.Model(inputs, logits, name="tfft_token_tagger")
