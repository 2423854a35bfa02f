"""A saved Keras model as an image backbone (--backbone=keras:PATH): loaded safely, cut at a layer, its input size,
channels and preprocessing read from the file or the flags."""

import pathlib
import re
from typing import Optional

from tfft.errors import UserError

SCHEME = "keras:"
SUFFIXES = (".keras", ".h5", ".hdf5")
# Layers that hold no weights and only turn a classifier's scores into its output: walked past when looking for
# the classifier at the top of the model.
_PASS_THROUGH = ("Activation", "Softmax", "Dropout", "SpatialDropout2D", "GaussianDropout", "GlobalAveragePooling2D",
                 "GlobalMaxPooling2D", "Flatten", "Reshape")
_DROPOUTS = ("Dropout", "SpatialDropout2D", "GaussianDropout", "AlphaDropout")
# Layers at a model's input that mean it normalises its own pixels: --preprocessing=auto adds nothing then.
_SELF_NORMALISING = ("Rescaling", "Normalization")
PREPROCESSING_HELP = ("none, tf (x/127.5 - 1), torch (ImageNet mean/std), caffe (BGR minus the ImageNet mean) or "
                      "SCALE,OFFSET (x * SCALE + OFFSET on 0..255 pixels)")


def parse_preprocessing(value: str) -> dict:
  """The ImagePreprocessing arguments `--preprocessing` names (auto is resolved by the caller).

  Raises:
    UserError: for a value that is none of the modes and not SCALE,OFFSET.
  """
  if value in ("none", "tf", "torch", "caffe"):
    return {"mode": value}
  match = re.fullmatch(r"\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*", value)
  try:
    scale, offset = (float(match.group(1)), float(match.group(2))) if match else (None, None)
  except ValueError:
    scale = None
  if scale is None:
    raise UserError(f"--preprocessing={value}: use auto (the backbone's own), {PREPROCESSING_HELP}")
  return {"mode": "affine", "scale": (scale,) * 3, "offset": (offset,) * 3}


def file_path(flag_value: str) -> pathlib.Path:
  """The file `--backbone=keras:PATH` names, checked to exist and to be a Keras model file.

  Raises:
    UserError: for a missing file or another suffix.
  """
  path = pathlib.Path(flag_value[len(SCHEME):]).expanduser()
  if not path.is_file():
    raise UserError(f"--backbone={flag_value}: no such file; pass keras:PATH to a .keras file or a Keras-2 .h5 "
                    "model")
  if path.suffix.lower() not in SUFFIXES:
    raise UserError(f"--backbone={flag_value}: expected a .keras file or a Keras-2 .h5/.hdf5 model, not "
                    f"{path.suffix or 'a file without suffix'}")
  return path


def load_model(flag_value: str):
  """Loads the whole saved model in safe mode, without custom objects, uncompiled.

  Safe mode refuses Lambda layers (their Python code would run on load) in .keras and legacy .h5 files alike.

  Raises:
    UserError: for a missing file, an unsafe file, or one Keras cannot load.
  """
  import keras  # pylint: disable=g-import-not-at-top
  path = file_path(flag_value)
  try:
    model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
  except Exception as e:  # pylint: disable=broad-except
    message = str(e)
    if "safe_mode" in message or "Lambda" in message:
      raise UserError(f"--backbone={flag_value}: refused in safe mode, the file holds Python code (a Lambda layer "
                      "or a custom function); re-save the model without it") from None
    first = message.splitlines()[0][:200] if message else ""
    raise UserError(f"--backbone={flag_value}: Keras cannot load this file without custom objects "
                    f"({type(e).__name__}: {first})") from None
  if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or len(model.inputs) != 1:
    raise UserError(f"--backbone={flag_value}: expected a functional or sequential model with one image input")
  shape = tuple(model.inputs[0].shape)
  if len(shape) != 4 or shape[-1] not in (1, 3):
    raise UserError(f"--backbone={flag_value}: its input is {shape}, not images [N, H, W, 1 or 3]")
  return model


def default_output(model) -> str:
  """The layer before the classifier: past the weightless layers at the top (softmax, pooling, dropout...), past
  the first layer holding weights (the classifier), the layer that feeds it (its dropout skipped)."""
  layer = model.layers[-1]
  while type(layer).__name__ in _PASS_THROUGH or not layer.weights:
    parent = _parent(layer)
    if parent is None:
      return layer.name
    layer = parent
  parent = _parent(layer)  # `layer` is the classifier
  # The classifier's own dropout belongs to the old head: the new head has its own.
  while parent is not None and type(parent).__name__ in _DROPOUTS and _parent(parent) is not None:
    parent = _parent(parent)
  return (parent or layer).name


def _parent(layer):
  """The single layer feeding `layer`, or None at an input or a merge."""
  node = layer._inbound_nodes[0] if layer._inbound_nodes else None  # pylint: disable=protected-access
  parents = [t._keras_history.operation for t in node.input_tensors] if node else []  # pylint: disable=protected-access
  if len(parents) != 1 or type(parents[0]).__name__ == "InputLayer":
    return None
  return parents[0]


def cut(model, output_layer: str, *, flag_value: str):
  """The model from its input to `output_layer`'s output, sharing its layers and weights.

  Raises:
    UserError: for a layer name the model does not have (a few valid ones are listed).
  """
  import keras  # pylint: disable=g-import-not-at-top
  names = [layer.name for layer in model.layers]
  if output_layer not in names:
    raise UserError(f"--backbone_output={output_layer}: {flag_value} has no such layer; its last layers are "
                    f"{', '.join(names[-6:])} (default: {default_output(model)}, the layer before the classifier)")
  output = model.get_layer(output_layer).output
  if len(output.shape) not in (2, 3, 4):
    raise UserError(f"--backbone_output={output_layer}: its output is {tuple(output.shape)}; pick a layer with "
                    "features [N, C], a feature map [N, h, w, C] or tokens [N, T, C], e.g. " + default_output(model))
  return keras.Model(model.inputs, output, name="keras_backbone")


def channels(model) -> int:
  return int(model.inputs[0].shape[-1])


def recorded_preprocessing(model) -> Optional[str]:
  """The name of the normalising layer at the model's input (Rescaling, Normalization), or None."""
  for layer in model.layers[:4]:
    if type(layer).__name__ in _SELF_NORMALISING:
      return layer.name
  return None

