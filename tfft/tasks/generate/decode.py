"""Greedy generation in process: the decoder and its chat template loaded from --backbone, generations with the
likelihood of reference responses, and the base model's as a baseline."""

from typing import Sequence

import keras
import keras_hub
import numpy as np

from tfft.config import Config
from tfft.model import chat as chat_lib
from tfft.model import causal_lm, text_backbones
from tfft.tasks.generate import data as generate_data
from tfft.tasks.generate import export as generation
from tfft.tasks.generate.data import SERVED_DTYPE


def load_decoder(config: Config):
  """(--backbone's resolved spec, its tokenizer, its chat template).

  Raises:
    UserError: for a backbone that cannot be loaded or whose chat template does not render.
  """
  spec = text_backbones.resolve(config.model.backbone)
  tokenizer = text_backbones.load_preprocessor(spec, config.model.sequence_length).tokenizer
  chat = chat_lib.chat_format(getattr(tokenizer, "chat_template", "") or "",
                              where=f"--backbone={config.model.backbone}")
  return spec, tokenizer, chat


def greedy(model):
  """Sets the causal LM's sampler to greedy (compile() sets keras-hub's default, top-k) and returns it."""
  if not isinstance(model.sampler, keras_hub.samplers.GreedySampler):
    model.sampler = keras_hub.samplers.GreedySampler()
    model.generate_function = None
  return model


def model_outputs(model, tokenizer, chat, prompts: Sequence[str], responses: Sequence[str], *, sequence_length: int,
                  max_new_tokens: int, batch_size: int) -> np.ndarray:
  """Greedy generations for the prompts and the likelihood of the reference responses, as the structured array
  GenerateTarget serves in process (text, tokens, nll, response_tokens)."""
  out = np.empty(len(prompts), dtype=SERVED_DTYPE)
  if not len(prompts):
    return out
  generate = generation.generate_fn(greedy(model), tokenizer, chat, sequence_length=sequence_length,
                                    max_new_tokens=max_new_tokens)
  texts, counts = generation.generate_texts(generate, list(prompts), batch_size=batch_size)
  out["text"], out["tokens"] = texts, counts
  arrays = generate_data.pack(tokenizer, chat, prompts, responses, sequence_length=sequence_length)
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
  for start in range(0, len(prompts), batch_size):
    rows = slice(start, start + batch_size)
    x = {"token_ids": arrays["token_ids"][rows], "padding_mask": arrays["padding_mask"][rows]}
    nll = keras.ops.convert_to_numpy(loss(arrays["labels"][rows], model(x, training=False)))
    weights = arrays["loss_weights"][rows]
    out["nll"][rows] = (nll * weights).sum(axis=1)
    out["response_tokens"][rows] = weights.sum(axis=1)
  return out


def base_model_outputs(config: Config, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
  """model_outputs of the backbone as loaded, before fine-tuning: the report's second baseline."""
  spec, tokenizer, chat = load_decoder(config)
  backbone = text_backbones.load_backbone(spec)
  m = config.model
  return model_outputs(causal_lm.build_causal_lm(backbone, lora_rank=0), tokenizer, chat, prompts,
                       responses, sequence_length=m.sequence_length, max_new_tokens=m.max_new_tokens,
                       batch_size=config.train.batch_size)
