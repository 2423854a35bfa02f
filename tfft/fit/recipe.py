"""The fine-tuning recipe as pure functions of the config and the data: the phase plan, the optimiser, the padding.

Nothing here trains or reads flags; the job computes these up front and passes them on.
"""

import dataclasses
import math
from typing import List, Sequence

import numpy as np

from tfft.config import Freeze, TrainConfig


@dataclasses.dataclass(frozen=True)
class Phase:
  """One `fit`: its epochs, peak LR, warmup and which backbone weights train."""
  name: str  # "head" or "finetune"
  epochs: int
  learning_rate: float
  warmup_fraction: float
  freeze: Freeze


def plan_phases(train: TrainConfig) -> List[Phase]:
  """Phase 1 trains the head on a frozen backbone; phase 2 unfreezes per --freeze at a lower LR with warmup."""
  phases = []
  if train.head_epochs:
    phases.append(Phase("head", train.head_epochs, train.head_learning_rate, 0.0, Freeze("all")))
  if train.epochs:
    # Without a head phase the head starts random, so phase 2 gets the warmup either way.
    phases.append(Phase("finetune", train.epochs, train.learning_rate, train.warmup_fraction, train.freeze))
  return phases


def method_lines(train: TrainConfig, *, lora_targets: Sequence[str] = ()) -> List[str]:
  """The fine-tuning methods a run uses beyond the default recipe, one line each (summary, model card)."""
  lines = []
  if train.lora_rank:
    lines.append(f"lora:     rank {train.lora_rank}, alpha {train.lora_alpha or train.lora_rank:g} on "
                 f"{', '.join(lora_targets or train.lora_targets) or 'the backbone default'}; the export has them "
                 "merged into the base weights")
  if train.layer_decay < 1.0:
    lines.append(f"layer decay: {train.layer_decay:g} (phase 2: the head at --learning_rate, block i from the top "
                 f"at LR x {train.layer_decay:g}^i, the embeddings lowest)")
  return lines


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
