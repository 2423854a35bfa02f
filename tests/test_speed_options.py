"""The speed options change speed, not results: dynamic padding, length bucketing, mixed precision, throughput logs."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_texts
from tfft.data import padding as padding_lib
from tfft.data import windows
from tfft.data import batching
from tfft.fit import callbacks, phases
from tfft.model import heads
from tfft.model import text_backbones
from tfft.data import text_batches

SEQ = 32


@pytest.fixture(scope="module")
def tiny(tiny_bert_preset):
  spec = text_backbones.resolve(str(tiny_bert_preset))
  preprocessor = text_backbones.load_preprocessor(spec, SEQ)
  keras.utils.set_random_seed(0)
  model = heads.build_text_classifier(text_backbones.load_backbone(spec), num_classes=3, pooling="mean")
  # Batches of 8 hold 8, 14 or 20 tokens, so dynamic padding cuts each one differently.
  texts = [" ".join([t] * (1 + (i // 8) % 3)) for i, (t, _) in enumerate(make_texts(10))]
  features = text_batches.tokenize(preprocessor, texts)
  labels = np.arange(len(texts)) % 3
  return spec, preprocessor, model, texts, features, labels


def _batches(ds):
  return [(x, y) for x, y in ds]


def test_dynamic_padding_cuts_batches_and_keeps_the_logits(tiny):
  _, _, model, _, features, labels = tiny
  idx = np.arange(len(labels))
  fixed = _batches(text_batches.make_dataset(features, labels, idx, num_classes=3, batch_size=8))
  dynamic = _batches(text_batches.make_dataset(features, labels, idx, num_classes=3, batch_size=8, padding="dynamic",
                                          pad_to_multiple_of=8))
  assert len(fixed) == len(dynamic)
  lengths = text_batches.lengths(features)
  widths = set()
  for i, ((xf, yf), (xd, yd)) in enumerate(zip(fixed, dynamic)):
    width = xd["token_ids"].shape[1]
    longest = lengths[i * 8:(i + 1) * 8].max()
    assert width % 8 == 0 and longest <= width < longest + 8, (width, longest)
    np.testing.assert_array_equal(yf, yd)
    np.testing.assert_array_equal(xf["token_ids"][:, :width], xd["token_ids"])
    np.testing.assert_allclose(model(xf, training=False), model(xd, training=False), atol=1e-5)
    widths.add(width)
  assert len(widths) > 1 and max(widths) < SEQ  # the cut really happened, and differs per batch


def test_bucketing_keeps_every_example_once_and_counts_its_batches(tiny):
  _, _, _, _, features, labels = tiny
  idx = np.arange(len(labels))
  ds = text_batches.make_dataset(features, labels, idx, num_classes=3, batch_size=4, shuffle=True, seed=3,
                            padding="bucket", pad_to_multiple_of=8)
  for _ in range(2):  # reshuffled each epoch, still a permutation
    seen = collections.Counter()
    batches = _batches(ds)
    for x, _ in batches:
      width = x["token_ids"].shape[1]
      real = x["padding_mask"].numpy().sum(axis=1)
      assert width % 8 == 0 and np.all(real > width - 8) and np.all(real <= width), (width, real)
      seen.update(map(tuple, x["token_ids"].numpy()[:, :4]))
    assert sum(seen.values()) == len(labels)
    assert len(batches) == text_batches.num_batches(features, idx, batch_size=4, padding="bucket", pad_to_multiple_of=8)
  assert text_batches.num_batches(features, idx, batch_size=4) == -(-len(labels) // 4)


def test_cached_pooled_features_keep_the_example_order_under_bucketing(tiny):
  """The head phase's cache pairs features with labels by position, so it must not take the bucketed order."""
  from tfft.fit import feature_cache  # pylint: disable=g-import-not-at-top

  _, _, model, _, features, labels = tiny
  # Texts of 8, 14 and 20 tokens in turn, so that bucketing regroups them.
  idx = np.array([block * 8 + j for j in range(8) for block in range(3)])
  make = lambda name, **kw: text_batches.make_dataset(
      features, labels, idx, num_classes=3, batch_size=4, **{"padding": "bucket", "pad_to_multiple_of": 8, **kw})
  bucketed = np.concatenate([x["token_ids"].numpy()[:, 1] for x, _ in make("train")])
  in_order_ids = np.concatenate([x["token_ids"].numpy()[:, 1] for x, _ in make("train", padding="fixed")])
  assert (bucketed != in_order_ids).any(), "bucketing kept the order: the test cannot tell the orders apart"
  cache = feature_cache.FeatureCache(model, None, None, make, strategy=tf.distribute.get_strategy())
  encoder, _ = heads.split_at_pooling(model)
  in_order = encoder.predict(make("train", padding="fixed"), verbose=0)
  np.testing.assert_allclose(cache.pooled("train"), in_order, atol=1e-5)


