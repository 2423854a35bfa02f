"""Long texts as token windows: the windows cover the text in order, and the logits are their mean."""

import numpy as np
import pytest
import tensorflow as tf

from tfft.data import text_batches, windows
from tfft.model import heads
from tfft.model import text_backbones

TEXTS = ["cat dog horse one two three four five six red", "", "blue"]


@pytest.fixture(scope="module")
def tiny(tiny_bert_preset):
  spec = text_backbones.resolve(str(tiny_bert_preset))
  return spec, text_backbones.load_preprocessor(spec, 8)  # 6 tokens of room per window


def _features(preprocessor, texts, max_windows):
  return tf.function(lambda t: windows.window_features(preprocessor, t, max_windows))(tf.constant(texts))


def test_windows_cut_each_text_in_order(tiny):
  _, pre = tiny
  features, doc = _features(pre, TEXTS, 3)
  assert doc.numpy().tolist() == [0, 0, 1, 2]  # 10 tokens -> 6 + 4; an empty text still gets one window
  mask = features["padding_mask"].numpy()
  assert mask.sum(1).tolist() == [8, 6, 2, 3]  # [CLS] + tokens + [SEP]
  ids = features["token_ids"].numpy()
  whole = pre(tf.constant(TEXTS[:1]))  # an 8-token preprocessor truncates to the first window
  np.testing.assert_array_equal(ids[0], whole["token_ids"].numpy()[0])
  assert ids[1][0] == ids[0][0] and ids[1][5] == ids[0][7]  # the second window is packed as its own sequence


def test_one_window_is_exactly_the_preprocessor(tiny):
  _, pre = tiny
  features, doc = _features(pre, TEXTS, 1)
  reference = pre(tf.constant(TEXTS))
  assert doc.numpy().tolist() == [0, 1, 2]
  for name in reference:
    np.testing.assert_array_equal(features[name].numpy(), reference[name].numpy())


def test_features_carry_an_int32_mask_as_the_backbone_declares(tiny):
  # A bool mask fails under MirroredStrategy (test_distribute fine-tunes the whole backbone on these features).
  _, pre = tiny
  assert _features(pre, TEXTS, 2)[0]["padding_mask"].dtype == tf.int32
  assert text_batches.tokenize(pre, TEXTS)["padding_mask"].dtype == np.int32


def test_length_order_counts_utf8_bytes_and_sums_pairs():
  assert windows.length_order(["ééé", b"abcd", "ab", "abcde"]).tolist() == [2, 1, 3, 0]  # é is 2 bytes
  assert windows.length_order([(b"abc", b"d"), ("a", "b"), ["", "abcdef"], ("ab", "c")]).tolist() == [1, 3, 0, 2]


def test_max_windows_caps_the_text(tiny):
  _, pre = tiny
  _, doc = _features(pre, TEXTS, 1)
  assert len(doc.numpy()) == 3
  _, doc = _features(pre, [" ".join(["cat"] * 40)], 4)
  assert doc.numpy().tolist() == [0, 0, 0, 0]


def test_windowed_logits_average_the_windows(tiny):
  spec, pre = tiny
  model = heads.build_text_classifier(text_backbones.load_backbone(spec), num_classes=3, pooling="mean")
  logits = windows.predict_logits(model, pre, TEXTS, 3, batch_size=2)
  features, doc = _features(pre, TEXTS, 3)
  per_window = model(features, training=False).numpy()
  doc = doc.numpy()
  expected = np.stack([per_window[doc == i].mean(0) for i in range(len(TEXTS))])
  np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_window_arrays_batch_like_one_call(tiny):
  _, pre = tiny
  features, doc = _features(pre, TEXTS, 3)
  arrays, doc_arrays = windows.window_arrays(pre, TEXTS, 3, batch_size=2)  # the second batch's indices are offset
  np.testing.assert_array_equal(doc_arrays, doc.numpy())
  for name, value in features.items():
    np.testing.assert_array_equal(arrays[name], value.numpy())


def test_train_windows_make_each_window_an_example_of_its_texts_split(tiny_bert_preset):
  from tfft import config as config_lib
  from tfft.tasks import registry as tasks
  from tfft.data import text as text_data

  config = config_lib.Config(model=config_lib.ModelConfig(backbone=str(tiny_bert_preset), sequence_length=8,
                                                          train_windows=2, pooling="mean"),
                             train=config_lib.TrainConfig(batch_size=2))
  task = tasks.build_task(config)
  texts = TEXTS + ["red blue", "one two three four five six seven eight nine"]
  examples = text_data.Examples(texts, ["a", "b", "c", "a", "b"], [str(i) for i in range(5)], "test")
  labels = np.array([0, 1, 2, 0, 1])
  split = {"train": np.array([0, 3]), "val": np.array([4, 1]), "test": np.array([2])}
  prepared = task.prepare(examples, task.encode(examples), split)
  assert prepared.labels.tolist() == labels.tolist()
  unit_labels, unit_split = prepared.unit_labels, prepared.unit_split
  # Windows (6 tokens each, at most 2 per text): text 0 -> 2, 1 -> 1, 2 -> 1, 3 -> 1, 4 -> 2 (the third is cut).
  assert unit_split["train"].tolist() == [0, 1, 4] and unit_split["val"].tolist() == [2, 5, 6]
  assert unit_split["test"].tolist() == [3]
  assert unit_labels.tolist() == [0, 0, 1, 2, 0, 1, 1]
  batches = list(prepared.make("val"))
  assert [int(y.shape[0]) for _, y in batches] == [2, 1]
  assert np.concatenate([y.numpy().argmax(1) for _, y in batches]).tolist() == [1, 1, 1]
  assert prepared.steps_per_epoch == 2


def test_train_on_windows_end_to_end_with_cached_lower_blocks(tiny_bert_preset, tmp_path):
  """Train on every window through the feature cache (head on pooled vectors, top_k:1 on cached states)."""
  import json

  from conftest import make_texts, run_tfft, tiny_flags

  root = tmp_path / "long"
  for i, (text, label) in enumerate(make_texts(8)):
    (root / label).mkdir(parents=True, exist_ok=True)
    (root / label / f"{i:03d}.txt").write_text(" ".join([text] * 3))  # 18 words -> 2 windows of 14 at length 16
  args = tiny_flags(tiny_bert_preset, root, tmp_path, train_windows=2, eval_windows=2, freeze="top_k:1",
                    epochs=1, cache_features=True)
  proc = run_tfft("train", args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  import csv  # pylint: disable=g-import-not-at-top
  with (tmp_path / "run" / "split_manifest.csv").open(newline="") as f:
    manifest = [row["split"] for row in csv.DictReader(f)]
  texts = {name: manifest.count(name) for name in ("train", "val", "test")}
  windows_per_split = {name: 2 * n for name, n in texts.items()}  # every text has 2 windows
  assert f"--train_windows=2: {windows_per_split} windows per split" in proc.stderr
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["num_examples"] == texts["test"]  # scored per text (its windows averaged), not per window
  history = (tmp_path / "run" / "history_finetune.csv").read_text().splitlines()
  assert len(history) == 2, history  # header + one epoch
