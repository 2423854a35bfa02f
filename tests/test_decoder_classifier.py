"""Text classification on a decoder backbone: last-token pooling, right padding with the end token, and the train CLI
end to end on a tiny GGUF Llama the test writes, to an export that reloads in a clean process."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_tfft, tiny_flags
from test_gguf import write_tiny_llama
from tfft import config as config_lib
from tfft.errors import UserError

TEXTS = ["cat dog", "red blue green yellow", "x", "one two three four five six"]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
  """(path of a tiny Llama GGUF, KERAS_HOME holding its converted preset)."""
  tmp = tmp_path_factory.mktemp("tiny_decoder")
  path = tmp / "tiny.gguf"
  write_tiny_llama(path)
  return path, tmp / "keras_home"


@pytest.fixture(scope="module")
def classifier(tiny_gguf):
  from tfft.model import heads, text_backbones

  path, home = tiny_gguf
  with pytest.MonkeyPatch.context() as env:
    env.setenv("KERAS_HOME", str(home))
    spec = text_backbones.resolve(f"gguf:{path}")
    backbone = text_backbones.load_backbone(spec)
    preprocessor = text_backbones.load_preprocessor(spec, 32)
  return backbone, preprocessor, heads.build_text_classifier(backbone, num_classes=3, pooling=spec.default_pooling)


def test_decoder_packing_pads_right_with_the_end_token_and_masks_by_position(classifier):
  from tfft.data import text_batches

  _, preprocessor, _ = classifier
  tokenizer = preprocessor.tokenizer
  assert tokenizer.pad_token_id == tokenizer.end_token_id  # the file has no padding token: pads are the end token
  features = text_batches.tokenize(preprocessor, TEXTS + ["seven " * 40])
  ids, mask = features["token_ids"], features["padding_mask"].astype(bool)
  lengths = mask.sum(1)
  for row, text in zip(range(len(TEXTS)), TEXTS):
    tokens = np.asarray(tokenizer(text)).tolist()
    # No start token (add_bos_token is false), the text, one end token; then pads, masked although the same id.
    assert ids[row, :lengths[row]].tolist() == tokens + [tokenizer.end_token_id]
    assert mask[row, :lengths[row]].all() and not mask[row, lengths[row]:].any()
  # A long text keeps its start and still ends in the end token.
  assert lengths[-1] == 32 and ids[-1, -1] == tokenizer.end_token_id
  assert ids[-1, :31].tolist() == np.asarray(tokenizer("seven " * 40)).tolist()[:31]


def test_last_token_pooling_reads_the_last_real_token_under_fixed_and_dynamic_padding(classifier):
  import tensorflow as tf

  from tfft.data import text_batches
  from tfft.model import heads

  backbone, preprocessor, model = classifier
  assert heads.pooling_of(model) == "last"
  features = text_batches.tokenize(preprocessor, TEXTS[:3])
  lengths = features["padding_mask"].sum(1)
  assert lengths.max() <= 24  # so dynamic padding really cuts the batch from 32 to 24 positions
  encoder, _ = heads.split_at_pooling(model)
  fixed = np.asarray(encoder(features))
  dynamic_features = text_batches.trim_to_longest({k: tf.constant(v) for k, v in features.items()}, 8)
  assert dynamic_features["token_ids"].shape[1] == 24
  np.testing.assert_allclose(np.asarray(encoder(dynamic_features)), fixed, atol=1e-5)
  for row, n in enumerate(lengths):  # each text alone, unpadded: its last hidden state is what was pooled
    alone = backbone({"token_ids": features["token_ids"][row:row + 1, :n], "padding_mask": np.ones((1, n), "int32")})
    np.testing.assert_allclose(np.asarray(alone)[0, -1], fixed[row], atol=1e-5)
  # The first token (what cls pooling reads) differs: the pooling really moved.
  assert np.abs(np.asarray(backbone(features))[:, 0] - fixed).max() > 1e-3


@pytest.mark.parametrize("backbone, pooling, expected", [
    ("smollm2-135m", "cls", "is a causal decoder"), ("minilm-l6", "last", "for decoder backbones")])
def test_pooling_that_does_not_suit_the_backbone_is_a_user_error(backbone, pooling, expected):
  from tfft.tasks.registry import validate

  config = config_lib.Config(model=config_lib.ModelConfig(backbone=backbone, pooling=pooling))
  with pytest.raises(UserError, match=f"--pooling='{pooling}': .*{expected}"):
    validate(config)


_SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops, as TF Serving links them)
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = fn(text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                  "leaked": sorted(m for m in sys.modules if m.split(".")[0] in ("tfft", "keras_hub"))}))
"""


def test_train_cli_classifies_with_a_decoder_to_a_string_in_export(tiny_gguf, tiny_textdir, tmp_path, monkeypatch):
  import keras

  from tfft.data import windows
  from tfft.model import heads, text_backbones

  path, home = tiny_gguf
  flags = tiny_flags(f"gguf:{path}", tiny_textdir, tmp_path, pooling="auto", sequence_length=24, epochs=1,
                     freeze="top_k:1", padding="dynamic", pad_to_multiple_of=8)
  monkeypatch.setenv("KERAS_HOME", str(home))  # the preset the fixtures converted
  proc = run_tfft("train", flags)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "--pooling=auto" in (tmp_path / "run" / "flags.cfg").read_text()
  card = (tmp_path / "exports" / "tiny" / "1" / "assets.extra" / "model_card.md").read_text()
  assert "the head reads the last real token" in card

  served = subprocess.run([sys.executable, "-c", _SERVE, str(tmp_path / "exports" / "tiny" / "1"), json.dumps(TEXTS)],
                          capture_output=True, text=True, timeout=300)
  assert served.returncode == 0, served.stderr[-3000:]
  served = json.loads(served.stdout.strip().splitlines()[-1])
  assert served["leaked"] == []

  spec = text_backbones.resolve(f"gguf:{path}")
  model = heads.build_text_classifier(text_backbones.load_backbone(spec), num_classes=3, pooling="last")
  model.load_weights(str(tmp_path / "run" / "checkpoints" / "after_finetune.weights.h5"))
  # The export serves softmax(logits / T), T fitted on validation (--calibrate=temperature, the default).
  temperature = json.loads((tmp_path / "run" / "metrics.json").read_text()).get("calibration", {}).get(
      "temperature", 1.0)
  expected = keras.ops.convert_to_numpy(keras.ops.softmax(
      windows.predict_logits(model, text_backbones.load_preprocessor(spec, 24), TEXTS, 1) / temperature))
  np.testing.assert_allclose(np.array(served["probabilities"]), expected, atol=1e-5)
