"""Freezing policies: which backbone layers train in a phase (all, none, top_k:N, from_layer:NAME)."""

import keras
import numpy as np

from tfft.config import Freeze
from tfft.errors import UserError
from tfft.model import lora
from tfft.model.heads import BACKBONE

# keras-hub BERT builds a pooler on [CLS] that the heads here never read; it stays frozen so that the
# trainable counts are honest and no weight trains without a gradient.
_UNUSED_BACKBONE_LAYERS = ("pooled_dense",)


def apply_freeze(model: keras.Model, backbone, policy: Freeze, *, blocks=None):
  """Sets `trainable` on the backbone's layers for a phase; the caller must compile afterwards.

  The backbone runs in training mode (its dropout on) only when some of it trains.

  Args:
    model: the classifier built by build_text_classifier.
    backbone: the keras-hub backbone inside the model.
    policy: all (frozen), none (everything trains), top_k:N (only the last N blocks train) or from_layer:NAME
      (that layer and every later one in backbone.layers train).
    blocks: the backbone's blocks in order, for top_k: transformer blocks for text, layers holding weights for
      images; default the backbone's `transformer_layers` (keras-hub text backbones).

  Raises:
    UserError: if top_k names more blocks than exist, the backbone has no blocks to count, or from_layer names
      no layer of the backbone.
  """
  if blocks is None:
    blocks = getattr(backbone, "transformer_layers", None)
  holder = next((layer for layer in model.layers if layer.name == BACKBONE), None)
  if holder is not None:  # a causal LM (--task=generate) holds the backbone itself, without tfft's wrapper
    holder.train_mode = policy.kind != "all"
  if policy.kind == "all":
    backbone.trainable = False
    return
  if lora.lora_layers(backbone):  # --lora_rank: the adapters train in place of the backbone's weights
    lora.set_trainable(backbone)
    return
  backbone.trainable = True
  # A functional backbone does not pass `trainable` on to its layers, and a previous phase (a gradual-unfreezing
  # stage) may have frozen some: every layer starts trainable, then the policy freezes.
  for layer in backbone.layers:
    layer.trainable = True
  if policy.kind == "from_layer":
    names = [layer.name for layer in backbone.layers]
    if policy.layer not in names:
      raise UserError(f"--freeze={policy}: the backbone has no layer {policy.layer!r}; its last layers are "
                      f"{', '.join(names[-6:])} (model.summary() lists them all)")
    start = names.index(policy.layer)
    for i, layer in enumerate(backbone.layers):
      layer.trainable = i >= start
  if policy.kind == "top_k":
    if not blocks:
      raise UserError(f"--freeze={policy}: this backbone exposes no transformer blocks; use --freeze=none or all")
    if policy.k > len(blocks):
      raise UserError(f"--freeze={policy} names more blocks than the backbone has ({len(blocks)}); "
                      f"use top_k:1 to top_k:{len(blocks)}, or none")
    top = blocks[len(blocks) - policy.k:]  # a block is a layer, or a list of the layers it is made of
    trainable = {id(layer) for block in top for layer in (block if isinstance(block, (list, tuple)) else [block])}
    for layer in backbone.layers:
      layer.trainable = id(layer) in trainable
  for name in _UNUSED_BACKBONE_LAYERS:
    try:
      backbone.get_layer(name).trainable = False
    except ValueError:
      pass


def count_params(weights) -> int:
  return int(sum(np.prod(w.shape) for w in weights))




def layer_decay_multipliers(backbone, blocks, decay: float) -> dict:
  """--layer_decay: id(variable) -> its LR factor. Of n blocks, block i from the top (i = 1..n) trains at
  decay^i; the backbone's variables outside the blocks (embeddings and their norm) at decay^(n+1), the lowest;
  the head's at 1.

  Raises:
    UserError: if the backbone exposes no blocks to count.
  """
  if blocks is None:
    blocks = getattr(backbone, "transformer_layers", None)
  if not blocks:
    raise UserError("--layer_decay: this backbone exposes no blocks to decay over; drop --layer_decay")
  n, factors = len(blocks), {}
  for variable in backbone.weights:
    factors[id(variable)] = decay ** (n + 1)
  for j, block in enumerate(blocks):  # j = 0 is the lowest block
    for layer in (block if isinstance(block, (list, tuple)) else [block]):
      for variable in layer.weights:
        factors[id(variable)] = decay ** (n - j)
  return factors
