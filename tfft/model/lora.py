"""LoRA through Keras' own adapters (EinsumDense/Dense `enable_lora`, keras-hub `Backbone.enable_lora`): turning
them on, which weights train, checkpoints that keep the adapters, and the adapter file.

Keras saves a LoRA layer's kernel merged (kernel + alpha/rank * A @ B) and, loading, zeroes A and B. That is the
export's merge, but a checkpoint a run resumes from must keep the frozen base kernel and the adapters apart: with
A and B both zero no gradient reaches either. `extra_state`/`restore_extra_state` carry them beside Keras' own
entries in the same weights file (tfft.fit.callbacks).
"""

from typing import Dict, List, Sequence

import numpy as np

from tfft.errors import UserError

ADAPTER_FILE = "adapter.lora.h5"  # keras-hub's save_lora_weights requires the .lora.h5 suffix
STORE_GROUP = "tfft_lora"


def _weighted_layers(backbone) -> List:
  """The backbone's layers that hold weights, in keras-hub's order (the indices its .lora.h5 file uses)."""
  return [layer for layer in backbone._flatten_layers(include_self=False) if layer.weights]  # pylint: disable=protected-access


def lora_layers(model) -> List:
  """Every layer of `model` with adapters enabled, in a fixed order."""
  return [layer for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
          if getattr(layer, "lora_enabled", False)]


def enable_lora(backbone, *, rank: int, alpha: float, targets: Sequence[str], backbone_flag: str, strategy):
  """Adds rank-`rank` adapters to the backbone's layers named `targets` (empty: the backbone's default).

  keras-hub's `Backbone.enable_lora` picks the layers and records them for `save_lora_weights`; each layer's own
  `enable_lora` creates A (he_uniform) and B (zeros), so the model starts equal to the base. The adapters' scale is
  alpha / rank, set on each layer before anything is traced.

  Returns:
    The names of the adapted layers.

  Raises:
    UserError: when the backbone is not a keras-hub backbone, or no layer of it with that name supports LoRA (the
      message names the layers that do).
  """
  if not hasattr(backbone, "enable_lora"):
    raise UserError(f"--lora_rank: --backbone={backbone_flag} is not a keras-hub backbone, so Keras' LoRA does not "
                    "apply to it; drop --lora_rank")
  supported = sorted({layer.name for layer in _weighted_layers(backbone) if hasattr(layer, "enable_lora")})
  # keras-hub's defaults name the query/value layers of several families; keep those this backbone has.
  targets = list(targets) or [name for name in backbone.default_lora_layer_names() if name in supported]
  unknown = [name for name in targets if name not in supported]
  if unknown or not targets:
    raise UserError(f"--lora_targets={','.join(targets)}: --backbone={backbone_flag} has no layer "
                    f"{', '.join(map(repr, unknown)) or 'to adapt'} that supports LoRA; its Dense/EinsumDense "
                    f"layers are {', '.join(supported) or 'none'}")
  with strategy.scope():
    backbone.enable_lora(rank, target_layer_names=targets)
  for layer in lora_layers(backbone):
    layer.lora_alpha = float(alpha or rank)
  return targets


def set_trainable(backbone):
  """Only the adapters of the backbone train (the head is the caller's): base kernels and biases stay frozen.

  `layer.trainable = True` would set every variable of the layer trainable again, so the base variables are
  frozen after it, as Keras' own `enable_lora` does for the kernel.
  """
  backbone.trainable = True
  adapted = {id(layer) for layer in lora_layers(backbone)}
  for layer in backbone._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if id(layer) not in adapted and not layer._layers:  # pylint: disable=protected-access
      layer.trainable = False
  for layer in lora_layers(backbone):
    layer.trainable = True
    for variable in layer.weights:
      variable.trainable = "lora_kernel" in variable.path


def extra_state(model) -> Dict[str, np.ndarray]:
  """The base kernels and adapters of `model`'s LoRA layers, which Keras' weight files leave out."""
  state = {}
  for i, layer in enumerate(lora_layers(model)):
    state[f"{i}/kernel"] = np.asarray(layer._kernel.numpy())  # pylint: disable=protected-access
    state[f"{i}/lora_kernel_a"] = np.asarray(layer.lora_kernel_a.numpy())
    state[f"{i}/lora_kernel_b"] = np.asarray(layer.lora_kernel_b.numpy())
  return state


def restore_extra_state(model, state: Dict[str, np.ndarray]):
  """Puts extra_state back after Keras loaded the merged kernels (and zeroed the adapters)."""
  for i, layer in enumerate(lora_layers(model)):
    layer._kernel.assign(state[f"{i}/kernel"])  # pylint: disable=protected-access
    layer.lora_kernel_a.assign(state[f"{i}/lora_kernel_a"])
    layer.lora_kernel_b.assign(state[f"{i}/lora_kernel_b"])


def save_adapter(backbone, path):
  """Writes the adapters alone with keras-hub's `save_lora_weights` (reloadable with `load_lora_weights`)."""
  backbone.save_lora_weights(str(path))


def count_adapter_params(model) -> int:
  return int(sum(np.prod(v.shape) for layer in lora_layers(model) for v in (layer.lora_kernel_a, layer.lora_kernel_b)))
