"""Caches what frozen layers compute, so that a phase runs only the layers it trains.

The head phase needs the pooled features of the frozen backbone; a top_k phase needs the hidden states that
enter its first trainable block. Both come from one forward pass per split: the lower blocks once, then the
top blocks over the cached states. Frozen layers run in inference mode here (no dropout), which is why the
cached features are a pure function of the input.
"""

from typing import Callable, Dict, Optional

import keras
import numpy as np
from absl import logging

from tfft.fit.recipe import Phase
from tfft.model import heads


class FeatureCache:
  """Per-split cache of frozen-layer outputs for the phases of one run.

  Args:
    model: the classifier.
    backbone: the keras-hub backbone inside it.
    blocks: the backbone's transformer blocks.
    token_dataset: split name -> batched, unshuffled dataset of token features.
    strategy: the model's tf.distribute strategy; Keras models remember the strategy they were built under,
      so the partial models are built under it too.
    top_k: the fine-tuning phase's k when it is top_k:k, so the head phase's pass also keeps those states.
  """

  def __init__(self, model: keras.Model, backbone, blocks, token_dataset: Callable, *, strategy,
               top_k: Optional[int] = None):
    self._token_dataset = token_dataset
    with strategy.scope():
      self._split = heads.split_at_block(model, backbone, blocks, top_k) if top_k else None
      self._encoder, self._head = heads.split_at_pooling(model)
    if top_k and self._split is None:
      logging.info("this backbone cannot be split before its top blocks; top_k phases run the whole backbone")
    self._hidden: Dict[str, dict] = {}
    self._pooled: Dict[str, np.ndarray] = {}

  def plan(self, phase: Phase):
    """What to fit for `phase`, and its inputs per split; None when the phase must run the whole model.

    Returns:
      (fit_model, inputs) where inputs(split_name) gives the array or dict of arrays to train or validate on.
    """
    if phase.freeze.kind == "all":
      return self._head, self.pooled
    if phase.freeze.kind == "top_k" and self._split is not None:
      return self._split[1], self.hidden
    return None

  def hidden(self, name: str) -> dict:
    """Hidden states entering the top k blocks, with the padding mask, for every example of a split."""
    if name not in self._hidden:
      lower = self._split[0]
      logging.info("caching the frozen lower blocks' output for %s", name)
      # Full length here, so every batch's states stack into one array; batches cut later by --padding.
      states = lower.predict(self._token_dataset(name, padding="fixed"), verbose=0)
      masks = np.concatenate([x["padding_mask"].numpy()
                              for x, _ in self._token_dataset(name, padding="fixed")]).astype("int32")
      self._hidden[name] = {"hidden": states, "padding_mask": masks}
    return self._hidden[name]

  def pooled(self, name: str) -> np.ndarray:
    """Pooled features of the frozen backbone for every example of a split."""
    if name not in self._pooled:
      if self._split is not None:
        self._pooled[name] = self._split[2].predict(self.hidden(name), verbose=0, batch_size=64)
      else:
        logging.info("caching the frozen backbone's pooled features for %s", name)
        # Padding that keeps the examples in order: --padding=bucket regroups them by length, which would pair
        # each cached feature with another example's label.
        self._pooled[name] = self._encoder.predict(self._token_dataset(name, padding="dynamic"), verbose=0)
    return self._pooled[name]