def test_trimmed_windowed_logits_match_full_length(tiny):
  _, preprocessor, model, texts, _, _ = tiny
  full = windows.predict_logits(model, preprocessor, texts, 1, batch_size=8)
  cut = windows.predict_logits(model, preprocessor, texts, 1, batch_size=8, pad_to_multiple_of=8)
  np.testing.assert_allclose(full, cut, atol=1e-5)


def test_trim_handles_cached_hidden_states():
  mask = tf.constant([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]])
  hidden = tf.random.normal([2, 8, 5])
  out = text_batches.trim_to_longest({"hidden": hidden, "padding_mask": mask}, 2)
  assert out["hidden"].shape == (2, 4, 5) and out["padding_mask"].shape == (2, 4)


def test_mixed_precision_model_copies_to_float32(tiny, tiny_bert_preset):
  from tfft import config as config_lib
  from tfft.tasks import registry as tasks

  spec, _, model32, _, features, _ = tiny
  config = config_lib.Config(model=config_lib.ModelConfig(backbone=str(tiny_bert_preset), sequence_length=SEQ,
                                                          pooling="mean"),
                             train=config_lib.TrainConfig(mixed_precision="mixed_bfloat16"))
  task, strategy = tasks.build_task(config), tf.distribute.get_strategy()
  try:
    mixed = task.build_model(3, strategy).model
    assert mixed.get_layer(heads.BACKBONE).backbone.compute_dtype == "bfloat16"
    mixed.set_weights(model32.get_weights())
    # What the job scores and exports: the same task's float32 build, given the trained weights.
    copy = task.build_model(3, strategy, precision="float32", weights="none").model
    copy.set_weights(mixed.get_weights())
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert copy.get_layer(heads.BACKBONE).backbone.compute_dtype == "float32"
  x = {k: v[:8] for k, v in features.items()}
  np.testing.assert_allclose(copy(x, training=False), model32(x, training=False), atol=1e-6)
  # bf16 keeps ~3 significant digits: close to float32, not equal.
  assert mixed(x, training=False).dtype == "float32"
  np.testing.assert_allclose(mixed(x, training=False), model32(x, training=False), atol=0.1)


def test_throughput_is_logged_per_epoch():
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  model.compile("sgd", "mse")
  history = model.fit(np.ones((10, 4)), np.ones((10, 2)), batch_size=5, epochs=2, verbose=0,
                      callbacks=[callbacks.Throughput(10)])
  assert len(history.history["examples_per_sec"]) == 2
  assert history.history["steps"] == [2, 2]
  assert all(v > 0 for v in history.history["examples_per_sec"])
  assert all(s > 0 for s in history.history["train_seconds"])


def test_steps_per_execution_divides_each_epoch_of_a_stream():
  assert [phases.steps_per_execution(4, n) for n in (9, 8, 7, 2)] == [3, 4, 1, 2]
  assert phases.steps_per_execution(4, 0) == 4  # a finite dataset: Keras ends each epoch's last execution early
  assert phases.steps_per_execution(1, 9) == 1


@pytest.mark.parametrize("stream", [True, False])
def test_throughput_counts_the_optimizer_steps_under_steps_per_execution(stream):
  """9 batches of 8 per epoch at 4 steps per execution: every epoch runs its 9 steps, and the log says so."""
  x, y = np.random.rand(72, 4).astype("float32"), np.random.rand(72, 2).astype("float32")
  one_epoch = lambda s: tf.data.Dataset.from_tensor_slices((x, y)).shuffle(72, seed=s).batch(8)
  data = batching.per_epoch(one_epoch, seed=0, epochs=(0, 3)) if stream else one_epoch(0)
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  model.compile("sgd", "mse", steps_per_execution=phases.steps_per_execution(4, 9 if stream else 0))
  history = model.fit(data, epochs=3, steps_per_epoch=9 if stream else None, verbose=0,
                      callbacks=[callbacks.Throughput(72, 9)])
  assert history.history["steps"] == [9, 9, 9]
  assert int(model.optimizer.iterations.numpy()) == 27
  for rate, seconds in zip(history.history["examples_per_sec"], history.history["train_seconds"]):
    assert rate * seconds == pytest.approx(72)


