"""Image backbones: each family gets exactly its own preprocessing, and weights load from imagenet, none or a file."""

import keras
import numpy as np
import pytest

from tfft.model import heads, layers
from tfft.model import image_backbones
from tfft.errors import UserError

A = keras.applications
# Written out here, independently of the registry: the keras.applications function each name must match.
KERAS_PREPROCESS = {
    "resnet50": A.resnet50.preprocess_input, "resnet101": A.resnet.preprocess_input,
    "resnet152": A.resnet.preprocess_input, "resnet50v2": A.resnet_v2.preprocess_input,
    "resnet101v2": A.resnet_v2.preprocess_input, "resnet152v2": A.resnet_v2.preprocess_input,
    "vgg16": A.vgg16.preprocess_input, "vgg19": A.vgg19.preprocess_input,
    "mobilenet": A.mobilenet.preprocess_input, "mobilenetv2": A.mobilenet_v2.preprocess_input,
    "mobilenetv3small": A.mobilenet_v3.preprocess_input, "mobilenetv3large": A.mobilenet_v3.preprocess_input,
    **{f"efficientnetb{i}": A.efficientnet.preprocess_input for i in range(8)},
    **{f"efficientnetv2{s}": A.efficientnet_v2.preprocess_input for s in ("b0", "b1", "b2", "b3", "s", "m", "l")},
    **{f"densenet{n}": A.densenet.preprocess_input for n in (121, 169, 201)},
    "inceptionv3": A.inception_v3.preprocess_input, "inceptionresnetv2": A.inception_resnet_v2.preprocess_input,
    "xception": A.xception.preprocess_input,
    **{f"convnext{s}": A.convnext.preprocess_input for s in ("tiny", "small", "base", "large", "xlarge")},
    "nasnetmobile": A.nasnet.preprocess_input, "nasnetlarge": A.nasnet.preprocess_input,
}
# Families whose models rescale their 0..255 input themselves, so tfft must add nothing.
SELF_RESCALING = ("mobilenetv3", "efficientnet", "convnext")
# Built at 32x32 for the end-to-end check: one family per preprocessing mode (caffe, tf, torch) and every
# self-rescaling family. The per-name test above ties every other name to one of these modes.
REPRESENTATIVES = ("resnet50", "mobilenetv2", "densenet121", "mobilenetv3small", "efficientnetb0",
                   "efficientnetv2b0", "convnexttiny")


def _pixels(n=2, size=8, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_the_registry_covers_every_keras_applications_family_and_the_built_in_ones():
  assert set(image_backbones.FAMILIES) == set(KERAS_PREPROCESS) | {"tiny_cnn", "efficientnet_lite0"}


def test_efficientnet_lite0_freezes_by_mbconv_block():
  """top_k:N counts Lite0's blocks (stem, 16 MBConv blocks, head), not its layers."""
  import keras

  from tfft.config import Freeze
  from tfft.model import freezing

  spec = image_backbones.resolve("efficientnet_lite0")
  backbone = image_backbones.load_backbone(spec, image_size=32, weights="none")
  blocks = image_backbones.blocks(spec, backbone)
  assert len(blocks) == 18 and all(isinstance(b, list) for b in blocks)
  model = heads.build_image_classifier(backbone, num_classes=2, image_size=32, preprocessing={"mode": "none"})
  freezing.apply_freeze(model, backbone, Freeze("top_k", 2), blocks=blocks)
  trained = {layer.name.split("_", 1)[0] for layer in backbone.layers if layer.trainable and layer.weights}
  assert trained == {"block15", "head"}
  assert keras.ops.convert_to_numpy(model(np.zeros((1, 32, 32, 3), "float32"))).shape == (1, 2)


@pytest.mark.parametrize("name", sorted(KERAS_PREPROCESS))
def test_preprocessing_layer_equals_the_family_function(name):
  family = image_backbones.FAMILIES[name]
  x = _pixels()
  ours = keras.ops.convert_to_numpy(layers.ImagePreprocessing(family.preprocess)(x))
  theirs = keras.ops.convert_to_numpy(KERAS_PREPROCESS[name](x.copy()))
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
  # The self-rescaling families get nothing extra, and only they do.
  assert (family.preprocess == "none") == name.startswith(SELF_RESCALING)


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_the_built_model_preprocesses_exactly_once(name):
  """The classifier's features equal keras' own recipe: backbone(family.preprocess_input(pixels)).

  For a self-rescaling family a second normalisation inside tfft, and for the others a missing or wrong one, would
  change the features far beyond float error.
  """
  keras.utils.set_random_seed(0)
  spec = image_backbones.resolve(name)
  size = max(32, spec.family.min_size)
  backbone = image_backbones.load_backbone(spec, image_size=size, weights="none")
  model = heads.build_image_classifier(backbone, num_classes=2, image_size=size,
                                          preprocessing=image_backbones.preprocessing(spec))
  features = keras.Model(model.input, model.get_layer("avg_pool").output)
  x = _pixels(size=size, seed=1)
  ours = keras.ops.convert_to_numpy(features(x, training=False))
  reference = keras.ops.convert_to_numpy(
      keras.ops.mean(backbone(KERAS_PREPROCESS[name](x.copy()), training=False), axis=(1, 2)))
  np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
  if name.startswith(SELF_RESCALING):  # the rescaling really is inside the keras model
    assert any(isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)) for layer in backbone.layers)


