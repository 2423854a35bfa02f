"""The served outputs of a multi-label model: sigmoid probabilities and the label names over their thresholds
(the text and image exports of tfft.serving.savedmodel take them as `outputs`)."""

from typing import Sequence

import numpy as np
import tensorflow as tf


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
