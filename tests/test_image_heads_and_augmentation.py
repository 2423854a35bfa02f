"""Image classifier on the tiny CNN: BatchNorm policy across the phases, freezing by layer, augmentation at inference,
and cached head features."""

import numpy as np
import pytest
import tensorflow as tf

from tfft.fit import phases, recipe
from tfft.model import freezing, heads, layers
from tfft.model import image_backbones
from tfft.config import Freeze, TrainConfig
from tfft.errors import UserError
from tfft.rundir import RunDir

SIZE, CLASSES = 16, 3


def _model(bn_frozen=True, augmentation=()):
  import keras

  keras.utils.set_random_seed(0)
  backbone = image_backbones.load_backbone(image_backbones.resolve("tiny_cnn"), image_size=SIZE, weights="none")
  model = heads.build_image_classifier(backbone, num_classes=CLASSES, image_size=SIZE,
                                          preprocessing={"mode": "tf"}, augmentation=augmentation,
                                          bn_frozen=bn_frozen)
  return backbone, model


def _data(n=24, seed=0):
  rng = np.random.default_rng(seed)
  # Bright, uneven pixels: batch statistics far from BatchNorm's initial moving mean 0 / variance 1.
  x = rng.uniform(100, 255, (n, SIZE, SIZE, 3)).astype("float32")
  y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, n)]
  return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _bn_stats(backbone):
  return {w.path: np.array(w) for layer in backbone.layers
          if layer.__class__.__name__ == "BatchNormalization" for w in layer.non_trainable_weights}


def _run(model, backbone, phase, tmp_path):
  ds = _data()
  return phases.run_phase(model, backbone, phase, train_ds=ds, val_ds=ds, steps_per_epoch=3,
                            train=TrainConfig(early_stopping_patience=0), run_dir=RunDir(tmp_path),
                            strategy=tf.distribute.get_strategy())


@pytest.mark.parametrize("bn", ["frozen", "train"])
def test_batchnorm_statistics_across_the_phases(bn, tmp_path):
  backbone, model = _model(bn_frozen=bn == "frozen")
  start = _bn_stats(backbone)
  assert len(start) == 12  # 6 BatchNorm layers, moving mean and variance each
  first_kernel = np.array(backbone.get_layer("stage1_conv1").kernel)

  _run(model, backbone, recipe.Phase("head", 1, 1e-2, 0.0, Freeze("all")), tmp_path)
  after_head = _bn_stats(backbone)
  for path, value in start.items():  # a frozen backbone never changes its statistics
    np.testing.assert_array_equal(after_head[path], value, err_msg=path)

  _run(model, backbone, recipe.Phase("finetune", 1, 1e-3, 0.0, Freeze("none")), tmp_path)
  after_finetune = _bn_stats(backbone)
  assert not np.array_equal(np.array(backbone.get_layer("stage1_conv1").kernel), first_kernel)  # it did train
  changed = [path for path, value in start.items() if not np.array_equal(after_finetune[path], value)]
  if bn == "frozen":
    assert changed == []  # unfrozen weights trained, but BatchNorm stayed in inference mode
  else:
    assert len(changed) == len(start)  # --bn=train: the statistics follow the batches


def test_freeze_from_layer_trains_that_layer_and_everything_after(tmp_path):
  backbone, model = _model()
  freezing.apply_freeze(model, backbone, Freeze("from_layer", layer="stage3_conv1"))
  names = [layer.name for layer in backbone.layers]
  start = names.index("stage3_conv1")
  assert all(layer.trainable == (i >= start) for i, layer in enumerate(backbone.layers))
  trainable = {w.path.split("/")[0] for w in model.trainable_weights}
  assert trainable == {"stage3_conv1", "stage3_bn1", "stage3_conv2", "stage3_bn2", "logits"}
  with pytest.raises(UserError, match=r"--freeze=from_layer:nope: the backbone has no layer 'nope'; its last layers "
                                      r"are .*stage3_relu2"):
    freezing.apply_freeze(model, backbone, Freeze("from_layer", layer="nope"))


