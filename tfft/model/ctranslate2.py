"""Reads a CTranslate2 model.bin: its spec name, its variables (dequantised to float32 numpy arrays) and aliases.

Written from CTranslate2's own description of the format (python/ctranslate2/specs/model_spec.py `_serialize` and
src/models/model.cc `load`); ctranslate2 itself is never imported. A file is little-endian:

  uint32 binary version (4 to 6 share this layout)
  string spec name (e.g. "WhisperSpec"), uint32 spec revision
  uint32 number of variables, then per variable:
    string name, uint8 rank, rank x uint32 dims, uint8 dtype id, uint32 payload bytes, the payload
  uint32 number of aliases, then per alias: string alias, string name of the variable it stands for

where a string is uint16 length (counting a trailing NUL), the UTF-8 bytes, and the NUL. Dtype ids follow
include/ctranslate2/types.h: float32, int8, int16, int32, float16, bfloat16. A quantised weight `x/weight` (int8 or
int16) has a float `x/weight_scale` beside it: int8 rows are scaled by 127 / max|row|, int16 by one 2^10 / max|x|.
"""

import dataclasses
import pathlib
from typing import Dict, Sequence, Tuple, Union

import numpy as np

from tfft.errors import UserError
from tfft.model import binary_cursor

VERSIONS = (4, 5, 6)
# types.h DataType order: id -> (name, numpy dtype of the payload).
DTYPES = {0: ("float32", "<f4"), 1: ("int8", "i1"), 2: ("int16", "<i2"), 3: ("int32", "<i4"), 4: ("float16", "<f2"),
          5: ("bfloat16", "<u2")}


@dataclasses.dataclass(frozen=True)
class Variable:
  """One variable of the file: `shape` in the file's (row-major) order, `offset` in bytes from the file's start."""
  name: str
  dtype: str
  shape: Tuple[int, ...]
  offset: int
  nbytes: int


@dataclasses.dataclass(frozen=True)
class CT2File:
  """A parsed model.bin; `data` holds its bytes (memory-mapped when it is one file on disk)."""
  path: str  # names the file (or its parts) in errors
  version: int
  spec: str
  revision: int
  variables: Dict[str, Variable]
  aliases: Dict[str, str]
  data: np.ndarray

  def resolve(self, name: str) -> str:
    """The variable a name (or an alias of one) stands for."""
    return self.aliases.get(name, name)

  def has(self, name: str) -> bool:
    return self.resolve(name) in self.variables

  def raw(self, name: str) -> np.ndarray:
    """A variable's values in its stored dtype (bfloat16 as uint16), without dequantising.

    Raises:
      UserError: the file has no such variable.
    """
    key = self.resolve(name)
    if key not in self.variables:
      raise UserError(f"{self.path}: no variable {name!r} in this CTranslate2 {self.spec} file; is it the model "
                      "it claims to be?")
    v = self.variables[key]
    return self.data[v.offset:v.offset + v.nbytes].view(DTYPES_BY_NAME[v.dtype]).reshape(v.shape)

  def read(self, name: str) -> np.ndarray:
    """A variable as float32: float16 and bfloat16 widened, int8/int16 weights divided by their `_scale`.

    Raises:
      UserError: no such variable, or a quantised one without its scale.
    """
    key = self.resolve(name)
    value = self.raw(name)
    dtype = self.variables[key].dtype
    if dtype == "bfloat16":
      return (value.astype(np.uint32) << 16).view(np.float32)
    if dtype in ("int8", "int16") and value.ndim:
      scale_name = key + "_scale"
      if scale_name not in self.variables:
        raise UserError(f"{self.path}: {key} is {dtype} but {scale_name} is missing; the file is incomplete, "
                        "re-convert it")
      scale = self.read(scale_name)
      # Per output row for int8 (rows x, a conv's (out, in, k) folded to (out, in*k)), one number for int16.
      scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
      return (value.astype(np.float32) / scale).astype(np.float32)
    return value.astype(np.float32)

  def scalar(self, name: str):
    """A rank-0 variable as a Python number (the specs store flags and head counts this way)."""
    return self.raw(name).item()


