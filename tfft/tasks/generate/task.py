"""Instruction fine-tuning of a decoder (--task=generate): prompt/response pairs, the backbone's chat template,
the loss on the response tokens only, LoRA by default; scored by greedy generation and exported as a SavedModel
that generates (tfft.tasks.generate.export)."""

from typing import List, Mapping, Optional

import numpy as np
from absl import logging

from tfft.config import Config
from tfft.data import padding as padding_lib
from tfft.data import tag_batches
from tfft.data.text import Examples
from tfft.errors import UserError
from tfft.model import causal_lm, lora, text_backbones
from tfft.report import run_report
from tfft.tasks.api import Built, Prepared
from tfft.tasks.generate import data as instructions
from tfft.tasks.generate import export as generation
from tfft.tasks.generate import decode
from tfft.tasks.generate.data import load_generate_examples
from tfft.tasks.generate.target import GenerateTarget

class TextGenerator:
  """The Task for --task=generate (tfft.tasks.api)."""
  kind = "text"

  def __init__(self, config: Config):
    """Resolves the decoder and loads its tokenizer and chat template.

    Raises:
      UserError: for a backbone that cannot be loaded or whose chat template does not render.
    """
    self.config = config
    self.target = TARGET
    self.spec, self.tokenizer, self.chat = decode.load_decoder(config)

  def load_examples(self) -> Examples:
    """Raises: UserError for a bad source, column or row, or fewer than 3 pairs."""
    examples = load_generate_examples(self.config.data)
    check_examples(examples, f"--dataset={self.config.data.dataset}")
    return examples

  def encode(self, examples, *, names=None):
    return self.target.encode(examples.labels, where=f"--dataset={self.config.data.dataset}", names=names,
                              ids=examples.ids)

  def build_model(self, num_classes: int, strategy, *, precision: Optional[str] = None,  # pylint: disable=unused-argument
                  weights: Optional[str] = None) -> Built:
    """The backbone with keras-hub's causal LM head (its tied output embedding); the job adds the LoRA adapters
    (--lora_rank, 8 by default on the command line for --task=generate).

    Raises:
      UserError: if the backbone cannot be loaded or is shorter than --sequence_length.
    """
    import keras  # pylint: disable=g-import-not-at-top
    m = self.config.model
    precision = precision or self.config.train.mixed_precision
    keras.mixed_precision.set_global_policy(precision)
    with strategy.scope():
      backbone = text_backbones.load_backbone(self.spec, dtype=None if precision == "float32" else precision,
                                              load_weights=weights != "none")
      text_backbones.check_sequence_length(backbone, self.spec, m.sequence_length)
      model = causal_lm.build_causal_lm(backbone, lora_rank=0)
    rank = self.config.train.lora_rank
    logging.info("backbone %s as a causal LM, %s, sequence length %d", self.spec.flag_value,
                 f"LoRA rank {rank}" if rank else "every weight fine-tuned (--lora_rank=0)", m.sequence_length)
    return Built(model, backbone, text_backbones.transformer_blocks(backbone))

  def prepare(self, examples, targets, split: Mapping[str, np.ndarray]) -> Prepared:
    """Packs every pair once: templated prompt, response, end token; the loss weight on the response and end."""
    t = self.config.train
    arrays = instructions.pack(self.tokenizer, self.chat, examples.texts, examples.labels,
                               sequence_length=self.config.model.sequence_length)
    features = {"token_ids": arrays["token_ids"], "padding_mask": arrays["padding_mask"]}
    padding = padding_lib.choose_padding(t, arrays["padding_mask"], split["train"])
    if t.padding == "auto":
      logging.info("--padding=auto: %s", padding)

    def make(name, **kw):
      kw = {"padding": padding, "pad_to_multiple_of": t.pad_to_multiple_of, **kw}
      return tag_batches.make_dataset(features, arrays["labels"], arrays["loss_weights"], split[name],
                                      batch_size=t.batch_size, **kw)

    steps = tag_batches.num_batches(split["train"], batch_size=t.batch_size)
    return Prepared(examples, targets, dict(split), targets.values, dict(split), padding, steps, make,
                    arrays["labels"])

  def cache_top_k(self):
    """Nothing is cached: every position's logits are trained on."""
    return False

  def predict_logits(self, model, prepared: Prepared, indices: np.ndarray) -> np.ndarray:
    """The greedy generations of the chosen prompts with their responses' likelihoods (model_outputs)."""
    m = self.config.model
    examples = prepared.examples
    return decode.model_outputs(model, self.tokenizer, self.chat, [examples.texts[i] for i in indices],
                         [examples.labels[i] for i in indices], sequence_length=m.sequence_length,
                         max_new_tokens=m.max_new_tokens, batch_size=self.config.train.batch_size)

  def run_data(self, prepared: Prepared):
    return run_report.RunData("text", prepared.examples.texts, prepared.examples.ids, prepared.targets.values,
                              prepared.split, prepared.class_names, prepared.targets)

  def contract(self) -> List[str]:
    m = self.config.model
    return ["`serving_default` input `prompt`: a batch of raw UTF-8 prompts, shape [N]; the client applies no "
            "template and does no tokenizing.",
            f"Chat template (from the backbone's file) applied in the graph: {self.chat.prefix!r} + prompt + "
            f"{self.chat.suffix!r}.",
            f"Tokenizer (TF Text ops): {type(self.tokenizer).__name__}, vocabulary size "
            f"{self.tokenizer.vocabulary_size()}; a prompt whose templated tokens exceed "
            f"{m.sequence_length - m.max_new_tokens} (--sequence_length - --max_new_tokens) keeps its start: its own "
            "tokens are cut at the end, the template stays whole.",
            f"Greedy decoding with a key/value cache, at most {m.max_new_tokens} new tokens, up to the end token "
            "(not returned). LoRA adapters are merged into the weights."]

  def save_artifacts(self, built: Built, run_dir):
    """Nothing beyond the checkpoints: the backbone is a keras-hub preset already."""

  def export(self, model, prepared: Prepared, *, export_base, finalize=None, metadata=None):
    m, d = self.config.model, self.config.data
    # The job hands over a plain copy with the adapters merged (--lora_rank); a model that still has them is merged.
    merged = (causal_lm.build_causal_lm(causal_lm.merged_backbone(model.backbone), lora_rank=0)
              if lora.lora_layers(model) else decode.greedy(model))
    metadata = {**(metadata or {}), "prompt_column": d.prompt_column, "response_column": d.response_column}
    return generation.export_generator(merged, self.tokenizer, self.chat, export_base=export_base,
                                       sequence_length=m.sequence_length, max_new_tokens=m.max_new_tokens,
                                       finalize=finalize, metadata=metadata, class_names=prepared.class_names)


def check_examples(examples: Examples, where: str):
  """Raises UserError for too few pairs to split into train, val and test."""
  if len(examples) < 3:
    raise UserError(f"{where}: {len(examples)} prompt/response pair(s); train, val and test need at least one each")


TARGET = GenerateTarget()


def build(config: Config) -> TextGenerator:
  return TextGenerator(config)


def load_served_examples(data, modality: str):  # pylint: disable=unused-argument
  """tfft.evaluate's (inputs, labels, ids): the prompts and their reference responses."""
  examples = load_generate_examples(data)
  return examples.texts, examples.labels, examples.ids
