"""Token tagging (NER): sentences of words in, a BIO tag per word out, on a keras-hub text backbone. Words are
tokenized into word pieces once; each word's first piece carries its tag (tfft.data.tag_pieces)."""

import dataclasses
from typing import List, Mapping, Optional

import numpy as np
from absl import logging

from tfft.config import Config
from tfft.data import padding as padding_lib
from tfft.data import tag_batches, tag_pieces, tagging
from tfft.model import text_backbones
from tfft.report import run_report
from tfft.tasks.api import Built, Prepared
from tfft.tasks.tag import export as tag_export
from tfft.tasks.tag import model as tagger
from tfft.tasks.tag.target import outside_index, TagTarget


@dataclasses.dataclass(frozen=True)
class TagExamples:
  """Tagged sentences as the job reads examples: `texts` (words joined by spaces), `labels` (tags joined by
  spaces, the manifest's label column), `ids` and `source`; `tokens` the words."""
  tokens: List[List[str]]
  labels: List[str]
  ids: List[str]
  source: str

  def __len__(self):
    return len(self.tokens)

  @property
  def texts(self) -> List[str]:
    return [" ".join(words) for words in self.tokens]

  def take(self, indices) -> "TagExamples":
    indices = list(indices)
    return TagExamples([self.tokens[i] for i in indices], [self.labels[i] for i in indices],
                       [self.ids[i] for i in indices], self.source)


def load_tag_examples(data) -> TagExamples:
  """The tagged sentences --dataset names (tfft.data.tagging.load_tagged), the first --max_examples of them.

  Raises:
    UserError: for a bad source or line.
  """
  loaded = tagging.load_tagged(data.dataset, scheme=data.tag_scheme)
  examples = TagExamples(loaded.tokens, [" ".join(tags) for tags in loaded.tags], loaded.ids, loaded.source)
  if data.max_examples:
    examples = examples.take(range(min(data.max_examples, len(examples))))
  return examples