DTYPES_BY_NAME = {name: np.dtype(code) for name, code in DTYPES.values()}


class _Cursor(binary_cursor.Cursor):
  """The shared cursor, with this format's strings."""

  def string(self, what: str) -> str:
    raw = bytes(self.take(self.unpack("<H")))
    if not raw or raw[-1] != 0:
      raise UserError(f"{what} at offset {self.pos - len(raw)} is not NUL-terminated")
    try:
      return raw[:-1].decode("utf-8")
    except UnicodeDecodeError as e:
      raise UserError(f"{what} is not UTF-8 ({e.reason} at byte {e.start})") from None


PathOrParts = Union[str, pathlib.Path, Sequence[Union[str, pathlib.Path]]]


def load_model_bin(path: PathOrParts, *, fix: str = "re-install or re-convert the model") -> CT2File:
  """Reads a CTranslate2 model.bin, or the parts it was split into (read in order, as if joined).

  Args:
    path: the model.bin, or a list of its parts.
    fix: what the user should do about a bad file, said at the end of an error.

  Returns:
    A CT2File. Nothing is dequantised yet.

  Raises:
    UserError: one line naming the file and `fix`: a missing part, a file that is not a CTranslate2 model, an
      unknown version or dtype, a payload size that does not match its shape, or a truncated or overlong file.
  """
  parts = [pathlib.Path(path)] if isinstance(path, (str, pathlib.Path)) else [pathlib.Path(p) for p in path]
  name = str(parts[0]) if len(parts) == 1 else " + ".join(map(str, parts))
  for part in parts:
    if not part.is_file():
      raise UserError(f"{part}: no such file (a CTranslate2 model.bin{' part' if len(parts) > 1 else ''}); {fix}")
  if len(parts) == 1:
    data = np.memmap(parts[0], dtype=np.uint8, mode="r") if parts[0].stat().st_size else np.zeros(0, np.uint8)
  else:
    data = np.concatenate([np.fromfile(p, dtype=np.uint8) for p in parts])
  try:
    return _parse(name, data)
  except binary_cursor.Truncated as e:
    raise UserError(f"{name}: truncated CTranslate2 model ({e}); {fix}") from None
  except UserError as e:
    raise UserError(f"{name}: {e}; {fix}") from None


def _parse(name: str, data: np.ndarray) -> CT2File:
  cur = _Cursor(memoryview(data))
  version = cur.unpack("<I")
  if version not in VERSIONS:
    raise UserError(f"not a CTranslate2 model.bin of binary version {'-'.join(map(str, (VERSIONS[0], VERSIONS[-1])))}"
                    f" (its first 4 bytes read {version})")
  spec = cur.string("the spec name")
  revision = cur.unpack("<I")
  variables: Dict[str, Variable] = {}
  for _ in range(cur.unpack("<I")):
    var = cur.string("a variable name")
    rank = cur.unpack("<B")
    shape = tuple(cur.unpack("<I") for _ in range(rank))
    type_id = cur.unpack("<B")
    if type_id not in DTYPES:
      raise UserError(f"variable {var!r} has dtype id {type_id}, which CTranslate2 does not define")
    dtype = DTYPES[type_id][0]
    nbytes = cur.unpack("<I")
    expected = int(np.prod(shape, dtype=np.int64)) * DTYPES_BY_NAME[dtype].itemsize
    if nbytes != expected:
      raise UserError(f"variable {var!r} ({dtype} {list(shape)}) has {nbytes} bytes of data, not {expected}")
    if var in variables:
      raise UserError(f"variable {var!r} appears twice")
    variables[var] = Variable(var, dtype, shape, cur.pos, nbytes)
    cur.take(nbytes)
  aliases = {}
  for _ in range(cur.unpack("<I")):
    alias, target = cur.string("an alias"), cur.string("an alias target")
    if target not in variables:
      raise UserError(f"alias {alias!r} points to {target!r}, which is not a variable of the file")
    aliases[alias] = target
  if cur.pos != len(data):
    raise UserError(f"{len(data) - cur.pos} bytes follow the last alias; the file is corrupt or two files were joined")
  return CT2File(name, version, spec, revision, variables, aliases, data)