def test_freeze_top_k_counts_the_layers_holding_weights():
  backbone, model = _model()
  blocks = image_backbones.weighted_layers(backbone)
  assert [b.name for b in blocks[-2:]] == ["stage3_conv2", "stage3_bn2"] and len(blocks) == 12
  freezing.apply_freeze(model, backbone, Freeze("top_k", 2), blocks=blocks)
  assert {w.path.split("/")[0] for w in model.trainable_weights} == {"stage3_conv2", "stage3_bn2", "logits"}
  with pytest.raises(UserError, match=r"--freeze=top_k:13 names more blocks than the backbone has \(12\)"):
    freezing.apply_freeze(model, backbone, Freeze("top_k", 13), blocks=blocks)


def test_augmentation_acts_only_in_training():
  augmentation = layers.build_augmentation(flip="horizontal", rotation=0.1, zoom=0.1, translation=0.1,
                                             contrast=0.3)
  assert [layer.name for layer in augmentation] == ["augment_affine", "augment_contrast"]
  assert [layer.name for layer in layers.build_augmentation(flip="vertical")] == ["augment_flip"]
  _, model = _model(augmentation=augmentation)
  _, plain = _model()
  x = next(iter(_data()))[0]
  inference = model(x, training=False).numpy()
  np.testing.assert_array_equal(inference, model(x, training=False).numpy())
  np.testing.assert_allclose(inference, plain(x, training=False).numpy(), rtol=1e-6, atol=1e-6)  # same seed
  assert np.abs(model(x, training=True).numpy() - inference).max() > 1e-4


def test_affine_matrix_rotates_and_shifts_whole_pixels_exactly():
  import keras

  image = np.arange(2 * 5 * 5 * 3, dtype="float32").reshape(2, 5, 5, 3)
  warp = lambda angle, shift_x=0.0, shift_y=0.0: keras.ops.convert_to_numpy(keras.ops.image.affine_transform(
      image, layers.affine_matrix(np.float32([angle] * 2), np.float32([1, 1]), np.float32([shift_x] * 2),
                                    np.float32([shift_y] * 2), height=5, width=5), fill_mode="constant"))
  np.testing.assert_allclose(warp(0.0), image, atol=1e-4)
  # A quarter turn: output pixel (row r, column c) reads input (row c, column 4 - r), as np.rot90 turns.
  np.testing.assert_allclose(warp(np.pi / 2), np.rot90(image, k=1, axes=(1, 2)), atol=1e-3)
  # A shift of (+1 column, +2 rows) reads from there: the content moves left and up, zeros come in.
  shifted = np.zeros_like(image)
  shifted[:, :3, :4] = image[:, 2:, 1:]
  np.testing.assert_allclose(warp(0.0, shift_x=1.0, shift_y=2.0), shifted, atol=1e-4)
  mirrored = lambda **kw: keras.ops.convert_to_numpy(keras.ops.image.affine_transform(image, layers.affine_matrix(
      np.float32([0, 0]), np.float32([1, 1]), np.float32([0, 0]), np.float32([0, 0]), height=5, width=5, **kw)))
  np.testing.assert_allclose(mirrored(mirror_x=np.float32([1, 0])), np.stack([image[0, :, ::-1], image[1]]), atol=1e-4)
  np.testing.assert_allclose(mirrored(mirror_y=np.float32([0, 1])), np.stack([image[0], image[1, ::-1]]), atol=1e-4)
  # Mirror first, then turn: a left-right mirror and a half turn make a top-bottom mirror.
  both = layers.affine_matrix(np.float32([np.pi]), np.float32([1]), np.float32([0]), np.float32([0]), height=5,
                                width=5, mirror_x=np.float32([1]))
  np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.image.affine_transform(image[:1], both)),
                             image[:1, ::-1], atol=1e-3)


