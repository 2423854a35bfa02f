"""The keras-hub classes a preset converted from GGUF names: the Llama backbone, its BPE tokenizer, preprocessor, task.

Keras rebuilds a saved object from the class name in its config ("tfft>GGUFLlamaBackbone"), so this module must be
imported before `from_preset` reads such a preset; tfft.model.text_backbones does that. That registration is the one
import side effect in tfft, and it is keras's mechanism, not a registry of ours.
"""

import keras
import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text

from tfft.model.gguf import PRE_TOKENIZERS




@keras.saving.register_keras_serializable(package="tfft")
class GGUFLlamaBackbone(keras_hub.models.LlamaBackbone):
  """keras-hub's LlamaBackbone, whose config keeps `tie_word_embeddings`.

  keras-hub 0.32's LlamaBackbone.get_config() drops the flag, so a tied model (no output.weight, as in SmolLM2)
  reloads untied with a random output layer. A subclass fixes every save path at once (preset, .keras, clone_model);
  editing the saved config.json would fix only the preset.
  """

  def get_config(self):
    return {**super().get_config(), "tie_word_embeddings": self.tie_word_embeddings}


@keras.saving.register_keras_serializable(package="tfft")
class GGUFBytePairTokenizer(keras_hub.tokenizers.BytePairTokenizer):
  """Byte-level BPE from a GGUF vocabulary, split the way llama.cpp's pre-tokenizer for the file splits.

  keras-hub's BytePairTokenizer splits with GPT-2's regex (in tf.data and exported graphs) or with Llama 3's (eager,
  through the `tokenizers` package). For `pre_tokenizer="smollm"` both paths here first cut the text at every digit
  and at every control token, then apply GPT-2's split to each piece, so " 1" stays "Ġ", "1" and "x  1" gives
  "x", "ĠĠ", "1" as in llama.cpp; plain GPT-2 would give "x", "Ġ", "Ġ1".

  Args:
    vocabulary: token -> id, or the path of vocabulary.json.
    merges: the merge rules, or the path of merges.txt.
    bos_token, eos_token, pad_token: the special tokens as text, from tokenizer.ggml.*_token_id.
    pre_tokenizer: a key of PRE_TOKENIZERS.
    chat_template: the Jinja chat template of the file (tokenizer.chat_template), kept with the preset.
    add_bos: whether llama.cpp prepends bos_token to a prompt (tokenizer.ggml.add_bos_token).
    **kwargs: BytePairTokenizer's, e.g. unsplittable_tokens.

  Raises:
    ValueError: an unknown pre_tokenizer, or `sequence_length` (pad in the preprocessor's packer instead).
  """

  backbone_cls = GGUFLlamaBackbone

  def __init__(self, vocabulary=None, merges=None, *, bos_token, eos_token, pad_token, pre_tokenizer="gpt2",
               chat_template=None, add_bos=False, **kwargs):
    if pre_tokenizer not in PRE_TOKENIZERS:
      raise ValueError(f"pre_tokenizer={pre_tokenizer!r}; known: {', '.join(PRE_TOKENIZERS)}")
    if kwargs.get("sequence_length"):
      # The digit split runs BPE per piece, and a fixed length would pad each piece.
      raise ValueError("GGUFBytePairTokenizer does not pad; give sequence_length to the preprocessor")
    self._add_special_token(bos_token, "start_token")
    self._add_special_token(eos_token, "end_token")
    self._add_special_token(pad_token, "pad_token")
    self.pre_tokenizer = pre_tokenizer
    self.chat_template = chat_template
    self.add_bos = add_bos
    super().__init__(vocabulary=vocabulary, merges=merges, **kwargs)

  def _split_digits(self) -> bool:
    return PRE_TOKENIZERS[self.pre_tokenizer]

  def _set_vocabulary_and_merges_tokenizers(self, vocabulary, merges):
    super()._set_vocabulary_and_merges_tokenizers(vocabulary, merges)
    from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top
    # keras-hub sets Llama 3's split here; GPT-2's regex is ByteLevel's own (use_regex=True).
    steps = [pre_tokenizers.ByteLevel(add_prefix_space=self.add_prefix_space, use_regex=True)]
    if self._split_digits():
      steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
    self._tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)

  def _tokenize_tf(self, inputs):
    # keras-hub's TF split emulates GPT-2's `\s+(?!\S)` but cuts a trailing run of spaces ("a  " -> "a", " ", " "),
    # which the digit split makes common ("x  1"). So the split here is split_like_gpt2; keras-hub's BPE merge and
    # its cache (which maps each control token to itself) do the rest, as in BytePairTokenizer._tokenize_tf.
    self._maybe_initialized_tf()
    with tf.device("cpu"):
      inputs = tf.convert_to_tensor(inputs)
      unbatched = inputs.shape.rank == 0
      if unbatched:
        inputs = tf.expand_dims(inputs, 0)
      pieces = split_like_gpt2(inputs, self.unsplittable_tokens or [], split_digits=PRE_TOKENIZERS[self.pre_tokenizer])
      flat = pieces.flat_values
      words = self.cache.lookup(flat)
      unseen = tf.equal(words, "") & tf.not_equal(flat, "")

      def merge_unseen():
        self._bpe_merge_and_update_cache_tf(tf.boolean_mask(flat, unseen))
        return self.cache.lookup(flat)

      words = tf.cond(tf.reduce_any(unseen), merge_unseen, lambda: words)
      tokens = tf.strings.split(words, sep=" ")  # (pieces, tokens): "dragon fly" -> ["dragon", "fly"]
      if self.compute_dtype != tf.string:
        tokens = self.token_to_id_map.lookup(tokens)
      out = tf.RaggedTensor.from_row_splits(tokens.flat_values, tf.gather(tokens.row_splits, pieces.row_splits))
      return tf.squeeze(out, 0) if unbatched else out

  def get_config(self):
    config = super().get_config()
    config.update(bos_token=self.start_token, eos_token=self.end_token, pad_token=self.pad_token,
                  pre_tokenizer=self.pre_tokenizer, chat_template=self.chat_template, add_bos=self.add_bos)
    return config


