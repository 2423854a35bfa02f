"""Builds a keras-hub LlamaBackbone and its byte-level BPE tokenizer from a Llama-architecture GGUF file."""

from typing import Any, Dict, Optional

import numpy as np

from tfft.errors import UserError
from tfft.model.gguf import DEQUANTIZABLE, PRE_TOKENIZERS, GGUFFile

ARCHITECTURES = ("llama",)
TOKENIZER_MODELS = ("gpt2",)
# tokenizer.ggml.token_type values (llama.cpp's TokenType) of tokens that must never be split or merged.
_CONTROL, _USER_DEFINED = 3, 4


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """Undoes the row permutation llama.cpp's converter applies to a Q or K projection.

  keras-hub's RoPE, like Hugging Face's, rotates element i of a head with element i + head_dim/2. llama.cpp rotates
  neighbours (2i, 2i+1), so convert_hf_to_gguf.py's `permute` moves HF row h*hd + j*hd/2 + i of each head h to GGUF
  row h*hd + 2i + j (j in {0, 1}). This is its inverse. A model whose Q and K rows are left in GGUF order still loads
  and runs, but attends wrongly.

  Args:
    w: a (n_head * head_dim, ...) array in GGUF row order.
    n_head: the projection's heads: query heads for Q, key/value heads for K.

  Returns:
    The same array in HF row order.
  """
  head_dim = w.shape[0] // n_head
  return w.reshape(n_head, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _need(gguf: GGUFFile, key: str) -> Any:
  if key not in gguf.metadata:
    raise UserError(f"{gguf.path}: metadata key {key!r} is missing; is this a complete Llama GGUF file?")
  return gguf.metadata[key]


def _int(gguf: GGUFFile, key: str, default: Optional[int] = None) -> int:
  value = _need(gguf, key) if default is None else gguf.metadata.get(key, default)
  if not isinstance(value, int) or isinstance(value, bool):
    # Some converters write per-layer head counts as an array; LlamaBackbone has one count for all layers.
    raise UserError(f"{gguf.path}: {key} is {value!r}; tfft maps only one integer for all layers")
  return value


def llama_config(gguf: GGUFFile) -> Dict[str, Any]:
  """The LlamaBackbone constructor arguments a GGUF file's metadata describes.

  Args:
    gguf: a file from `load_gguf`.

  Returns:
    A dict of LlamaBackbone keyword arguments; `tie_word_embeddings` is True when the file has no `output.weight`.

  Raises:
    UserError: an architecture other than llama, missing keys, or a feature LlamaBackbone lacks (RoPE scaling,
      partial rotary dims, a head size other than hidden/heads, mixture of experts).
  """
  arch = gguf.metadata.get("general.architecture")
  if arch not in ARCHITECTURES:
    raise UserError(f"{gguf.path}: general.architecture is {arch!r}; tfft maps only {', '.join(ARCHITECTURES)} "
                    "GGUF files to keras-hub")
  hidden = _int(gguf, "llama.embedding_length")
  heads = _int(gguf, "llama.attention.head_count")
  if hidden % heads:
    raise UserError(f"{gguf.path}: llama.embedding_length {hidden} is not a multiple of head_count {heads}")
  head_dim = hidden // heads
  for key in ("llama.rope.dimension_count", "llama.attention.key_length", "llama.attention.value_length"):
    if _int(gguf, key, head_dim) != head_dim:
      raise UserError(f"{gguf.path}: {key} is {gguf.metadata[key]}, but keras-hub's LlamaBackbone needs "
                      f"embedding_length / head_count = {head_dim}")
  scaling = gguf.metadata.get("llama.rope.scaling.type", "none")
  if scaling != "none" or "rope_freqs.weight" in gguf.tensors:
    what = f"llama.rope.scaling.type {scaling!r}" if scaling != "none" else "a rope_freqs.weight tensor (Llama 3.1)"
    raise UserError(f"{gguf.path}: has {what}; tfft does not map RoPE scaling to keras-hub yet")
  if _int(gguf, "llama.expert_count", 0):
    raise UserError(f"{gguf.path}: a mixture-of-experts Llama ({gguf.metadata['llama.expert_count']} experts); "
                    "LlamaBackbone has dense feed-forward layers only")
  return dict(
      vocabulary_size=len(_need(gguf, "tokenizer.ggml.tokens")),
      num_layers=_int(gguf, "llama.block_count"),
      num_query_heads=heads,
      hidden_dim=hidden,
      intermediate_dim=_int(gguf, "llama.feed_forward_length"),
      num_key_value_heads=_int(gguf, "llama.attention.head_count_kv", heads),
      rope_max_wavelength=float(gguf.metadata.get("llama.rope.freq_base", 10000.0)),
      layer_norm_epsilon=float(_need(gguf, "llama.attention.layer_norm_rms_epsilon")),
      tie_word_embeddings="output.weight" not in gguf.tensors,
  )


def build_llama_backbone(gguf: GGUFFile, *, dtype: str = "float32"):
  """Builds a keras_hub.models.LlamaBackbone holding a GGUF file's dequantised weights.

  Args:
    gguf: a file from `load_gguf` whose architecture is llama.
    dtype: the backbone's dtype policy.

  Returns:
    A GGUFLlamaBackbone (a LlamaBackbone whose saved config keeps tie_word_embeddings). Logits are
    `backbone.token_embedding(hidden, reverse=True)`, which uses `output.weight`, or the
    token embedding itself when the file ties them.

  Raises:
    UserError: as `llama_config`, or a tensor that is missing, of a type that cannot be dequantised, or of a shape
      the config does not expect.
  """

  config = llama_config(gguf)
  from tfft.model import gguf_classes  # pylint: disable=g-import-not-at-top  (deferred: keras)
  backbone = gguf_classes.GGUFLlamaBackbone(**config, dtype=dtype)
  hidden, heads, kv_heads = config["hidden_dim"], config["num_query_heads"], config["num_key_value_heads"]
  head_dim = hidden // heads

  def put(variable, name, transform=lambda w: w):
    w = transform(gguf.read_tensor(name))
    if tuple(w.shape) != tuple(variable.shape):
      raise UserError(f"{gguf.path}: tensor {name!r} gives shape {tuple(w.shape)}, but the config in its metadata "
                      f"needs {tuple(variable.shape)}")
    variable.assign(w)

  embedding = backbone.token_embedding
  put(embedding.embeddings, "token_embd.weight")
  if not config["tie_word_embeddings"]:
    put(embedding.reverse_embeddings, "output.weight", np.transpose)
  # The private attribute names are the ones keras-hub's own Hugging Face converter (convert_llama3.py) writes to.
  for i, layer in enumerate(backbone.transformer_layers):
    attention = layer._self_attention_layer
    put(layer._self_attention_layernorm.scale, f"blk.{i}.attn_norm.weight")
    # A GGUF (out, in) matrix is a keras (in, out) kernel; EinsumDense splits out into (heads, head_dim).
    put(attention._query_dense.kernel, f"blk.{i}.attn_q.weight",
        lambda w: unpermute_qk(w, heads).T.reshape(hidden, heads, head_dim))
    put(attention._key_dense.kernel, f"blk.{i}.attn_k.weight",
        lambda w: unpermute_qk(w, kv_heads).T.reshape(hidden, kv_heads, head_dim))
    put(attention._value_dense.kernel, f"blk.{i}.attn_v.weight", lambda w: w.T.reshape(hidden, kv_heads, head_dim))
    put(attention._output_dense.kernel, f"blk.{i}.attn_output.weight", lambda w: w.T.reshape(heads, head_dim, hidden))
    put(layer._feedforward_layernorm.scale, f"blk.{i}.ffn_norm.weight")
    put(layer._feedforward_gate_dense.kernel, f"blk.{i}.ffn_gate.weight", np.transpose)
    put(layer._feedforward_intermediate_dense.kernel, f"blk.{i}.ffn_up.weight", np.transpose)
    put(layer._feedforward_output_dense.kernel, f"blk.{i}.ffn_down.weight", np.transpose)
  put(backbone.layer_norm.scale, "output_norm.weight")
  return backbone


def build_tokenizer(gguf: GGUFFile):
  """Builds a keras-hub byte-level BPE tokenizer from the file's tokenizer.ggml.tokens and merges.

  Control and user-defined tokens (e.g. <|im_start|>) are unsplittable, so a chat template's markers stay one token.
  The text is pre-split as llama.cpp's pre-tokenizer `tokenizer.ggml.pre` says (see gguf_classes.PRE_TOKENIZERS).
  The chat template, bos/eos/pad tokens and add_bos travel in the tokenizer's config, so a saved preset keeps them.

  Args:
    gguf: a file from `load_gguf`.

  Returns:
    A gguf_classes.GGUFBytePairTokenizer.

  Raises:
    UserError: as `check_tokenizer`.
  """

  check_tokenizer(gguf)
  tokens = gguf.metadata["tokenizer.ggml.tokens"]
  types = gguf.metadata.get("tokenizer.ggml.token_type", np.ones(len(tokens), np.int32))
  special = [t for t, kind in zip(tokens, types) if kind in (_CONTROL, _USER_DEFINED)]
  ids = {key: gguf.metadata.get(f"tokenizer.ggml.{key}_token_id") for key in ("bos", "eos", "padding")}
  # A file without a padding id pads with eos, as llama.cpp's server and Hugging Face's loader do.
  ids["padding"] = ids["eos"] if ids["padding"] is None else ids["padding"]
  from tfft.model import gguf_classes  # pylint: disable=g-import-not-at-top  (deferred: keras, as above)
  return gguf_classes.GGUFBytePairTokenizer(
      vocabulary={token: i for i, token in enumerate(tokens)}, merges=list(gguf.metadata["tokenizer.ggml.merges"]),
      unsplittable_tokens=special, bos_token=tokens[ids["bos"]], eos_token=tokens[ids["eos"]],
      pad_token=tokens[ids["padding"]], pre_tokenizer=gguf.metadata.get("tokenizer.ggml.pre", "gpt2"),
      chat_template=gguf.metadata.get("tokenizer.chat_template"),
      add_bos=bool(gguf.metadata.get("tokenizer.ggml.add_bos_token", False)))


def check_tokenizer(gguf: GGUFFile):
  """Checks, from metadata only, that `build_tokenizer` can rebuild the file's tokenizer.

  Raises:
    UserError: tokenizer.ggml.model is not 'gpt2' (e.g. a SentencePiece 'llama' vocabulary), the pre-tokenizer is
      one tfft does not reproduce, or tokens, merges, or the bos/eos ids are missing or out of range.
  """
  model = gguf.metadata.get("tokenizer.ggml.model")
  if model not in TOKENIZER_MODELS:
    raise UserError(f"{gguf.path}: tokenizer.ggml.model is {model!r}; tfft builds only byte-level BPE "
                    f"({', '.join(TOKENIZER_MODELS)}) tokenizers from GGUF")
  pre = gguf.metadata.get("tokenizer.ggml.pre", "gpt2")
  if pre not in PRE_TOKENIZERS:
    raise UserError(f"{gguf.path}: tokenizer.ggml.pre is {pre!r}; tfft reproduces llama.cpp's "
                    f"{', '.join(PRE_TOKENIZERS)} pre-tokenizers only")
  tokens = _need(gguf, "tokenizer.ggml.tokens")
  _need(gguf, "tokenizer.ggml.merges")
  for key in ("bos", "eos"):
    token_id = _int(gguf, f"tokenizer.ggml.{key}_token_id")
    if not 0 <= token_id < len(tokens):
      raise UserError(f"{gguf.path}: tokenizer.ggml.{key}_token_id is {token_id}, outside the {len(tokens)} tokens")


def check_supported(gguf: GGUFFile):
  """Checks, without dequantising anything, that the file converts: architecture, config, tensor types, tokenizer.

  Raises:
    UserError: one line naming the architecture, the metadata value, the tensor and its GGML type, or the
      tokenizer setting that tfft does not support.
  """
  llama_config(gguf)
  for info in gguf.tensors.values():
    if info.type_name not in DEQUANTIZABLE:
      raise UserError(f"{gguf.path}: tensor {info.name!r} has GGML type {info.type_name}, which tfft cannot "
                      f"dequantise (it reads {', '.join(DEQUANTIZABLE)}); use a file quantised to one of those")
  check_tokenizer(gguf)
