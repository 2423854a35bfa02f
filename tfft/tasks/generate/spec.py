"""--task=generate: a causal decoder writes a response to each prompt."""

from tfft.config import Config, split_dataset_spec
from tfft.errors import UserError
from tfft.model import decoder_backbones
from tfft.tasks.api import TaskSpec

# The built-in dataset this package reads (tfft.tasks.generate.data).
SOURCES = {"bbc_headlines": "text"}

# Scalars a generation report holds that --min_metric can gate on: ROUGE F1 on the test split, in [0, 1].
GATES = ("rouge1", "rouge2", "rougeL")
# A causal LM has no new head: its one phase is --epochs, with LoRA adapters of this rank unless --lora_rank is given.
LORA_RANK = 8


def _fail(flag: str, value, fix: str):
  raise UserError(f"--{flag}={value!r}: {fix}")


def check(config: Config) -> None:
  """--task=generate: a decoder, a prompt/response source, and none of the options of a classifier's head."""
  d, m, t = config.data, config.model, config.train
  if not decoder_backbones.is_decoder(m.backbone):
    _fail("backbone", m.backbone, "--task=generate trains a causal decoder to write responses; an encoder cannot "
          "generate: use --backbone=smollm2-135m or gguf:PATH")
  if split_dataset_spec(d.dataset, SOURCES)[0] not in ("bbc_headlines", "csv"):
    _fail("dataset", d.dataset, "--task=generate reads prompt/response pairs: bbc_headlines (built in) or csv:PATH "
          "(.csv, .tsv, .jsonl) with --prompt_column and --response_column")
  for flag, column in (("prompt_column", d.prompt_column), ("response_column", d.response_column)):
    if not column or column != column.strip():
      _fail(flag, column, "must name a column, without surrounding spaces (headers are matched stripped)")
  if d.prompt_column == d.response_column:
    _fail("response_column", d.response_column, "must differ from --prompt_column")
  drop = "drop it"
  unread = (("pooling", m.pooling, "auto", "a causal LM predicts every next token and pools nothing", drop),
            ("head_units", m.head_units, (), "a causal LM has no new head (its output layer is the decoder's own)",
             drop),
            ("eval_windows", m.eval_windows, 1, "a prompt is read once, cut to fit --sequence_length", drop),
            ("train_windows", m.train_windows, 1, "a prompt is read once, cut to fit --sequence_length", drop),
            ("head_epochs", t.head_epochs, 0, "a causal LM has no new head to train first",
             "set --head_epochs=0 (the command line's default for --task=generate) and train with --epochs"),
            ("cache_features", t.cache_features, False, "there are no frozen pooled features to cache",
             "set --cache_features=false (the command line's default for --task=generate)"),
            ("loss", t.loss, "auto", "the loss is the next-token cross-entropy on the response tokens", drop),
            ("class_weight", t.class_weight, "none", "a response has no class", drop),
            ("unfreeze", t.unfreeze, "none", "use LoRA (the default) or --lora_rank=0 with --freeze", drop))
  for flag, value, default, why, fix in unread:
    if value != default:
      _fail(flag, ",".join(map(str, value)) if isinstance(value, tuple) else value,
            f"does not apply to --task=generate: {why}; {fix}")
  if not 1 <= m.max_new_tokens <= m.sequence_length // 2:
    _fail("max_new_tokens", m.max_new_tokens, f"must be in [1, {m.sequence_length // 2}] (half of "
          "--sequence_length: the rest holds the templated prompt)")


SPEC = TaskSpec(
    name="generate", modalities=("text",), datasets=("bbc_headlines",), sources=SOURCES, monitors=("val_loss",),
    gates=GATES, losses=("auto",), options=("prompt_column", "response_column", "max_new_tokens"),
    defaults={"head_epochs": 0, "cache_features": False, "lora_rank": LORA_RANK}, check=check,
    module="tfft.tasks.generate.task")
