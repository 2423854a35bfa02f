"""Texts in, one prediction per text out (classification or regression, by its target): a keras-hub backbone,
texts tokenized once, and an export that takes raw strings."""

from typing import List, Mapping, Optional, Sequence

import numpy as np
from absl import logging

from tfft.config import Config
from tfft.data import padding as padding_lib
from tfft.data import split as split_lib
from tfft.data import text as text_data
from tfft.data import windows as windows_lib
from tfft.data import text_batches, windows
from tfft.model import heads, text_backbones
from tfft.report import run_report
from tfft.serving import savedmodel
from tfft.tasks.api import Built, Prepared, Target, Targets


class TextClassifier:
  """The Task for text datasets (tfft.tasks.api): one prediction per text, of the --task's target."""
  kind = "text"

  def __init__(self, config: Config, target: Target, *, numeric_labels: bool = False):
    """Resolves --backbone and loads its tokenizer; a bad backbone fails here, before any data is read.

    Raises:
      UserError: for a backbone that cannot be found or loaded.
    """
    self.config = config
    self.target = target
    self.numeric_labels = numeric_labels
    self.spec = text_backbones.resolve(config.model.backbone)
    self.pooling = self.spec.default_pooling if config.model.pooling == "auto" else config.model.pooling
    self.preprocessor = text_backbones.load_preprocessor(self.spec, config.model.sequence_length)

  def load_examples(self) -> text_data.Examples:
    """Raises: UserError for a bad source or --classes."""
    examples = text_data.load_examples(self.config.data, numeric_labels=self.numeric_labels)
    if self.config.data.classes:
      keep = split_lib.select_classes(examples.labels, self.config.data.classes, flag_value=self.config.data.dataset)
      examples = examples.take(keep)
    return examples

  def encode(self, examples, *, names: Optional[Sequence[str]] = None) -> Targets:
    """Raises: UserError for a label the target cannot read, or one `names` (labels.txt) does not hold."""
    return self.target.encode(examples.labels, where=f"--dataset={self.config.data.dataset}", names=names,
                              ids=examples.ids)

  def build_model(self, num_classes: int, strategy, *, precision: Optional[str] = None,
                  weights: Optional[str] = None) -> Built:
    """Loads the backbone and builds the classifier under `strategy`.

    Args:
      num_classes: width of the output layer.
      strategy: the tf.distribute strategy to build under.
      precision: the dtype policy (default --mixed_precision); the logits stay float32 either way.
      weights: "none" builds the backbone without its pretrained weights, for a copy that is loaded next.

    Raises:
      UserError: if the backbone cannot be loaded or is shorter than --sequence_length.
    """
    m = self.config.model
    built = Built(*text_backbones.build_on_backbone(
        self.spec, strategy,
        lambda b: heads.build_text_classifier(b, num_classes=num_classes, pooling=self.pooling,
                                              head_units=m.head_units, dropout=m.dropout, l1=m.l1, l2=m.l2),
        sequence_length=m.sequence_length, precision=precision or self.config.train.mixed_precision,
        load_weights=weights != "none"))
    logging.info("backbone %s (%s pooling), sequence length %d", self.spec.flag_value, self.pooling,
                 m.sequence_length)
    return built

  def _trim(self, prepared: Prepared) -> Optional[int]:
    """Scoring and serving cut each batch of windows to a multiple of this many tokens (None: fixed padding)."""
    return None if prepared.padding == "fixed" else self.config.train.pad_to_multiple_of

  def prepare(self, examples, targets: Targets, split: Mapping[str, np.ndarray]) -> Prepared:
    """Tokenizes every text once and resolves --padding=auto from the training texts' lengths.

    With --train_windows=N > 1, the units of training and validation are the texts' windows, each with its text's
    label (a text's windows stay in its split); scoring still reads whole texts (predict_logits).
    """
    labels = targets.values
    t, windows = self.config.train, self.config.model.train_windows
    if windows > 1:
      features, doc = windows_lib.window_arrays(self.preprocessor, examples.texts, windows)
      unit_labels = labels[doc]
      unit_split = {name: np.flatnonzero(np.isin(doc, indices)) for name, indices in split.items()}
      logging.info("--train_windows=%d: %s windows per split", windows,
                   {name: len(indices) for name, indices in unit_split.items()})
    else:
      features = text_batches.tokenize(self.preprocessor, examples.texts)
      unit_labels, unit_split = labels, dict(split)
    padding = padding_lib.choose_padding(t, features["padding_mask"], unit_split["train"])
    if t.padding == "auto":
      logging.info("--padding=auto: %s", padding)

    rows = self.target.rows(targets, unit_labels)

    def make(name, **kw):
      return text_batches.make_dataset(features, rows, unit_split[name], num_classes=None,
                                       batch_size=t.batch_size, **{"padding": padding,
                                                                   "pad_to_multiple_of": t.pad_to_multiple_of, **kw})

    steps = text_batches.num_batches(features, unit_split["train"], batch_size=t.batch_size, padding=padding,
                                     pad_to_multiple_of=t.pad_to_multiple_of)
    return Prepared(examples, targets, dict(split), unit_labels, unit_split, padding, steps, make, rows)

  def cache_top_k(self):
    """The k whose lower blocks the feature cache may cache (None: only the head phase)."""
    freeze = self.config.train.freeze
    return freeze.k if freeze.kind == "top_k" else None

  def predict_logits(self, model, prepared: Prepared, indices: np.ndarray) -> np.ndarray:
    """Logits of whole texts, each read as up to --eval_windows windows, as the export reads them."""
    return windows.predict_logits(model, self.preprocessor, [prepared.examples.texts[i] for i in indices],
                                  self.config.model.eval_windows, batch_size=self.config.train.batch_size,
                                  pad_to_multiple_of=self._trim(prepared))

  def run_data(self, prepared: Prepared):
    return run_report.RunData("text", prepared.examples.texts, prepared.examples.ids, prepared.labels,
                              prepared.split, prepared.class_names, prepared.targets)

  def contract(self) -> List[str]:
    """The export's preprocessing contract, for the model card."""
    m, tokenizer = self.config.model, getattr(self.preprocessor, "tokenizer", None)
    return ["Input: a batch of raw UTF-8 strings, shape [N]; the client does no cleaning, lowercasing or tokenizing.",
            f"Tokenizer (in the graph, TF Text ops): {type(tokenizer).__name__}"
            + (f", lowercase={getattr(tokenizer, 'lowercase', 'n/a')}, vocabulary size "
               f"{tokenizer.vocabulary_size()}" if tokenizer is not None else "") + ".",
            (f"Packing (decoder): tokens then the end token, truncated to keep the start, padded on the right to "
             f"{m.sequence_length} tokens; the head reads the last real token." if self.spec.decoder else
             f"Packing: [CLS] tokens [SEP], truncated and padded to {m.sequence_length} tokens."),
            ("Long texts: the first window only." if m.eval_windows == 1 else
             f"Long texts: up to {m.eval_windows} windows of {m.sequence_length} tokens, logits averaged.")]

  def save_artifacts(self, built: Built, run_dir):
    """Nothing beyond the checkpoints: the backbone is a keras-hub preset already."""

  def export(self, model, prepared: Prepared, *, export_base, finalize=None, metadata=None):
    return savedmodel.export_text_classifier(model, self.preprocessor, prepared.class_names, export_base=export_base,
                                             eval_windows=self.config.model.eval_windows,
                                             pad_to_multiple_of=self._trim(prepared), finalize=finalize,
                                             metadata=metadata, outputs=self.target.outputs(prepared.targets))