class TokenTagger:
  """The Task for --task=tag (tfft.tasks.api)."""
  kind = "text"

  def __init__(self, config: Config):
    """Resolves --backbone and loads its tokenizer; a bad backbone fails here, before any data is read.

    Raises:
      UserError: for a backbone that cannot be found or loaded.
    """
    self.config = config
    self.target = TARGET
    self.spec = text_backbones.resolve(config.model.backbone)
    self.preprocessor = text_backbones.load_preprocessor(self.spec, config.model.sequence_length)

  def load_examples(self) -> TagExamples:
    """Raises: UserError for a bad source or line (tfft.data.tagging)."""
    return load_tag_examples(self.config.data)

  def encode(self, examples, *, names=None):
    return self.target.encode(examples.labels, where=f"--dataset={self.config.data.dataset}", names=names,
                              ids=examples.ids)

  def build_model(self, num_classes: int, strategy, *, precision: Optional[str] = None,
                  weights: Optional[str] = None) -> Built:
    """Loads the backbone and puts the per-token head on it under `strategy`.

    Raises:
      UserError: if the backbone cannot be loaded or is shorter than --sequence_length.
    """
    m = self.config.model
    built = Built(*text_backbones.build_on_backbone(
        self.spec, strategy, lambda b: tagger.build_token_tagger(b, num_tags=num_classes, dropout=m.dropout),
        sequence_length=m.sequence_length, precision=precision or self.config.train.mixed_precision,
        load_weights=weights != "none"))
    logging.info("backbone %s, %d tags, sequence length %d", self.spec.flag_value, num_classes, m.sequence_length)
    return built

  def _trim(self, prepared: Prepared) -> Optional[int]:
    return None if prepared.padding == "fixed" else self.config.train.pad_to_multiple_of

  def prepare(self, examples, targets, split: Mapping[str, np.ndarray]) -> Prepared:
    """Cuts every sentence into windows of word pieces once; a window is a training unit, in its sentence's split."""
    t = self.config.train
    features, labels, weights, sentence = tag_pieces.training_windows(self.preprocessor, examples.tokens,
                                                                      list(targets.values))
    unit_split = {name: np.flatnonzero(np.isin(sentence, indices)) for name, indices in split.items()}
    longer = int((np.bincount(sentence) > 1).sum())
    if longer:
      logging.info("%d sentences are longer than one window of %d pieces and are read as several", longer,
                   self.config.model.sequence_length - 2)
    padding = padding_lib.choose_padding(t, features["padding_mask"], unit_split["train"])
    if t.padding == "auto":
      logging.info("--padding=auto: %s", padding)

    def make(name, **kw):
      kw = {"padding": padding, "pad_to_multiple_of": t.pad_to_multiple_of, **kw}
      return tag_batches.make_dataset(features, labels, weights, unit_split[name], batch_size=t.batch_size, **kw)

    steps = tag_batches.num_batches(unit_split["train"], batch_size=t.batch_size)
    return Prepared(examples, targets, dict(split), sentence, unit_split, padding, steps, make, labels)

  def cache_top_k(self):
    """Nothing is cached: the head reads every position, not one pooled vector."""
    return False

  def predict_logits(self, model, prepared: Prepared, indices: np.ndarray) -> np.ndarray:
    """Per word of the chosen sentences (back to back), its logits [sum W, C], read as the export reads them."""
    rows = tag_pieces.predict_word_logits(
        model, self.preprocessor, [prepared.examples.tokens[i] for i in indices],
        outside_index=outside_index(prepared.targets.names), batch_size=self.config.train.batch_size,
        pad_to_multiple_of=self._trim(prepared))
    return np.concatenate(rows) if rows else np.zeros((0, prepared.targets.width), np.float32)

  def run_data(self, prepared: Prepared):
    return run_report.RunData("text", prepared.examples.texts, prepared.examples.ids, prepared.targets.values,
                              prepared.split, prepared.class_names, prepared.targets)

  def contract(self) -> List[str]:
    m, tokenizer = self.config.model, self.preprocessor.tokenizer
    room = m.sequence_length - 2
    return ["`serving_default` input `text`: a batch of raw UTF-8 sentences, shape [N]; the client does no "
            "tokenizing. They are split into tokens in the graph as BERT's basic tokenizer splits them (at "
            "whitespace, and each punctuation mark and CJK character a token of its own); the training data's words "
            "were joined by single spaces.",
            f"Word pieces (in the graph, TF Text ops): {type(tokenizer).__name__}, lowercase="
            f"{getattr(tokenizer, 'lowercase', 'n/a')}, vocabulary size {tokenizer.vocabulary_size()}; each token "
            "is read at its first piece.",
            f"Windows: [CLS] pieces [SEP], {m.sequence_length} tokens; a sentence of more than {room} pieces is read "
            f"as windows starting every {max(1, room // 2)} pieces, each token from the window where it is farthest "
            "from an edge."]

  def save_artifacts(self, built: Built, run_dir):
    """Nothing beyond the checkpoints: the backbone is a keras-hub preset already."""

  def export(self, model, prepared: Prepared, *, export_base, finalize=None, metadata=None):
    return tag_export.export_token_tagger(model, self.preprocessor, prepared.class_names, export_base=export_base,
                                          outside_index=outside_index(prepared.class_names),
                                          pad_to_multiple_of=self._trim(prepared), finalize=finalize,
                                          metadata=metadata)


TARGET = TagTarget()


def build(config: Config) -> TokenTagger:
  return TokenTagger(config)


def load_served_examples(data, modality: str):  # pylint: disable=unused-argument
  """tfft.evaluate's (inputs, labels, ids): the sentences' words, their tags joined by spaces, their ids."""
  examples = load_tag_examples(data)
  return examples.texts, examples.labels, examples.ids
