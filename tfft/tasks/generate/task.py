"""Instruction fine-tuning of a decoder (--task=generate): prompt/response pairs, the backbone's chat template,
the loss on the response tokens only, LoRA by default; scored by greedy generation and exported as a SavedModel
that generates (tfft.tasks.generate.export)."""

import pathlib
from typing import List, Mapping, Optional, Sequence

import numpy as np
from absl import logging

from tfft.data import padding as padding_lib
from tfft.config import Config, split_dataset_spec
from tfft.tasks.generate import data as instructions
from tfft.data.text import Examples
from tfft.errors import UserError
from tfft.model import chat as chat_lib
from tfft.model import text_backbones
from tfft.tasks.api import Built, Prepared
from tfft.tasks.generate.target import SERVED_DTYPE, GenerateTarget

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
  from tfft.data import text as text_data  # pylint: disable=g-import-not-at-top
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
  kind, path = split_dataset_spec(data.dataset)
  if kind == "bbc_headlines":
    examples = load_headlines()
  else:
    pairs = instructions.load_pairs(pathlib.Path(path).expanduser(), data.dataset, prompt_column=data.prompt_column,
                                    response_column=data.response_column)
    examples = Examples(pairs.prompts, pairs.responses, pairs.ids, pairs.source)
  if data.max_examples:
    examples = examples.take(range(min(data.max_examples, len(examples))))
  return examples


def greedy(model):
  """Sets the causal LM's sampler to greedy (compile() sets keras-hub's default, top-k) and returns it."""
  import keras_hub  # pylint: disable=g-import-not-at-top
  if not isinstance(model.sampler, keras_hub.samplers.GreedySampler):
    model.sampler = keras_hub.samplers.GreedySampler()
    model.generate_function = None
  return model


def model_outputs(model, tokenizer, chat, prompts: Sequence[str], responses: Sequence[str], *, sequence_length: int,
                  max_new_tokens: int, batch_size: int) -> np.ndarray:
  """Greedy generations for the prompts and the likelihood of the reference responses, as the structured array
  GenerateTarget serves in process (text, tokens, nll, response_tokens)."""
  import keras  # pylint: disable=g-import-not-at-top
  from tfft.tasks.generate import export as generation  # pylint: disable=g-import-not-at-top
  out = np.empty(len(prompts), dtype=SERVED_DTYPE)
  if not len(prompts):
    return out
  generate = generation.generate_fn(greedy(model), tokenizer, chat, sequence_length=sequence_length,
                                    max_new_tokens=max_new_tokens)
  texts, counts = generation.generate_texts(generate, list(prompts), batch_size=batch_size)
  out["text"], out["tokens"] = texts, counts
  arrays = instructions.pack(tokenizer, chat, prompts, responses, sequence_length=sequence_length)
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
  from tfft.model import causal_lm  # pylint: disable=g-import-not-at-top
  task = TextGenerator(config)
  backbone = text_backbones.load_backbone(task.spec)
  m = config.model
  return model_outputs(causal_lm.build_causal_lm(backbone, lora_rank=0), task.tokenizer, task.chat, prompts,
                       responses, sequence_length=m.sequence_length, max_new_tokens=m.max_new_tokens,
                       batch_size=config.train.batch_size)


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
    self.spec = text_backbones.resolve(config.model.backbone)
    self.tokenizer = text_backbones.load_preprocessor(self.spec, config.model.sequence_length).tokenizer
    self.chat = chat_lib.chat_format(getattr(self.tokenizer, "chat_template", "") or "",
                                     where=f"--backbone={config.model.backbone}")

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
    from tfft.model import causal_lm  # pylint: disable=g-import-not-at-top
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
    from tfft.data import tag_batches  # pylint: disable=g-import-not-at-top
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
    return model_outputs(model, self.tokenizer, self.chat, [examples.texts[i] for i in indices],
                         [examples.labels[i] for i in indices], sequence_length=m.sequence_length,
                         max_new_tokens=m.max_new_tokens, batch_size=self.config.train.batch_size)

  def run_data(self, prepared: Prepared):
    from tfft.report import run_report  # pylint: disable=g-import-not-at-top
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
    from tfft.model import causal_lm  # pylint: disable=g-import-not-at-top
    from tfft.tasks.generate import export as generation  # pylint: disable=g-import-not-at-top
    m, d = self.config.model, self.config.data
    from tfft.model import lora  # pylint: disable=g-import-not-at-top
    # The job hands over a plain copy with the adapters merged (--lora_rank); a model that still has them is merged.
    merged = (causal_lm.build_causal_lm(causal_lm.merged_backbone(model.backbone), lora_rank=0)
              if lora.lora_layers(model) else greedy(model))
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