def test_unknown_backbone_lists_the_valid_names():
  with pytest.raises(UserError, match=r"--backbone=resnet51 is not an image backbone; use one of: resnet50, .*"
                                      r"nasnetlarge, tiny_cnn"):
    image_backbones.resolve("resnet51")


def test_image_size_too_small_names_the_minimum():
  with pytest.raises(UserError, match=r"--image_size=64 is too small for --backbone=inceptionv3: it needs at least "
                                      r"75 pixels \(default 299\)"):
    image_backbones.image_size(image_backbones.resolve("inceptionv3"), 64)
  assert image_backbones.image_size(image_backbones.resolve("efficientnetb3"), 0) == 300


def test_weights_file_loads_into_the_backbone(tiny_cnn_weights, tmp_path):
  spec = image_backbones.resolve("tiny_cnn")
  loaded = image_backbones.load_backbone(spec, image_size=24, weights=str(tiny_cnn_weights))
  fresh = image_backbones.load_backbone(spec, image_size=24, weights="none")
  reference = image_backbones.load_backbone(spec, image_size=16, weights="none")
  reference.load_weights(str(tiny_cnn_weights))
  for a, b, c in zip(loaded.get_weights(), reference.get_weights(), fresh.get_weights()):
    np.testing.assert_array_equal(a, b)
  # The file holds seeded random weights, so a fresh build differs from them.
  assert any(not np.array_equal(a, c) for a, c in zip(loaded.get_weights(), fresh.get_weights()))

  # A .keras file of a whole tfft classifier gives its backbone's weights (loaded in safe mode).
  model = heads.build_image_classifier(loaded, num_classes=3, image_size=24, preprocessing={"mode": "tf"})
  model.save(tmp_path / "classifier.keras")
  from_keras = image_backbones.load_backbone(spec, image_size=24, weights=str(tmp_path / "classifier.keras"))
  for a, b in zip(from_keras.get_weights(), loaded.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_weights_of_another_architecture_are_a_clear_error(tmp_path):
  other = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 5, name="conv")])
  path = tmp_path / "other.weights.h5"
  other.save_weights(str(path))
  with pytest.raises(UserError, match=rf"--backbone_weights={path} does not fit --backbone=tiny_cnn"):
    image_backbones.load_backbone(image_backbones.resolve("tiny_cnn"), image_size=16, weights=str(path))
  with pytest.raises(UserError, match="no such file"):
    image_backbones.load_backbone(image_backbones.resolve("tiny_cnn"), image_size=16, weights=str(tmp_path / "x.h5"))


def test_imagenet_offline_says_where_to_place_the_file(tmp_path, monkeypatch):
  # Keras' real download, through a proxy that refuses connections: the machine is offline either way.
  for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
    monkeypatch.setenv(var, "http://127.0.0.1:9")
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
  with pytest.raises(UserError) as e:
    image_backbones.load_backbone(image_backbones.resolve("mobilenetv3small"), image_size=32, weights="imagenet")
  message = str(e.value)
  assert "--backbone_weights=imagenet" in message and "--backbone_weights=PATH" in message
  assert str(tmp_path / "keras_home" / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5") in message
  with pytest.raises(UserError, match="tiny_cnn has no ImageNet weights"):
    image_backbones.load_backbone(image_backbones.resolve("tiny_cnn"), image_size=16, weights="imagenet")


def test_keras_hub_image_preset_from_a_local_dir(tmp_path):
  import keras_hub

  # A 1-layer ViT: its output is tokens [N, T, C], which the head mean-pools.
  backbone = keras_hub.models.ViTBackbone(image_shape=(24, 24, 3), patch_size=8, num_layers=1, num_heads=2,
                                          hidden_dim=8, mlp_dim=16)
  converter = keras_hub.layers.ViTImageConverter(image_size=(24, 24), scale=1 / 255.0, offset=-0.5)
  backbone.save_to_preset(str(tmp_path))
  converter.save_to_preset(str(tmp_path))
  spec = image_backbones.resolve(str(tmp_path))
  assert image_backbones.image_size(spec, 0) == 24
  assert image_backbones.preprocessing(spec) == {"mode": "affine", "scale": (1 / 255.0,) * 3,
                                                 "offset": (-0.5,) * 3}
  loaded = image_backbones.load_backbone(spec, image_size=24, weights="imagenet")  # the preset's own weights
  for a, b in zip(loaded.get_weights(), backbone.get_weights()):
    np.testing.assert_array_equal(a, b)
  model = heads.build_image_classifier(loaded, num_classes=2, image_size=24,
                                          preprocessing=image_backbones.preprocessing(spec))
  assert model(_pixels(size=24)).shape == (2, 2)
