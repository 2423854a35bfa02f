"""Whisper speech recognition in process: a converted model loaded, its prompt, and greedy decoding with a KV cache.

Decoding follows CTranslate2's Whisper generate (src/models/whisper.cc) with beam_size=1, so that the converted model
and ctranslate2 on the same model.bin give the same tokens: the prompt is <|startoftranscript|><|lang|><|task|>
<|notimestamps|> (<|startoftranscript|><|notimestamps|> for an English-only model), the config's `suppress_ids` are
never chosen, `suppress_ids_begin` (the blank and <|endoftext|>) not as the first token, decoding stops at
<|endoftext|>, and at most min(max_decoder_sequence_length / 2, max_decoder_sequence_length - prompt + 1) tokens
are generated.
"""

import dataclasses
import json
from typing import Dict, List, Optional, Sequence

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from tfft.data import audio
from tfft.errors import UserError
from tfft.model import whisper_backbones

# OpenAI's rule (whisper/model.py is_multilingual): English-only models have 51,864 tokens, multilingual 51,865+.
MULTILINGUAL_VOCABULARY = 51865


@dataclasses.dataclass(frozen=True)
class Whisper:
  """A converted Whisper model with what decoding needs."""
  backbone: "keras_hub.models.WhisperBackbone"
  tokenizer: "keras_hub.models.WhisperTokenizer"
  audio_converter: "keras_hub.layers.WhisperAudioConverter"
  suppress_ids: Sequence[int]
  suppress_ids_begin: Sequence[int]

  @property
  def multilingual(self) -> bool:
    return self.backbone.vocabulary_size >= MULTILINGUAL_VOCABULARY

  @property
  def special(self) -> Dict[str, int]:
    return dict(zip(self.tokenizer.special_tokens, self.tokenizer.special_token_ids))


def load_whisper(value: str) -> Whisper:
  """The model a --backbone value names (whisper-tiny-en, whisper-base, ct2:DIR), converted on first use.

  Raises:
    UserError: as whisper_backbones.ensure_preset.
  """
  preset = whisper_backbones.ensure_preset(value)
  config = json.loads((preset / whisper_backbones.CT2_CONFIG).read_text())
  return Whisper(
      backbone=keras_hub.models.WhisperBackbone.from_preset(str(preset)),
      tokenizer=keras_hub.models.WhisperTokenizer.from_preset(str(preset)),
      audio_converter=keras_hub.layers.WhisperAudioConverter.from_preset(str(preset)),
      suppress_ids=tuple(config.get("suppress_ids") or ()),
      suppress_ids_begin=tuple(config.get("suppress_ids_begin") or ()))


def prompt_ids(model: Whisper, *, language: Optional[str] = "en", task: str = "transcribe") -> List[int]:
  """The decoder prompt: <|startoftranscript|><|lang|><|task|><|notimestamps|>, or sot + notimestamps for .en.

  Raises:
    UserError: a language or task the model has no token for.
  """
  special = model.special
  if not model.multilingual:
    return [special["<|startoftranscript|>"], special["<|notimestamps|>"]]
  tokens = ["<|startoftranscript|>", f"<|{language}|>", f"<|{task}|>", "<|notimestamps|>"]
  vocabulary = {**special, **(model.tokenizer.language_tokens or {})}
  for token in tokens:
    if token not in vocabulary:
      raise UserError(f"the model has no {token} token; languages: "
                      f"{', '.join(sorted(t.strip('<|>') for t in model.tokenizer.language_tokens or {}))}")
  return [vocabulary[t] for t in tokens]