# Unicode White_Space, which `\s` is in Hugging Face's and llama.cpp's regexes; RE2's `\s` is ASCII only.
_SPACE = r"\t-\r\x{85}\p{Z}"
# Marks where a run of spaces must be cut, standing in for GPT-2's lookahead (RE2 has none). U+FDD0 is a Unicode
# noncharacter, so text does not contain it; if some does, it is dropped.
_CUT = "\ufdd0"
_GPT2_PIECES = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^" + _SPACE + r"\p{L}\p{N}" + _CUT + r"]+|[" + _SPACE
                + r"]+|" + _CUT)


def split_like_gpt2(inputs, special_tokens, *, split_digits: bool):
  """Splits strings as Hugging Face and llama.cpp pre-split byte-level BPE input, in TF ops that export.

  First control tokens (and, with split_digits, each digit) become pieces of their own; then GPT-2's regex
  `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` splits each piece. Its lookahead
  leaves the last space of a run before a non-space to that next piece (" b" in "a  b" -> "a", " ", " b"), and a run
  at the end of a piece whole; marking that cut first lets RE2, which has no lookahead, do the rest.

  Args:
    inputs: a 1-D tf.string tensor.
    special_tokens: strings never split.
    split_digits: whether each digit is a piece of its own first (llama.cpp's "smollm" pre-tokenizer).

  Returns:
    A (batch, pieces) tf.string RaggedTensor.
  """
  specials = [_re2_escape(t) for t in sorted(special_tokens, key=len, reverse=True)]
  first = "|".join(specials + ([r"\p{N}"] if split_digits else []))
  if first:
    segments = tf_text.regex_split(inputs, first, first)
  else:
    segments = tf.RaggedTensor.from_tensor(tf.expand_dims(inputs, 1))
  flat = tf.strings.regex_replace(segments.flat_values, _CUT, "")
  flat = tf.strings.regex_replace(flat, "([" + _SPACE + "])([^" + _SPACE + "])", _CUT + r"\1\2")
  pattern = "|".join(specials + [_GPT2_PIECES])
  pieces = tf_text.regex_split(flat, pattern, pattern)  # (segments, pieces)
  pieces = tf.RaggedTensor.from_row_splits(pieces.flat_values, tf.gather(pieces.row_splits, segments.row_splits))
  keep = tf.not_equal(pieces.flat_values, _CUT)
  return tf.ragged.boolean_mask(pieces, tf.RaggedTensor.from_row_splits(keep, pieces.row_splits))


def _re2_escape(text: str) -> str:
  """Escapes a literal for RE2, which (unlike Python's re) rejects escapes of non-ASCII letters such as \\é."""
  return "".join("\\" + c if c in r"\.^$|?*+()[]{}-" else c for c in text)


@keras.saving.register_keras_serializable(package="tfft")
class GGUFLlamaCausalLMPreprocessor(keras_hub.models.CausalLMPreprocessor):
  """keras-hub's causal-LM preprocessor (tokenize, pack, shift labels) for a GGUF Llama preset.

  Args:
    tokenizer: a GGUFBytePairTokenizer.
    sequence_length: the packed length.
    add_start_token: whether to prepend bos; default the file's tokenizer.ggml.add_bos_token (False for SmolLM2,
      whose chat template writes <|im_start|> itself), where keras-hub's default is True.
    add_end_token: whether to append eos (keras-hub's default, True: training text ends where the model stops).
    **kwargs: keras Layer arguments.
  """

  backbone_cls = GGUFLlamaBackbone
  tokenizer_cls = GGUFBytePairTokenizer

  def __init__(self, tokenizer, sequence_length=1024, add_start_token=None, add_end_token=True, **kwargs):
    add_start_token = tokenizer.add_bos if add_start_token is None else add_start_token
    super().__init__(tokenizer, sequence_length=sequence_length, add_start_token=add_start_token,
                     add_end_token=add_end_token, **kwargs)


@keras.saving.register_keras_serializable(package="tfft")
class GGUFLlamaCausalLM(keras_hub.models.LlamaCausalLM):
  """keras-hub's LlamaCausalLM (logits through the tied or separate output embedding, cached generation)."""

  backbone_cls = GGUFLlamaBackbone
  preprocessor_cls = GGUFLlamaCausalLMPreprocessor
