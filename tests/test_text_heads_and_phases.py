"""Freezing policies and phases on a tiny real BERT: trainable counts, and which weights a phase may change."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import make_texts
from tfft.fit import phases, recipe
from tfft.model import freezing, heads
from tfft.model import text_backbones
from tfft.config import Freeze, TrainConfig
from tfft.data import text_batches
from tfft.errors import UserError
from tfft.rundir import RunDir

HIDDEN, INTERMEDIATE, CLASSES = 16, 32, 3


def _block_params():
  attention = 4 * (HIDDEN * HIDDEN + HIDDEN)  # q, k, v, output projections
  ffn = HIDDEN * INTERMEDIATE + INTERMEDIATE + INTERMEDIATE * HIDDEN + HIDDEN
  norms = 2 * 2 * HIDDEN
  return attention + ffn + norms


HEAD_PARAMS = HIDDEN * CLASSES + CLASSES


@pytest.fixture()
def tiny(tiny_bert_preset):
  spec = text_backbones.resolve(str(tiny_bert_preset))
  backbone = text_backbones.load_backbone(spec)
  model = heads.build_text_classifier(backbone, num_classes=CLASSES, pooling="mean")
  return spec, backbone, model


def test_freeze_all_trains_only_the_head(tiny):
  _, backbone, model = tiny
  freezing.apply_freeze(model, backbone, Freeze("all"))
  assert freezing.count_params(model.trainable_weights) == HEAD_PARAMS
  assert [w.path.split("/")[0] for w in model.trainable_weights] == ["logits", "logits"]


def test_freeze_none_trains_all_but_the_unused_pooler(tiny):
  _, backbone, model = tiny
  freezing.apply_freeze(model, backbone, Freeze("none"))
  pooler = HIDDEN * HIDDEN + HIDDEN
  total = freezing.count_params(model.weights)
  assert freezing.count_params(model.trainable_weights) == total - pooler
  assert freezing.count_params(model.non_trainable_weights) == pooler


@pytest.mark.parametrize("k", [1, 2])
def test_freeze_top_k_trains_the_last_k_blocks(tiny, k):
  _, backbone, model = tiny
  blocks = text_backbones.transformer_blocks(backbone)
  freezing.apply_freeze(model, backbone, Freeze("top_k", k), blocks=blocks)
  assert freezing.count_params(model.trainable_weights) == HEAD_PARAMS + k * _block_params()
  assert all(layer.trainable == (i >= len(blocks) - k) for i, layer in enumerate(blocks))
  assert not backbone.get_layer("token_embedding").trainable


def test_freeze_top_k_beyond_the_blocks_is_a_user_error(tiny):
  _, backbone, model = tiny
  with pytest.raises(UserError, match=r"--freeze=top_k:3 names more blocks than the backbone has \(2\)"):
    freezing.apply_freeze(model, backbone, Freeze("top_k", 3), blocks=text_backbones.transformer_blocks(backbone))


def test_frozen_backbone_runs_in_inference_mode_even_when_fit_passes_training(tiny, tiny_bert_preset):
  """Keras 3 overrides a construction-time training=False; the frozen backbone must still skip its dropout."""
  spec, backbone, model = tiny
  encoder, _ = heads.split_at_pooling(model)
  features = text_backbones.load_preprocessor(spec, 16)(tf.constant(["cat dog horse", "red blue"]))
  freezing.apply_freeze(model, backbone, Freeze("all"))
  inference = encoder(features, training=False).numpy()
  np.testing.assert_allclose(encoder(features, training=True).numpy(), inference, atol=1e-6)
  freezing.apply_freeze(model, backbone, Freeze("none"))  # fine-tuning: BERT's dropout is on in training
  assert np.abs(encoder(features, training=True).numpy() - inference).max() > 1e-3
  np.testing.assert_allclose(encoder(features, training=False).numpy(), inference, atol=1e-6)


def test_cls_and_mean_pooling_differ(tiny_bert_preset):
  spec = text_backbones.resolve(str(tiny_bert_preset))
  pre = text_backbones.load_preprocessor(spec, 16)
  features = pre(tf.constant(["cat dog", "red blue green yellow"]))
  backbone = text_backbones.load_backbone(spec)
  outputs = {}
  for pooling in ("cls", "mean"):
    model = heads.build_text_classifier(backbone, num_classes=CLASSES, pooling=pooling)
    model.get_layer("logits").set_weights([np.eye(HIDDEN, CLASSES, dtype="float32"), np.zeros(CLASSES, "float32")])
    outputs[pooling] = model(features, training=False).numpy()
  sequence = backbone(features, training=False)["sequence_output"].numpy()
  mask = features["padding_mask"].numpy()[..., None].astype("float32")
  np.testing.assert_allclose(outputs["cls"], sequence[:, 0, :CLASSES], atol=1e-5)
  np.testing.assert_allclose(outputs["mean"], ((sequence * mask).sum(1) / mask.sum(1))[:, :CLASSES], atol=1e-5)


def _snapshot(layers):
  return [w.numpy().copy() for layer in layers for w in layer.weights]


def _changed(before, layers):
  return any(not np.array_equal(b, w.numpy()) for b, w in zip(before, (w for l in layers for w in l.weights)))


def _tiny_data(spec):
  """Tokenized features, class indices and example indices of 8 texts per class."""
  pairs = make_texts(8)
  names = sorted({label for _, label in pairs})
  features = text_batches.tokenize(text_backbones.load_preprocessor(spec, 16), [t for t, _ in pairs])
  return features, np.array([names.index(label) for _, label in pairs]), np.arange(len(pairs))


def test_phases_change_only_what_they_train(tiny, tmp_path):
  spec, backbone, model = tiny
  features, labels, idx = _tiny_data(spec)
  ds = text_batches.make_dataset(features, labels, idx, num_classes=CLASSES, batch_size=8, shuffle=True, seed=0)
  blocks = text_backbones.transformer_blocks(backbone)
  cfg = TrainConfig(early_stopping_patience=0, learning_rate=1e-2)
  strategy = tf.distribute.get_strategy()
  head = model.get_layer("logits")
  lower, upper = [blocks[0], backbone.get_layer("token_embedding")], [blocks[1]]

  before_backbone, before_head = _snapshot(backbone.layers), _snapshot([head])
  phase1 = recipe.Phase("head", 1, 1e-2, 0.0, Freeze("all"))
  result = phases.run_phase(model, backbone, phase1, train_ds=ds, val_ds=ds, steps_per_epoch=3, train=cfg,
                              run_dir=RunDir(tmp_path), strategy=strategy, blocks=blocks)
  assert result.trainable_params == HEAD_PARAMS
  assert not _changed(before_backbone, backbone.layers), "phase 1 changed frozen backbone weights"
  assert _changed(before_head, [head]), "phase 1 did not train the head"

  before_lower, before_upper = _snapshot(lower), _snapshot(upper)
  phase2 = recipe.Phase("finetune", 1, 1e-2, 0.5, Freeze("top_k", 1))
  phases.run_phase(model, backbone, phase2, train_ds=ds, val_ds=ds, steps_per_epoch=3, train=cfg,
                     run_dir=RunDir(tmp_path), strategy=strategy, blocks=blocks)
  assert not _changed(before_lower, lower), "top_k:1 changed a frozen lower block or the embeddings"
  assert _changed(before_upper, upper), "top_k:1 did not train the top block"
  assert (tmp_path / "checkpoints" / "best_finetune.weights.h5").exists()
  assert (tmp_path / "history_head.csv").exists() and (tmp_path / "logs" / "finetune").is_dir()


def test_plan_phases():
  both = recipe.plan_phases(TrainConfig(head_epochs=2, epochs=3, freeze=Freeze("top_k", 2), warmup_fraction=0.2))
  assert [(p.name, p.epochs, p.freeze.kind, p.warmup_fraction) for p in both] == [
      ("head", 2, "all", 0.0), ("finetune", 3, "top_k", 0.2)]
  assert [p.name for p in recipe.plan_phases(TrainConfig(head_epochs=0, epochs=1))] == ["finetune"]
  assert [p.name for p in recipe.plan_phases(TrainConfig(head_epochs=1, epochs=0))] == ["head"]


def test_a_small_training_set_stretches_the_head_phase_to_head_min_steps():
  train = TrainConfig(head_epochs=10, epochs=2, head_min_steps=200, early_stopping_patience=2)
  plan = recipe.plan_phases(train)
  # 20 examples at batch 32: one step per epoch, so 200 epochs and a patience of a tenth of them.
  head, finetune = recipe.fit_to_data(plan, train, steps_per_epoch=1)
  assert (head.epochs, head.patience) == (200, 20) and finetune == plan[1]
  assert recipe.fit_to_data(plan, train, steps_per_epoch=7)[0].epochs == 29  # ceil(200 / 7)
  assert recipe.fit_to_data(plan, train, steps_per_epoch=20) == plan  # 10 x 20 steps are enough
  off = recipe.fit_to_data(plan, TrainConfig(head_epochs=10, head_min_steps=0), steps_per_epoch=1)
  assert off[0].epochs == 10 and off[0].patience is None
  no_stopping = TrainConfig(head_epochs=10, head_min_steps=200, early_stopping_patience=0)
  assert recipe.fit_to_data(recipe.plan_phases(no_stopping), no_stopping, steps_per_epoch=1)[0].patience == 0


def test_cached_features_train_the_head_as_the_full_model_does(tiny_bert_preset, tmp_path):
  """Phase 1 on cached pooled features must give the same head as phase 1 through the frozen backbone."""
  import keras

  spec = text_backbones.resolve(str(tiny_bert_preset))
  features, labels, idx = _tiny_data(spec)
  cfg = TrainConfig(early_stopping_patience=0)
  phase = recipe.Phase("head", 2, 5e-2, 0.0, Freeze("all"))
  trained = []
  for cached in (False, True):
    keras.utils.set_random_seed(3)
    backbone = text_backbones.load_backbone(spec)
    model = heads.build_text_classifier(backbone, num_classes=CLASSES, pooling="mean", dropout=0.0)
    initial = model.get_layer("logits").weights[0].numpy().copy()
    ds = lambda f, **kw: text_batches.make_dataset(f, labels, idx, num_classes=CLASSES, batch_size=8, **kw)
    kwargs = {"train_ds": ds(features, shuffle=True, seed=0), "val_ds": ds(features)}
    if cached:
      encoder, head = heads.split_at_pooling(model)
      pooled = encoder.predict(ds(features), verbose=0)
      assert pooled.shape == (len(idx), HIDDEN)
      kwargs = {"train_ds": ds(pooled, shuffle=True, seed=0), "val_ds": ds(pooled), "fit_model": head}
    result = phases.run_phase(model, backbone, phase, steps_per_epoch=3, train=cfg, run_dir=RunDir(tmp_path / str(cached)),
                              strategy=tf.distribute.get_strategy(), **kwargs)
    assert result.trainable_params == HEAD_PARAMS
    trained.append([w.numpy() for w in model.get_layer("logits").weights])
    assert not np.allclose(trained[-1][0], initial), "the head did not train"
  for plain, cached in zip(*trained):
    np.testing.assert_allclose(cached, plain, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("k", [1, 2])
def test_split_at_block_composes_to_the_model(tiny_bert_preset, pooling, k):
  spec = text_backbones.resolve(str(tiny_bert_preset))
  backbone = text_backbones.load_backbone(spec)
  model = heads.build_text_classifier(backbone, num_classes=CLASSES, pooling=pooling)
  lower, upper, upper_encoder = heads.split_at_block(model, backbone, text_backbones.transformer_blocks(backbone), k)
  features = text_backbones.load_preprocessor(spec, 16)(tf.constant(["cat dog horse", "red", "one two the"]))
  inputs = {"hidden": lower(features, training=False), "padding_mask": tf.cast(features["padding_mask"], "int32")}
  np.testing.assert_allclose(upper(inputs, training=False).numpy(), model(features, training=False).numpy(),
                             atol=1e-5)
  encoder, _ = heads.split_at_pooling(model)
  np.testing.assert_allclose(upper_encoder(inputs, training=False).numpy(), encoder(features, training=False).numpy(),
                             atol=1e-5)
  assert freezing.count_params(upper.weights) == HEAD_PARAMS + k * _block_params()