def test_random_affine_stays_in_its_ranges_and_repeats_with_its_seed():
  import keras

  layer = layers.RandomAffine(rotation=0.05, zoom=0.2, translation=0.1, seed=3)
  m = keras.ops.convert_to_numpy(layer.transforms(1000, 40, 20))
  scale = np.hypot(m[:, 0], m[:, 3])
  angle = np.arctan2(m[:, 3], m[:, 0])
  np.testing.assert_allclose(m[:, 4], m[:, 0], atol=1e-6)  # a similarity: rotation and one scale, no shear
  np.testing.assert_allclose(m[:, 1], -m[:, 3], atol=1e-6)
  assert np.all(np.abs(scale - 1) <= 0.2 + 1e-6) and np.ptp(scale) > 0.3
  assert np.all(np.abs(angle) <= 0.05 * 2 * np.pi + 1e-6) and np.ptp(angle) > 0.5
  # The image centre moves by the shift alone: within 10% of the width (x) and height (y).
  centre = np.array([9.5, 19.5, 1.0])
  moved = np.stack([m[:, :3] @ centre, m[:, 3:6] @ centre], axis=1) - centre[:2]
  assert np.all(np.abs(moved) <= np.array([2.0, 4.0]) + 1e-4) and np.abs(moved[:, 1]).max() > 3.5
  flips = keras.ops.convert_to_numpy(layers.RandomAffine(flip="horizontal", seed=0).transforms(1000, 8, 8))
  assert set(np.round(flips[:, 0], 6)) == {-1.0, 1.0} and 400 < (flips[:, 0] < 0).sum() < 600
  x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
  again = lambda: keras.ops.convert_to_numpy(layers.RandomAffine(0.1, 0.1, 0.1, seed=5)(x, training=True))
  np.testing.assert_array_equal(again(), again())
  restored = layers.RandomAffine.from_config(layer.get_config())
  assert (restored.rotation, restored.zoom, restored.translation, restored.flip, restored.seed) == (
      0.05, 0.2, 0.1, "none", 3)


def test_cached_head_features_equal_the_models():
  from tfft.fit import feature_cache

  backbone, model = _model()
  x = next(iter(_data()))[0]
  make = lambda name, **kw: tf.data.Dataset.from_tensor_slices((x, tf.zeros((len(x), CLASSES)))).batch(8)
  cache = feature_cache.FeatureCache(model, backbone, None, make, strategy=tf.distribute.get_strategy())
  head, inputs = cache.plan(recipe.Phase("head", 1, 1e-2, 0.0, Freeze("all")))
  np.testing.assert_allclose(head(inputs("train")).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
  assert cache.plan(recipe.Phase("finetune", 1, 1e-3, 0.0, Freeze("none"))) is None


def test_bn_momentum_sets_every_batchnorm_of_the_backbone_and_needs_bn_train():
  from tfft.config import Config, DataConfig, ModelConfig
  from tfft.tasks.registry import validate
  from tfft.errors import UserError
  from tfft.model import image_backbones

  backbone = image_backbones.load_backbone(image_backbones.resolve("efficientnet_lite0"), image_size=32,
                                           weights="none")
  image_backbones.set_bn_momentum(backbone, 0.9)
  bns = [layer for layer in backbone._flatten_layers() if type(layer).__name__ == "BatchNormalization"]
  assert len(bns) > 40 and {layer.momentum for layer in bns} == {0.9}
  # The layer uses it: one training call on inputs of mean 5 moves the moving mean 10% of the way from 0.
  first = bns[0]
  first(np.full((2, 4, 4, first.moving_mean.shape[0]), 5.0, "float32"), training=True)
  np.testing.assert_allclose(first.moving_mean.numpy(), 0.5, rtol=1e-5)
  with pytest.raises(UserError, match=r"^--bn_momentum=0.9: acts only with --bn=train"):
    validate(Config(data=DataConfig(dataset="digits"), model=ModelConfig(backbone="tiny_cnn", bn_momentum=0.9)))