def test_profile_batches_trace_each_phase_and_the_summary_reads_the_trace(tiny_run):
  import importlib.util

  from conftest import REPO
  tmp, _ = tiny_run
  spec = importlib.util.spec_from_file_location("profile_summary", REPO / "bench" / "profile_summary.py")
  profile_summary = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(profile_summary)
  for phase in ("head", "finetune"):
    summary = profile_summary.summarize(tmp / "run" / "logs" / phase)
    assert summary["traces"] and summary["op_seconds"] > 0, summary
    ops = {row["op"] for row in summary["top_ops"]}
    assert any(profile_summary.MATMUL.search(op) for op in ops), ops  # the Dense layers' matmuls were traced
    assert 0 < summary["matmul_share"] <= 1


def _masks(lengths, full):
  return np.array([[1] * n + [0] * (full - n) for n in lengths], dtype=bool)


def test_dynamic_cut_counts_the_token_positions_trimming_drops():
  masks = _masks([5] * 8 + [40] * 8, 64)
  # Batches of 8 in one shuffled order: a batch of short texts keeps 16 positions a row, any batch with a long
  # one keeps 48; so the cut is 1 - kept / (16 * 64) whatever the order.
  cut = padding_lib.dynamic_cut(masks, np.arange(16), batch_size=8, pad_to_multiple_of=16, seed=3)
  order = masks.sum(axis=1)[np.random.default_rng(3).permutation(16)]
  kept = sum(8 * (48 if batch.max() > 16 else 16) for batch in (order[:8], order[8:]))
  assert cut == pytest.approx(1 - kept / (16 * 64))
  assert padding_lib.dynamic_cut(_masks([64] * 4, 64), np.arange(4), batch_size=2, pad_to_multiple_of=16) == 0.0


@pytest.mark.parametrize("lengths,precision,expected", [
    ([128] * 32, "float32", "fixed"),           # full-length texts: nothing to cut
    ([10] * 31 + [128], "float32", "fixed"),    # one long text in the only batch keeps it full length
    ([10] * 32, "float32", "dynamic"),          # 16 of 128 positions kept
    ([50] * 32, "float32", "dynamic"),          # 64 of 128 kept: a 50% cut pays in fp32 ...
    ([50] * 32, "mixed_bfloat16", "fixed"),     # ... not in bf16, where tf.einsum costs 2.8x
])
def test_auto_padding_picks_dynamic_only_where_the_cut_pays(lengths, precision, expected):
  cut = padding_lib.dynamic_cut(_masks(lengths, 128), np.arange(len(lengths)), batch_size=32, pad_to_multiple_of=16)
  assert padding_lib.auto_padding(cut, precision) == expected


def test_text_task_resolves_auto_padding_from_its_training_texts(tiny_bert_preset):
  from tfft import config as config_lib
  from tfft.tasks import registry as tasks
  from tfft.data import text as text_data

  def resolved(texts):
    config = config_lib.Config(model=config_lib.ModelConfig(backbone=str(tiny_bert_preset), sequence_length=SEQ,
                                                            pooling="mean"),
                               train=config_lib.TrainConfig(batch_size=4, pad_to_multiple_of=8))
    task = tasks.build_task(config)
    examples = text_data.Examples(texts, ["a"] * len(texts), [str(i) for i in range(len(texts))], "test")
    split = {"train": np.arange(len(texts)), "val": np.arange(0), "test": np.arange(0)}
    from tfft.tasks.api import Targets  # pylint: disable=g-import-not-at-top
    prepared = task.prepare(examples, Targets(("a",), np.zeros(len(texts), dtype=int), ()), split)
    assert task.config == config  # the task resolves the padding into what it prepares, not into its config
    return prepared.padding

  assert resolved(["cat dog"] * 8) == "dynamic"
  assert resolved([" ".join(["cat"] * 40)] * 8) == "fixed"


def test_epoch_tensorboard_writes_the_epoch_summaries(tmp_path):
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  model.compile("sgd", "mse")
  board = callbacks.EpochTensorBoard(str(tmp_path))
  model.fit(np.ones((10, 4)), np.ones((10, 2)), batch_size=5, epochs=2, verbose=0, callbacks=[board])
  assert board._global_train_batch == 4  # pylint: disable=protected-access
  tags = {v.tag for path in (tmp_path / "train").glob("events.out.tfevents.*")
          for e in tf.compat.v1.train.summary_iterator(str(path)) for v in e.summary.value}
  assert {"epoch_loss", "epoch_learning_rate"} <= tags and not any(t.startswith("batch_") for t in tags), tags
