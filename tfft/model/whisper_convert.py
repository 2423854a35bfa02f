"""Builds keras-hub's WhisperBackbone, WhisperTokenizer and WhisperAudioConverter from a CTranslate2 Whisper model.

The mapping follows CTranslate2's Whisper converter (python/ctranslate2/converters/transformers.py WhisperLoader) in
reverse: Linear weights are stored (out, in) as in PyTorch, Conv1d weights (out, in, kernel), self-attention's q, k
and v projections fused into one `linear_0` of 3 x d rows, cross-attention's k and v into one `linear_1` of 2 x d
rows, pre-norm layers, GELU, and the output projection tied to the token embedding (an alias in the file).
"""

import json
import pathlib
from typing import Any, Dict

import keras_hub
import numpy as np

from tfft.errors import UserError
from tfft.model.ctranslate2 import CT2File

SPEC = "WhisperSpec"
# CTranslate2's common_spec.Activation.GELU: keras-hub's Whisper layers use the exact (erf) GELU.
GELU = 3
# The special tokens keras-hub's WhisperTokenizer requires by name.
REQUIRED_SPECIAL = ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|translate|>", "<|transcribe|>")


def _layers(ct2: CT2File, side: str) -> int:
  n = 0
  while ct2.has(f"{side}/layer_{n}/ffn/linear_0/weight"):
    n += 1
  return n


