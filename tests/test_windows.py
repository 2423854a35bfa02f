"""Long texts as token windows: the windows cover the text in order, and the logits are their mean."""

import numpy as np
import pytest
import tensorflow as tf

from tfft import modeling, windows
from tfft.backbones import text as text_backbones

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


def test_max_windows_caps_the_text(tiny):
  _, pre = tiny
  _, doc = _features(pre, TEXTS, 1)
  assert len(doc.numpy()) == 3
  _, doc = _features(pre, [" ".join(["cat"] * 40)], 4)
  assert doc.numpy().tolist() == [0, 0, 0, 0]


def test_windowed_logits_average_the_windows(tiny):
  spec, pre = tiny
  model = modeling.build_text_classifier(text_backbones.load_backbone(spec), num_classes=3, pooling="mean")
  logits = windows.predict_logits(model, pre, TEXTS, 3, batch_size=2)
  features, doc = _features(pre, TEXTS, 3)
  per_window = model(features, training=False).numpy()
  doc = doc.numpy()
  expected = np.stack([per_window[doc == i].mean(0) for i in range(len(TEXTS))])
  np.testing.assert_allclose(logits, expected, atol=1e-5)
