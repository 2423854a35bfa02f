"""Pairs of texts in, one class per pair out: both texts packed into one sequence as the backbone's tokenizer packs
two segments, and an export whose serving_default takes the two texts as two string inputs."""

from typing import List, Mapping

import numpy as np
from absl import logging

from tfft.config import Config
from tfft.data import padding as padding_lib
from tfft.data import split as split_lib
from tfft.data import text_batches
from tfft.report import run_report
from tfft.tasks.api import Prepared, Targets
from tfft.tasks.pairs import data as pair_data
from tfft.tasks.pairs import export as pair_export
from tfft.tasks.pooled.class_target import ClassTarget
from tfft.tasks.pooled.text import TextClassifier



class TextPairClassifier(TextClassifier):
  """The Task for --task=pairs (tfft.tasks.api): the text task's backbone and model, fed packed pairs."""

  def load_examples(self) -> pair_data.PairExamples:
    """Raises: UserError for a bad source, a missing pair column, an empty text or --classes."""
    examples = pair_data.load_examples(self.config.data)
    if self.config.data.classes:
      examples = examples.take(split_lib.select_classes(examples.labels, self.config.data.classes,
                                                        flag_value=self.config.data.dataset))
    return examples

  def prepare(self, examples, targets: Targets, split: Mapping[str, np.ndarray]) -> Prepared:
    """Packs every pair once and resolves --padding=auto from the training pairs' lengths."""
    t = self.config.train
    features = pair_data.tokenize(self.preprocessor, examples.texts)
    padding = padding_lib.choose_padding(t, features["padding_mask"], split["train"])
    if t.padding == "auto":
      logging.info("--padding=auto: %s", padding)
    rows = self.target.rows(targets, targets.values)

    def make(name, **kw):
      return text_batches.make_dataset(features, rows, split[name], num_classes=None, batch_size=t.batch_size,
                                       **{"padding": padding, "pad_to_multiple_of": t.pad_to_multiple_of, **kw})

    steps = text_batches.num_batches(features, split["train"], batch_size=t.batch_size, padding=padding,
                                     pad_to_multiple_of=t.pad_to_multiple_of)
    return Prepared(examples, targets, dict(split), targets.values, dict(split), padding, steps, make, rows)

  def predict_logits(self, model, prepared: Prepared, indices: np.ndarray) -> np.ndarray:
    """Logits of the pairs, packed in the graph as the export packs them."""
    return pair_data.predict_logits(model, self.preprocessor, [prepared.examples.texts[i] for i in indices],
                                    batch_size=self.config.train.batch_size, pad_to_multiple_of=self._trim(prepared))

  def run_data(self, prepared: Prepared):
    return run_report.RunData("text", [tuple(p) for p in prepared.examples.texts], prepared.examples.ids,
                              prepared.labels, prepared.split, prepared.class_names, prepared.targets)

  def contract(self) -> List[str]:
    m, tokenizer = self.config.model, getattr(self.preprocessor, "tokenizer", None)
    return ["Inputs `text_a` and `text_b`: two batches of raw UTF-8 strings, shape [N] each; pair i is "
            "(text_a[i], text_b[i]). The client does no cleaning, lowercasing or tokenizing.",
            f"Tokenizer (in the graph, TF Text ops): {type(tokenizer).__name__}.",
            f"Packing: [CLS] text_a [SEP] text_b [SEP] (the backbone's two-segment packing, segment ids 0 and 1), "
            f"{m.sequence_length} tokens in all; a longer pair loses tokens from the end of its longer text first "
            "(round-robin truncation)."]

  def export(self, model, prepared: Prepared, *, export_base, finalize=None, metadata=None):
    return pair_export.export_text_pair_classifier(
        model, self.preprocessor, prepared.class_names, export_base=export_base,
        pad_to_multiple_of=self._trim(prepared), finalize=finalize, metadata=metadata,
        outputs=self.target.outputs(prepared.targets))


TARGET = ClassTarget("pairs")


def build(config: Config) -> TextPairClassifier:
  return TextPairClassifier(config, TARGET)


def load_served_examples(data, modality: str):  # pylint: disable=unused-argument
  """tfft.evaluate's (inputs, labels, ids): each input the pair of texts, as the export takes them."""
  examples = pair_data.load_examples(data)
  return examples.texts, examples.labels, examples.ids
