"""Instruction data for a causal LM: prompt/response pairs from a table, the chat template applied, and packed so
that the loss falls on the response tokens only.

A training sequence is `prefix + prompt + suffix` (the chat template around one user turn, tfft.model.chat) then
the response and the tokenizer's end token. The model learns to predict each next token; the loss weight is 1 on
the response tokens and the end token (so it learns to answer and to stop) and 0 on the prompt and the padding.

A prompt too long for --sequence_length keeps its start: the prompt's own tokens are cut at the end, the template
around them is kept whole. tfft logs how many were cut. The export cuts prompts the same way, to leave room for
--max_new_tokens.
"""

import dataclasses
import math
import pathlib
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from tfft.config import split_dataset_spec
from tfft.data import text as text_data
from tfft.data import text
from tfft.data.text import Examples
from tfft.errors import UserError
from tfft.model.chat import ChatFormat
from tfft.tasks.generate.spec import SOURCES


@dataclasses.dataclass(frozen=True)
class Pairs:
  """Prompts with their responses; `ids` say where each came from (csv row)."""
  prompts: List[str]
  responses: List[str]
  ids: List[str]
  source: str

  def __len__(self):
    return len(self.prompts)


def load_pairs(path: pathlib.Path, flag_value: str, *, prompt_column: str, response_column: str) -> Pairs:
  """Reads prompt/response pairs from a .csv, .tsv or .jsonl file.

  Raises:
    UserError: a missing file, a missing column, an empty prompt or response.
  """
  if not path.is_file():
    raise UserError(f"--dataset={flag_value}: {path} is not a file; --task=generate reads a .csv, .tsv or .jsonl "
                    "table with a prompt and a response column")
  rows = [{str(k).strip(): v for k, v in row.items()} for row in text._read_table(path, flag_value)]  # pylint: disable=protected-access
  if not rows:
    raise UserError(f"--dataset={flag_value}: {path.name} holds no rows")
  columns = list(rows[0])
  for flag, column in (("prompt_column", prompt_column), ("response_column", response_column)):
    if column not in columns:
      raise UserError(f"--{flag}={column!r} is not a column of {path.name}; its columns are: {', '.join(columns)}")
  prompts, responses, ids = [], [], []
  for i, row in enumerate(rows, 1):
    for column in (prompt_column, response_column):
      value = row.get(column)
      if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        raise UserError(f"--dataset={flag_value}: row {i} has no value in column {column!r}; fill it in or drop "
                        "the row")
    prompts.append(str(row[prompt_column]))
    responses.append(str(row[response_column]))
    ids.append(f"row:{i}")
  return Pairs(prompts, responses, ids, str(path))


def prompt_ids(tokenizer, chat: ChatFormat, prompts: tf.Tensor, room: int) -> tf.RaggedTensor:
  """Token ids of `chat.prefix + prompt + chat.suffix`, the prompt's own tokens cut to fit `room` in all.

  TF ops only (TF Text), so the export runs the same function on its string input.

  Args:
    tokenizer: the decoder's tokenizer.
    chat: the chat template's text around a prompt.
    prompts: a [N] tf.string tensor.
    room: the most tokens a templated prompt may have.

  Returns:
    A [N, None] int32 RaggedTensor.
  """
  n = tf.shape(prompts)[0]
  around = tokenizer(tf.constant([chat.prefix, chat.suffix]))
  keep = tf.maximum(room - tf.cast(around.row_lengths()[0] + around.row_lengths()[1], tf.int32), 0)
  content = tokenizer(prompts)[:, :keep]

  def tiled(row):
    return tf.RaggedTensor.from_tensor(tf.tile(row[None], [n, 1]))

  return tf.concat([tiled(around[0]), tf.cast(content, around.dtype), tiled(around[1])], axis=1)


def _ragged_lists(fn, texts: Sequence[str], batch_size: int = 256) -> List[List[int]]:
  out = []
  for start in range(0, len(texts), batch_size):
    out.extend(fn(tf.constant(list(texts[start:start + batch_size]), tf.string)).to_list())
  return out


