"""Greedy generation in TF ops, the same function in process and in the exported SavedModel: prompt strings in,
the chat template applied, tokenized, decoded with a key/value cache, generated text and token count out."""

import pathlib
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf

from tfft.model.chat import ChatFormat
from tfft.serving import savedmodel
from tfft.tasks.generate.data import prompt_ids


def generate_fn(causal_lm, tokenizer, chat: ChatFormat, *, sequence_length: int, max_new_tokens: int) -> Callable:
  """Returns generate(prompts [N] tf.string) -> {"text": [N] tf.string, "token_count": [N] int32}.

  Each prompt becomes `chat.prefix + prompt + chat.suffix`, its own tokens cut at the end to leave
  sequence_length - max_new_tokens tokens for the templated prompt. keras-hub's CausalLM.generate_step then
  decodes greedily with its key/value cache (one forward pass over the prompts, then one position per step) until
  every row has written the end token or max_new_tokens more than the longest prompt. Each row keeps at most
  max_new_tokens new tokens, up to (not including) its end token.
  """
  import keras_hub  # pylint: disable=g-import-not-at-top
  if not isinstance(getattr(causal_lm, "sampler", None), keras_hub.samplers.GreedySampler):
    raise ValueError("generate_fn decodes greedily: build the model with tfft.model.causal_lm.build_causal_lm")
  end = tokenizer.end_token_id
  # The positions to generate into start as a filler other than the end token: keras-hub's sampler takes an end
  # token anywhere outside the prompt's mask as "this row is done", and many files pad with the end token.
  filler = 0 if end != 0 else 1

  def generate(prompts) -> Dict[str, tf.Tensor]:
    ids = prompt_ids(tokenizer, chat, prompts, sequence_length - max_new_tokens)
    lengths = tf.cast(ids.row_lengths(), tf.int32)
    width = tf.reduce_max(lengths) + max_new_tokens
    token_ids = ids.to_tensor(default_value=filler)
    token_ids = tf.pad(token_ids, [[0, 0], [0, width - tf.shape(token_ids)[1]]], constant_values=filler)
    padding_mask = tf.sequence_mask(lengths, width)
    out = causal_lm.generate_step({"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=(end,))
    positions = tf.range(width)[None, :]
    new = (positions >= lengths[:, None]) & (positions < lengths[:, None] + max_new_tokens)
    generated = tf.ragged.boolean_mask(tf.cast(out["token_ids"], tf.int32), new)
    # Everything from the first end token on is dropped.
    before_end = tf.math.cumsum(tf.cast(tf.equal(generated, end), tf.int32), axis=1) == 0
    generated = tf.ragged.boolean_mask(generated, before_end)
    return {"text": tokenizer.detokenize(generated), "token_count": tf.cast(generated.row_lengths(), tf.int32)}

  return generate


def generate_texts(generate: Callable, prompts, *, batch_size: int = 8):
  """Runs a generate_fn over a list of prompts a batch at a time; returns (texts, token counts) as lists."""
  fn = tf.function(generate, input_signature=[tf.TensorSpec([None], tf.string)])
  texts, counts = [], []
  for start in range(0, len(prompts), batch_size):
    out = fn(tf.constant(list(prompts[start:start + batch_size])))
    texts.extend(t.decode("utf-8", "replace") for t in out["text"].numpy())
    counts.extend(int(c) for c in out["token_count"].numpy())
  return texts, counts


def export_generator(causal_lm, tokenizer, chat: ChatFormat, *, export_base: pathlib.Path, sequence_length: int,
                     max_new_tokens: int, finalize: Optional[Callable[[pathlib.Path], None]] = None,
                     metadata: Optional[Dict] = None, class_names: Sequence[str] = ("text",)) -> pathlib.Path:
  """Exports `serving_default`: `prompt` ([None] tf.string) -> `text` ([None] tf.string), `token_count` (int32).

  The causal LM must hold plain weights (LoRA merged, tfft.model.causal_lm.merged_backbone). Versioning, finalize
  and metadata as tfft.serving.savedmodel.export_text_classifier; assets.extra/tfft.json says
  {"task": "text", "target": "generate", "input": "prompt", ...}; labels.txt holds `class_names` (the served
  output's name).

  Returns:
    The version directory.
  """
  generate = generate_fn(causal_lm, tokenizer, chat, sequence_length=sequence_length, max_new_tokens=max_new_tokens)
  archive = keras.export.ExportArchive()
  archive.track(causal_lm)
  archive.track(tokenizer)
  archive.add_endpoint("serving_default", generate, input_signature=[tf.TensorSpec([None], tf.string, name="prompt")])
  info = {"task": "text", "target": "generate", "input": "prompt", "sequence_length": sequence_length,
          "max_new_tokens": max_new_tokens}
  return savedmodel.write_export(archive, class_names, export_base=export_base, info=info, metadata=metadata,
                                 finalize=finalize)
