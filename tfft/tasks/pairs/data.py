"""Pairs of texts: the built-in BBC News headline/body pairs, two columns of a csv/tsv/jsonl file, and packing a pair
as the backbone's tokenizer packs two segments (in tf.data and in the export graph alike)."""

import collections
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfft.config import DataConfig, split_dataset_spec
from tfft.data import text as text_data
from tfft.data.text_batches import int_mask, trim_to_longest
from tfft.errors import UserError
from tfft.tasks.pairs.spec import pair_columns, SOURCES

MATCH, MISMATCH = "match", "mismatch"


def headline_and_body(text: str) -> Tuple[str, str]:
  """A BBC News file's first non-empty line (its headline) and the rest (its body), whitespace-stripped."""
  lines = text.strip().splitlines()
  return lines[0].strip(), "\n".join(lines[1:]).strip()


def bbc_pairs(texts: Sequence[str], labels: Sequence[str], ids: Sequence[str]):
  """Headline/body pairs from BBC News articles: does this headline belong to this body?

  The articles of each class are taken in id order and coupled (1st with 2nd, 3rd with 4th, …; an odd one out is
  left out); the couples come class by class in turn (the first couple of each class, then the second, …), so the
  first pairs span every class. Couple (i, k) gives four pairs: (headline i, body i) and (headline k, body k)
  match, (headline k, body i) and (headline i, body k) do not. So every headline and every body is in one matching
  and one mismatched pair, and neither side alone tells the label; the mismatched headline is of the same class,
  so the topic alone does not either. The couple is the pairs' group: the split keeps it whole, so no article is
  in two splits.

  Returns:
    (pairs, labels, ids, groups): per pair its (headline, body), "match" or "mismatch", an id
    "BODY_ID|headline:HEADLINE_ID", and its couple's index.
  """
  by_class: Dict[str, List[int]] = collections.defaultdict(list)
  for i, label in enumerate(labels):
    by_class[label].append(i)
  parts = {i: headline_and_body(texts[i]) for i in range(len(texts))}
  couples = {label: [(members[2 * c], members[2 * c + 1]) for c in range(len(members) // 2)]
             for label, members in ((label, sorted(by_class[label], key=lambda i: ids[i])) for label in by_class)}
  in_turn = [couples[label][c] for c in range(max(map(len, couples.values()), default=0))
             for label in sorted(couples) if c < len(couples[label])]
  pairs, pair_labels, pair_ids, groups = [], [], [], []
  for group, (i, k) in enumerate(in_turn):
    for head, body, kind in ((i, i, MATCH), (k, i, MISMATCH), (k, k, MATCH), (i, k, MISMATCH)):
      pairs.append((parts[head][0], parts[body][1]))
      pair_labels.append(kind)
      pair_ids.append(f"{ids[body]}|headline:{ids[head]}")
      groups.append(group)
  return pairs, pair_labels, pair_ids, groups


def load_pair_table(path: pathlib.Path, flag_value: str, *, columns: Sequence[str], label_column: str):
  """Reads pairs of texts and their labels from two columns of a .csv, .tsv or .jsonl file.

  Raises:
    UserError: for a missing file, a pair column or the label column that does not exist, or a row without a label.
  """
  first = text_data.load_table(path, flag_value, text_column=columns[0], label_column=label_column,
                               text_flag="pair_columns")
  second = text_data.load_table(path, flag_value, text_column=columns[1], label_column=label_column,
                                text_flag="pair_columns")
  return text_data.Examples(list(zip(first.texts, second.texts)), first.labels, first.ids, first.source)


def load_examples(data: DataConfig):
  """The pairs `--dataset` names (--task=pairs): bbc_pairs, or csv:PATH with two text columns.

  Returns:
    tfft.data.text.Examples whose texts are (text_a, text_b) tuples; bbc_pairs also sets `groups` (see bbc_pairs).

  Raises:
    UserError: for a bad source, an empty text, or fewer than two classes.
  """
  kind, path = split_dataset_spec(data.dataset, SOURCES)
  if kind == "bbc_pairs":
    articles = text_data.load_textdir(text_data.locate_bbc_news(), data.dataset)
    pairs, labels, ids, groups = bbc_pairs(articles.texts, articles.labels, articles.ids)
    examples = PairExamples(pairs, labels, ids, articles.source, groups=np.asarray(groups))
  elif kind == "csv":
    columns = pair_columns(data)
    table = load_pair_table(pathlib.Path(path).expanduser(), data.dataset, columns=columns,
                            label_column=data.label_column)
    examples = PairExamples(table.texts, table.labels, table.ids, table.source)
  else:
    raise UserError(f"--dataset={data.dataset}: --task=pairs reads bbc_pairs or csv:PATH (with --pair_columns=A,B)")
  for pair, example_id in zip(examples.texts, examples.ids):
    if not pair[0].strip() or not pair[1].strip():
      raise UserError(f"--dataset={data.dataset}: pair {example_id} has an empty text; remove it or fill it in")
  if data.max_examples:
    examples = examples.take(range(min(data.max_examples, len(examples))))
  if data.examples_per_class:
    examples = examples.cap_per_class(data.examples_per_class)
  if len(set(examples.labels)) < 2:
    raise UserError(f"--dataset={data.dataset}: found {len(set(examples.labels))} class(es); a classifier needs at "
                    "least two")
  return examples


class PairExamples:
  """Pairs of texts with their string labels; `groups` (or None) keeps the pairs of one group in one split."""

  def __init__(self, texts, labels, ids, source: str, groups: Optional[np.ndarray] = None):
    self.texts, self.labels, self.ids, self.source, self.groups = list(texts), list(labels), list(ids), source, groups

  def __len__(self):
    return len(self.texts)

  def take(self, keep: Sequence[int]) -> "PairExamples":
    return PairExamples([self.texts[i] for i in keep], [self.labels[i] for i in keep], [self.ids[i] for i in keep],
                        self.source, None if self.groups is None else self.groups[np.asarray(keep, dtype=np.int64)])

  def cap_per_class(self, cap: int) -> "PairExamples":
    """The first `cap` pairs of each class in source order; a group is kept whole or left out with its first pair."""
    seen, keep, kept_groups, dropped_groups = collections.Counter(), [], set(), set()
    for i, label in enumerate(self.labels):
      group = None if self.groups is None else int(self.groups[i])
      if group is not None and group in kept_groups:
        keep.append(i)
        continue
      if group is not None and group in dropped_groups:
        continue
      if seen[label] < cap:
        seen[label] += 1
        keep.append(i)
        if group is not None:
          kept_groups.add(group)
      elif group is not None:
        dropped_groups.add(group)
    return self.take(keep)


def tokenize(preprocessor, pairs: Sequence[Tuple[str, str]], *, batch_size: int = 256) -> Dict[str, np.ndarray]:
  """Packs every pair once, as the export does (pack), as numpy arrays."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  fn = tf.function(lambda a, b: pack(preprocessor, a, b),
                   input_signature=[tf.TensorSpec([None], tf.string)] * 2)
  parts = []
  for start in range(0, len(pairs), batch_size):
    chunk = pairs[start:start + batch_size]
    out = fn(tf.constant([p[0] for p in chunk], tf.string), tf.constant([p[1] for p in chunk], tf.string))
    parts.append({k: v.numpy() for k, v in out.items()})
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def pack(preprocessor, text_a, text_b):
  """Two [N] tf.string batches -> the backbone's features for N pairs, packed by its keras-hub preprocessor's own
  tokenizer and two-segment packer (BERT: [CLS] a [SEP] b [SEP], segment ids 0 then 1), truncated round-robin: a
  token comes off the longer text first, so both keep their share of --sequence_length.

  Raises:
    UserError: for a preprocessor without a tokenizer and a packer.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if getattr(preprocessor, "packer", "absent") is None:
    preprocessor(tf.constant(["build"]))  # keras-hub creates the packer when the preprocessor is first called
  tokenizer, packer = getattr(preprocessor, "tokenizer", None), getattr(preprocessor, "packer", None)
  if tokenizer is None or packer is None:
    raise UserError("--task=pairs needs a backbone whose preprocessor has a tokenizer and a two-segment packer")
  token_ids, segment_ids = packer((tokenizer(text_a), tokenizer(text_b)))
  return int_mask({"token_ids": token_ids, "segment_ids": segment_ids,
                   "padding_mask": token_ids != tokenizer.pad_token_id})


def pair_logits(model, preprocessor, text_a, text_b, pad_to_multiple_of: Optional[int] = None):
  """The model's float32 logits for a batch of pairs, in the graph (the export) or eagerly."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  features = pack(preprocessor, text_a, text_b)
  features = {name: features[name] for name in model.input}
  if pad_to_multiple_of:
    features = trim_to_longest(features, pad_to_multiple_of)
  return tf.cast(model(features, training=False), tf.float32)


def predict_logits(model, preprocessor, pairs: Sequence[Tuple[str, str]], *, batch_size: int = 32,
                   pad_to_multiple_of: Optional[int] = None) -> np.ndarray:
  """pair_logits over a list of pairs, a batch at a time, through the same traced function shape as the export."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  fn = tf.function(lambda a, b: pair_logits(model, preprocessor, a, b, pad_to_multiple_of),
                   input_signature=[tf.TensorSpec([None], tf.string)] * 2)
  return np.concatenate([fn(tf.constant([p[0] for p in pairs[i:i + batch_size]], tf.string),
                            tf.constant([p[1] for p in pairs[i:i + batch_size]], tf.string)).numpy()
                         for i in range(0, len(pairs), batch_size)])