def pack(tokenizer, chat: ChatFormat, prompts: Sequence[str], responses: Sequence[str], *,
         sequence_length: int) -> Dict[str, np.ndarray]:
  """Packs pairs into next-token training arrays with the loss on the response only.

  Each row is `templated prompt, response, end token`, cut to sequence_length + 1 tokens (the response to at most
  half of them, the prompt's own tokens to what is left) and padded with the tokenizer's pad token on the right.

  Returns:
    token_ids and padding_mask ([N, sequence_length], the model's input), labels (the next token at each position)
    and loss_weights (1.0 where that next token is part of the response or its end token).
  """
  end, pad = tokenizer.end_token_id, tokenizer.pad_token_id
  longest_response = max(1, sequence_length // 2)
  tokenize = tf.function(lambda t: tokenizer(t))  # the TF Text path, as in the export
  response_ids = _ragged_lists(tokenize, responses)
  # The template and the prompts are tokenized whole once; cutting the prompt's own tokens here is what prompt_ids
  # does in the graph, since it tokenizes the three parts apart too.
  prefix, suffix = (len(ids) for ids in _ragged_lists(tokenize, [chat.prefix, chat.suffix]))
  full = _ragged_lists(tf.function(lambda t: prompt_ids(tokenizer, chat, t, 1 << 30)), prompts)
  n, cut = len(prompts), 0
  token_ids = np.full((n, sequence_length + 1), pad, np.int32)
  weights = np.zeros((n, sequence_length + 1), np.float32)
  mask = np.zeros((n, sequence_length + 1), np.int32)  # int32, as text_batches.int_mask says why
  for i in range(n):
    answer = response_ids[i][:longest_response] + [end]
    keep = max(sequence_length + 1 - len(answer) - prefix - suffix, 0)
    p = full[i]
    if len(p) - prefix - suffix > keep:
      p, cut = p[:prefix + keep] + p[len(p) - suffix:], cut + 1
    row = p + answer
    token_ids[i, :len(row)] = row
    mask[i, :len(row)] = 1
    weights[i, len(p):len(row)] = 1.0
  if cut:
    logging.warning("%d of %d prompts are longer than --sequence_length=%d leaves room for; each keeps its start "
                    "(the chat template stays whole)", cut, n, sequence_length)
  return {"token_ids": token_ids[:, :-1], "padding_mask": mask[:, :-1], "labels": token_ids[:, 1:],
          "loss_weights": weights[:, 1:]}


def make_dataset(arrays: Dict[str, np.ndarray], indices: np.ndarray, *, batch_size: int, shuffle: bool = False,
                 seed: int = 0) -> tf.data.Dataset:
  """A batched dataset of (features, next tokens, loss weights) over the given rows."""
  x = {"token_ids": arrays["token_ids"][indices], "padding_mask": arrays["padding_mask"][indices]}
  ds = tf.data.Dataset.from_tensor_slices((x, arrays["labels"][indices], arrays["loss_weights"][indices]))
  if shuffle:
    ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# The built-in bbc_headlines: prompt = this instruction + the article body, response = its headline.
INSTRUCTION = "Write the headline of this news article.\n\n"


def document(prompt: str) -> str:
  """What the lead baseline reads: the article body of a bbc_headlines prompt, else the prompt itself."""
  return prompt[len(INSTRUCTION):] if prompt.startswith(INSTRUCTION) else prompt


def load_headlines() -> Examples:
  """BBC News articles as prompt (INSTRUCTION + body) and response (the headline: the file's first line).

  The source's order takes one article of each topic in turn (business/001, entertainment/001, ...), so that
  --max_examples keeps every topic.

  Raises:
    UserError: if the BBC News package is not installed.
  """
  root = text_data.locate_bbc_news()
  topics = [sorted(p for p in d.iterdir() if p.is_file()) for d in sorted(root.iterdir()) if d.is_dir()]
  files = [files[i] for i in range(max(map(len, topics), default=0)) for files in topics if i < len(files)]
  prompts, responses, ids = [], [], []
  for path in files:
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    headline, body = (lines[0].strip() if lines else ""), "\n".join(lines[1:]).strip()
    if headline and body:
      prompts.append(INSTRUCTION + body)
      responses.append(headline)
      ids.append(str(path.relative_to(root)))
  return Examples(prompts, responses, ids, str(root))


def load_generate_examples(data) -> Examples:
  """The prompt/response pairs --dataset names (bbc_headlines, or csv:PATH with --prompt_column and
  --response_column), the first --max_examples of them.

  Raises:
    UserError: for a missing file or column, or an empty prompt or response.
  """
  kind, path = split_dataset_spec(data.dataset, SOURCES)
  if kind == "bbc_headlines":
    examples = load_headlines()
  else:
    pairs = load_pairs(pathlib.Path(path).expanduser(), data.dataset, prompt_column=data.prompt_column,
                                    response_column=data.response_column)
    examples = Examples(pairs.prompts, pairs.responses, pairs.ids, pairs.source)
  if data.max_examples:
    examples = examples.take(range(min(data.max_examples, len(examples))))
  return examples


# What the model "serves" in process for a set of prompts (GenerateTarget): the greedy generation, its token count,
# and the summed negative log-likelihood of the reference response with the number of its tokens.
TEXT = "text"
SERVED_DTYPE = [(TEXT, object), ("tokens", np.int32), ("nll", np.float64), ("response_tokens", np.float64)]
