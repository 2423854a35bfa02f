"""--padding=auto: whether dynamic padding pays for the unknown-length graph it needs, from the training texts."""

import math

import numpy as np

from tfft.config import TrainConfig


# Dynamic padding leaves the sequence length unknown in the traced graph, so Keras runs EinsumDense (attention
# projections) through tf.einsum instead of matmuls. Measured on MiniLM, 2 cores, in a profile of 160 articles
# (docs/performance.md): a batch of full-length texts trains 1.34x slower so in fp32, 2.8x in mixed_bfloat16.
# Dynamic padding pays off when it cuts more than that share of the token positions.
AUTO_DYNAMIC_MIN_CUT = {"mixed_bfloat16": 0.65}
AUTO_DYNAMIC_MIN_CUT_DEFAULT = 0.25


def dynamic_cut(padding_mask: np.ndarray, indices: np.ndarray, *, batch_size: int, pad_to_multiple_of: int,
                seed: int = 0) -> float:
  """Share of the token positions that dynamic padding cuts over one shuffled epoch of `indices`."""
  full = padding_mask.shape[1]
  order = padding_mask.astype(bool).sum(axis=1)[np.random.default_rng(seed).permutation(np.asarray(indices))]
  if not len(order):
    return 0.0
  kept = sum(min(full, math.ceil(max(int(batch.max()), 1) / pad_to_multiple_of) * pad_to_multiple_of) * len(batch)
             for batch in np.array_split(order, range(batch_size, len(order), batch_size)))
  return 1.0 - kept / (full * len(order))


def auto_padding(cut: float, precision: str = "float32") -> str:
  """--padding=auto: "dynamic" when it cuts `cut` (see dynamic_cut) of the token positions, enough to pay for the
  unknown-length graph at this precision, else "fixed"."""
  return "dynamic" if cut >= AUTO_DYNAMIC_MIN_CUT.get(precision, AUTO_DYNAMIC_MIN_CUT_DEFAULT) else "fixed"


def choose_padding(train: TrainConfig, padding_mask: np.ndarray, train_indices: np.ndarray) -> str:
  """The padding the text batches use: --padding, with auto resolved from the training texts' lengths."""
  if train.padding != "auto":
    return train.padding
  return auto_padding(dynamic_cut(padding_mask, train_indices, batch_size=train.batch_size,
                                  pad_to_multiple_of=train.pad_to_multiple_of, seed=train.seed),
                      train.mixed_precision)