class GreedyDecoder:
  """Greedy decoding of a WhisperBackbone: the encoder once, the prompt in one pass, then one token a step.

  The decoder layers run on keras-hub's caches (self-attention keys/values of every position so far, and the
  cross-attention keys/values of the encoder output, computed once in the prompt pass).
  """

  def __init__(self, model: Whisper):
    backbone = model.backbone
    self.model = model
    self.eot = model.special["<|endoftext|>"]
    self.max_length = backbone.max_decoder_sequence_length
    heads = backbone.num_heads
    self._head_dim = backbone.hidden_dim // heads
    self._heads = heads
    vocabulary = backbone.vocabulary_size
    suppress = np.zeros(vocabulary, np.float32)
    suppress[[i for i in model.suppress_ids if 0 <= i < vocabulary]] = -np.inf
    begin = suppress.copy()
    begin[[i for i in model.suppress_ids_begin if 0 <= i < vocabulary]] = -np.inf
    self._suppress, self._suppress_begin = tf.constant(suppress), tf.constant(begin)
    # The backbone's encoder half, as its own functional model (the encoder output needs no decoder input).
    self._encoder = keras.Model(backbone.input["encoder_features"], backbone.output["encoder_sequence_output"])
    self._encode = tf.function(self._encode_fn, reduce_retracing=True)
    # Traced, keras-hub's converter runs its TensorFlow path (tf.signal.stft), the one tf.data and an export run;
    # called eagerly it would take its NumPy twin instead.
    self._log_mel = tf.function(model.audio_converter, reduce_retracing=True)
    self._prefill = tf.function(self._prefill_fn, reduce_retracing=True)
    self._step = tf.function(self._step_fn, reduce_retracing=True)

  def _encode_fn(self, feats):
    return self._encoder(feats, training=False)

  def _decoder(self, tokens, index, encoded, self_caches, cross_caches, cross_index):
    b = self.model.backbone
    x = b.decoder_embeddings(tokens, start_index=index)
    new_self, new_cross = [], []
    for layer, self_cache, cross_cache in zip(b.decoder_transformer_layers, self_caches, cross_caches):
      x, self_cache, cross_cache = layer(
          decoder_sequence=x, encoder_sequence=encoded, self_attention_cache=self_cache,
          self_attention_cache_update_index=index, cross_attention_cache=cross_cache,
          cross_attention_cache_update_index=cross_index, training=False)
      new_self.append(self_cache)
      new_cross.append(cross_cache)
    x = b.decoder_layer_norm(x[:, -1:, :])
    return b.token_embedding(x, reverse=True)[:, 0, :], new_self, new_cross

  def _prefill_fn(self, prompt, encoded):
    batch = tf.shape(prompt)[0]
    shape = [batch, 2, self.max_length, self._heads, self._head_dim]
    self_caches = [tf.zeros(shape) for _ in self.model.backbone.decoder_transformer_layers]
    cross_shape = [batch, 2, tf.shape(encoded)[1], self._heads, self._head_dim]
    cross_caches = [tf.zeros(cross_shape) for _ in self.model.backbone.decoder_transformer_layers]
    logits, self_caches, cross_caches = self._decoder(prompt, 0, encoded, self_caches, cross_caches, 0)
    return logits + self._suppress_begin, self_caches, cross_caches

  def _step_fn(self, token, index, encoded, self_caches, cross_caches):
    logits, self_caches, _ = self._decoder(token[:, None], index, encoded, self_caches, cross_caches, None)
    return logits + self._suppress, self_caches

  def features(self, waves: Sequence[np.ndarray]) -> np.ndarray:
    """Log-mel features (batch, 3000, mels) of 16 kHz float32 waves, each padded with zeros or cut to 30 s."""
    n = self.model.audio_converter.num_samples
    batch = np.zeros((len(waves), n), np.float32)
    for i, wave in enumerate(waves):
      batch[i, :min(len(wave), n)] = wave[:n]
    return self._log_mel(tf.constant(batch)).numpy()

  def encode(self, feats: np.ndarray) -> np.ndarray:
    """The encoder output (batch, frames / 2, hidden) of log-mel features (batch, frames, mels)."""
    return self._encode(tf.constant(feats, tf.float32))

  def decode(self, feats: np.ndarray, prompt: Sequence[int], *, max_new_tokens: Optional[int] = None
             ) -> List[List[int]]:
    """Greedy token ids after the prompt, without <|endoftext|>, for each row of features.

    Args:
      feats: log-mel features (batch, 3000, mels).
      prompt: the decoder prompt's ids, the same for every row.
      max_new_tokens: at most this many tokens (default: CTranslate2's limit, see the module's docstring).

    Returns:
      One list of ids per row.
    """
    limit = min(self.max_length // 2, self.max_length - len(prompt) + 1)
    limit = limit if max_new_tokens is None else min(limit, max_new_tokens)
    encoded = self._encode(tf.constant(feats, tf.float32))
    batch = encoded.shape[0]
    prompt_t = tf.constant([list(prompt)] * batch, tf.int32)
    logits, self_caches, cross_caches = self._prefill(prompt_t, encoded)
    out = [[] for _ in range(batch)]
    done = np.zeros(batch, bool)
    for step in range(limit):
      token = np.argmax(logits.numpy(), axis=-1).astype(np.int32)
      for i in range(batch):
        if not done[i]:
          if token[i] == self.eot:
            done[i] = True
          else:
            out[i].append(int(token[i]))
      if done.all() or step == limit - 1:
        break
      logits, self_caches = self._step(tf.constant(token), tf.constant(len(prompt) + step, tf.int32), encoded,
                                       self_caches, cross_caches)
    return out


def text(model: Whisper, ids: Sequence[int]) -> str:
  """The transcript of generated ids: special and timestamp tokens dropped, the leading space stripped."""
  eot = model.special["<|endoftext|>"]
  words = [i for i in ids if i < eot]
  if not words:
    return ""
  value = np.asarray(model.tokenizer.detokenize(np.array(words, np.int32))).item()
  return (value.decode("utf-8") if isinstance(value, bytes) else str(value)).strip()


def transcribe(model: Whisper, paths: Sequence[str], *, language: Optional[str] = "en",
               decoder: Optional[GreedyDecoder] = None) -> List[str]:
  """Transcripts of WAV files (any rate, mono or stereo; each cut to its first 30 s), greedily decoded.

  Raises:
    UserError: a file that is not a WAV, or is empty or silent.
  """
  decoder = decoder or GreedyDecoder(model)
  prompt = prompt_ids(model, language=language)
  out = []
  for path in paths:
    ids = decoder.decode(decoder.features([audio.load_wav(path)]), prompt)[0]
    out.append(text(model, ids))
  return out