def whisper_config(ct2: CT2File) -> Dict[str, Any]:
  """The WhisperBackbone constructor arguments the file's tensors describe.

  Raises:
    UserError: not a WhisperSpec file, or a layout keras-hub's WhisperBackbone cannot hold (unequal encoder and
      decoder depth or heads, an activation other than GELU, post-norm, scaled embeddings, an untied output).
  """
  if ct2.spec != SPEC:
    raise UserError(f"{ct2.path}: a CTranslate2 {ct2.spec!r} model, not a Whisper one ({SPEC})")
  for name in ("encoder/conv1/weight", "encoder/position_encodings/encodings", "decoder/embeddings/weight",
               "decoder/position_encodings/encodings", "encoder/num_heads", "decoder/num_heads"):
    if not ct2.has(name):
      raise UserError(f"{ct2.path}: variable {name!r} is missing; the file is incomplete or not a Whisper model")
  layers, decoder_layers = _layers(ct2, "encoder"), _layers(ct2, "decoder")
  heads, decoder_heads = int(ct2.scalar("encoder/num_heads")), int(ct2.scalar("decoder/num_heads"))
  if layers != decoder_layers or heads != decoder_heads or not layers:
    raise UserError(f"{ct2.path}: {layers} encoder and {decoder_layers} decoder layers, {heads} and {decoder_heads} "
                    "heads; keras-hub's WhisperBackbone has one number of each for both")
  for flag, want in (("decoder/activation", GELU), ("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0)):
    if ct2.has(flag) and int(ct2.scalar(flag)) != want:
      raise UserError(f"{ct2.path}: {flag} is {ct2.scalar(flag)}, not {want} as in Whisper; tfft maps only "
                      "Whisper's own layout")
  embeddings = ct2.variables[ct2.resolve("decoder/embeddings/weight")]
  projection = ct2.resolve("decoder/projection/weight")
  if ct2.has("decoder/projection/weight") and projection != embeddings.name and not np.array_equal(
      ct2.raw("decoder/projection/weight"), ct2.raw("decoder/embeddings/weight")):
    raise UserError(f"{ct2.path}: the output projection is not tied to the token embedding, which keras-hub's "
                    "Whisper assumes")
  if ct2.has("decoder/projection/bias") and np.any(ct2.read("decoder/projection/bias")):
    raise UserError(f"{ct2.path}: the output projection has a bias, which keras-hub's Whisper lacks")
  hidden = embeddings.shape[1]
  if hidden % heads:
    raise UserError(f"{ct2.path}: width {hidden} is not a multiple of {heads} heads")
  conv1 = ct2.variables[ct2.resolve("encoder/conv1/weight")].shape  # (hidden, mels, 3)
  return dict(
      vocabulary_size=embeddings.shape[0], num_layers=layers, num_heads=heads, hidden_dim=hidden,
      intermediate_dim=ct2.variables[ct2.resolve("encoder/layer_0/ffn/linear_0/weight")].shape[0],
      num_mels=conv1[1],
      # keras-hub sizes the encoder's position table as max_encoder_sequence_length // 2 (conv2 has stride 2).
      max_encoder_sequence_length=2 * ct2.variables[ct2.resolve("encoder/position_encodings/encodings")].shape[0],
      max_decoder_sequence_length=ct2.variables[ct2.resolve("decoder/position_encodings/encodings")].shape[0])


def _dense(w: np.ndarray) -> np.ndarray:
  return w.T  # (out, in) -> keras Dense (in, out)


def _heads(w: np.ndarray, heads: int) -> np.ndarray:
  """A (heads * head_dim, in) projection as an EinsumDense kernel (in, heads, head_dim)."""
  return w.T.reshape(w.shape[1], heads, -1)


def _set_attention(ct2: CT2File, layer, prefix: str, heads: int, *, cross: bool):
  """Sets one attention layer from `prefix` (…/self_attention or …/attention)."""
  if cross:
    q, bias_q = ct2.read(f"{prefix}/linear_0/weight"), ct2.read(f"{prefix}/linear_0/bias")
    k, v = np.split(ct2.read(f"{prefix}/linear_1/weight"), 2)
    _, bias_v = np.split(ct2.read(f"{prefix}/linear_1/bias"), 2)
    out = "linear_2"
  else:
    q, k, v = np.split(ct2.read(f"{prefix}/linear_0/weight"), 3)
    bias_q, _, bias_v = np.split(ct2.read(f"{prefix}/linear_0/bias"), 3)
    out = "linear_1"
  # The key bias, a zero slice in CTranslate2's fused bias, is dropped: keras-hub's Whisper key has none, and a key
  # bias adds the same q.b to every score of a query, which the softmax cancels.
  layer._query_dense.kernel.assign(_heads(q, heads))
  layer._query_dense.bias.assign(bias_q.reshape(heads, -1))
  layer._key_dense.kernel.assign(_heads(k, heads))
  layer._value_dense.kernel.assign(_heads(v, heads))
  layer._value_dense.bias.assign(bias_v.reshape(heads, -1))
  w = ct2.read(f"{prefix}/{out}/weight")
  layer._output_dense.kernel.assign(w.T.reshape(heads, -1, w.shape[0]))
  layer._output_dense.bias.assign(ct2.read(f"{prefix}/{out}/bias"))


def _set_norm(ct2: CT2File, norm, prefix: str):
  norm.gamma.assign(ct2.read(f"{prefix}/gamma"))
  norm.beta.assign(ct2.read(f"{prefix}/beta"))


def _set_ffn(ct2: CT2File, layer, prefix: str):
  _set_norm(ct2, layer._feedforward_layer_norm, f"{prefix}/layer_norm")
  layer._feedforward_intermediate_dense.kernel.assign(_dense(ct2.read(f"{prefix}/linear_0/weight")))
  layer._feedforward_intermediate_dense.bias.assign(ct2.read(f"{prefix}/linear_0/bias"))
  layer._feedforward_output_dense.kernel.assign(_dense(ct2.read(f"{prefix}/linear_1/weight")))
  layer._feedforward_output_dense.bias.assign(ct2.read(f"{prefix}/linear_1/bias"))


def _set_conv(ct2: CT2File, conv, prefix: str):
  conv.kernel.assign(ct2.read(f"{prefix}/weight").transpose(2, 1, 0))  # (out, in, k) -> keras (k, in, out)
  conv.bias.assign(ct2.read(f"{prefix}/bias"))


def build_whisper_backbone(ct2: CT2File) -> "keras_hub.models.WhisperBackbone":
  """A float32 WhisperBackbone holding the file's weights.

  Raises:
    UserError: as whisper_config, or a variable missing from a layer.
  """
  config = whisper_config(ct2)
  heads = config["num_heads"]
  backbone = keras_hub.models.WhisperBackbone(**config, dtype="float32")
  _set_conv(ct2, backbone.encoder_conv_layer_1, "encoder/conv1")
  _set_conv(ct2, backbone.encoder_conv_layer_2, "encoder/conv2")
  backbone.encoder_position_embedding.position_embeddings.assign(ct2.read("encoder/position_encodings/encodings"))
  for i, layer in enumerate(backbone.encoder_transformer_layers):
    prefix = f"encoder/layer_{i}"
    _set_norm(ct2, layer._self_attention_layer_norm, f"{prefix}/self_attention/layer_norm")
    _set_attention(ct2, layer._self_attention_layer, f"{prefix}/self_attention", heads, cross=False)
    _set_ffn(ct2, layer, f"{prefix}/ffn")
  _set_norm(ct2, backbone.encoder_layer_norm, "encoder/layer_norm")
  embedding = backbone.decoder_embeddings
  embedding.token_embedding.embeddings.assign(ct2.read("decoder/embeddings/weight"))
  embedding.position_embedding.position_embeddings.assign(ct2.read("decoder/position_encodings/encodings"))
  for i, layer in enumerate(backbone.decoder_transformer_layers):
    prefix = f"decoder/layer_{i}"
    _set_norm(ct2, layer._self_attention_layer_norm, f"{prefix}/self_attention/layer_norm")
    _set_attention(ct2, layer._self_attention_layer, f"{prefix}/self_attention", heads, cross=False)
    _set_norm(ct2, layer._cross_attention_layer_norm, f"{prefix}/attention/layer_norm")
    _set_attention(ct2, layer._cross_attention_layer, f"{prefix}/attention", heads, cross=True)
    _set_ffn(ct2, layer, f"{prefix}/ffn")
  _set_norm(ct2, backbone.decoder_layer_norm, "decoder/layer_norm")
  return backbone


def special_tokens(tokenizer_json: Dict[str, Any]) -> Dict[str, int]:
  """The tokenizer.json's added tokens (<|endoftext|>, <|startoftranscript|>, languages, tasks, …): token -> id."""
  return {t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])}


def build_tokenizer(path: pathlib.Path, config: Dict[str, Any]) -> "keras_hub.models.WhisperTokenizer":
  """keras-hub's WhisperTokenizer from a Hugging Face tokenizer.json (byte-level BPE vocabulary and merges).

  Args:
    path: the tokenizer.json shipped beside model.bin.
    config: the model's config.json; its `lang_ids` name the language tokens of a multilingual model.

  Raises:
    UserError: the file is missing, not JSON, not a BPE tokenizer, or lacks a special token Whisper needs.
  """
  try:
    data = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: cannot read the Whisper tokenizer ({e}); re-install the model") from None
  model = data.get("model") or {}
  if model.get("type") != "BPE" or "vocab" not in model or "merges" not in model:
    raise UserError(f"{path}: not a byte-level BPE tokenizer.json (model.type {model.get('type')!r})")
  special = special_tokens(data)
  missing = [t for t in REQUIRED_SPECIAL if t not in special]
  if missing:
    raise UserError(f"{path}: special tokens {', '.join(missing)} are missing; is this a Whisper tokenizer?")
  merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
  by_id = {i: t for t, i in special.items()}
  languages = {by_id[i]: i for i in config.get("lang_ids", []) if i in by_id}
  return keras_hub.models.WhisperTokenizer(vocabulary=dict(model["vocab"]), merges=merges, special_tokens=special,
                                           language_tokens=languages or None)


def build_audio_converter(num_mels: int) -> "keras_hub.layers.WhisperAudioConverter":
  """keras-hub's log-mel front end: 16 kHz, 400-sample FFT, hop 160, padded or cut to 30 s."""
  return keras_hub.layers.WhisperAudioConverter(num_mels=num_mels)


def logits(backbone, decoder_output):
  """Next-token logits from decoder states: the tied token embedding, reversed."""
  return backbone.token_embedding(decoder_output, reverse=True)

