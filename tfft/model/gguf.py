"""Reads a GGUF file (v2, v3): its metadata, its tensor table, and tensors dequantised to float32 numpy arrays.

Written from llama.cpp's description of the format (gguf-py/gguf/constants.py, gguf_reader.py, quants.py and
ggml/src/ggml-quants.c). A file is little-endian: a header (magic, version, tensor count, key/value count), the
key/value metadata, a table of tensors (name, dims, type, offset), then the tensor data, which starts on a multiple of
`general.alignment` (default 32). The data is memory-mapped, so a tensor is read from disk only when it is asked for.
"""

import dataclasses
import pathlib
import struct
from typing import Any, Dict, Optional, Tuple

import numpy as np

from tfft.errors import UserError
from tfft.model import binary_cursor

# llama.cpp pre-tokenizers (`tokenizer.ggml.pre`) -> whether each digit is split off before GPT-2's regex. In
# llama-vocab.cpp "smollm" (with starcoder, refact, command-r, codeshell, exaone, minerva) has the regex list
# {"\\p{N}", GPT-2's regex} and "gpt2" GPT-2's regex alone; Hugging Face writes the first as
# Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)].
PRE_TOKENIZERS = {"gpt2": False, "smollm": True}

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# Metadata value types (GGUFValueType) of fixed size, as numpy dtypes; 8 is a string and 9 an array.
_SCALAR_DTYPES = {0: "u1", 1: "i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8",
                  12: "<f8"}
_STRING, _ARRAY = 8, 9

# GGML tensor types: id -> (name, elements per block, bytes per block). The sizes of types tfft cannot dequantise are
# kept too, so that such a file can still be listed and checked for truncation.
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    30: ("BF16", 1, 2),
}
DEQUANTIZABLE = ("F32", "F16", "Q8_0", "Q4_1")


def type_name(type_id: int) -> str:
  """The GGML name of a tensor type id, e.g. 'Q4_1', or 'type 99' for an id this module does not know."""
  return GGML_TYPES[type_id][0] if type_id in GGML_TYPES else f"type {type_id}"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """One row of the tensor table.

  `shape` is in numpy (row-major) order: GGUF lists dims fastest-first (ne[0] is the contiguous axis), so this is
  that list reversed, and a Linear weight of ne = [in, out] is the (out, in) matrix, as in PyTorch.
  """
  name: str
  type_id: int
  shape: Tuple[int, ...]
  offset: int  # absolute, in bytes from the start of the file
  nbytes: Optional[int]  # None for a type whose block size is unknown here

  @property
  def type_name(self) -> str:
    return type_name(self.type_id)


@dataclasses.dataclass(frozen=True)
class GGUFFile:
  """A parsed GGUF file; `data` is the whole file, memory-mapped read-only."""
  path: pathlib.Path
  version: int
  alignment: int
  metadata: Dict[str, Any]
  tensors: Dict[str, TensorInfo]
  data: np.ndarray

  def read_tensor(self, name: str) -> np.ndarray:
    """Dequantises one tensor.

    Args:
      name: the tensor's GGUF name, e.g. 'blk.0.attn_q.weight'.

    Returns:
      A float32 array of the tensor's numpy-order shape.

    Raises:
      UserError: the file has no such tensor, or its type cannot be dequantised.
    """
    if name not in self.tensors:
      raise UserError(f"{self.path}: no tensor {name!r} in this GGUF file ({len(self.tensors)} tensors)")
    info = self.tensors[name]
    raw = self.data[info.offset:info.offset + (info.nbytes or 0)]
    return dequantize(raw, info.type_id, info.shape, what=f"{self.path}: tensor {name!r}")


def dequantize(raw: np.ndarray, type_id: int, shape: Tuple[int, ...], *, what: str = "tensor") -> np.ndarray:
  """Decodes a tensor's bytes to float32.

  Block types quantise runs of 32 consecutive elements along the fastest axis: Q8_0 is an fp16 scale d and 32 int8 q
  (x = d*q); Q4_1 is fp16 d, fp16 m and 16 bytes whose low nibbles are elements 0..15 and high nibbles 16..31
  (x = d*q + m).

  Args:
    raw: the tensor's bytes, a uint8 array.
    type_id: the GGML type id.
    shape: the numpy-order shape.
    what: names the tensor in an error message.

  Returns:
    A float32 array of `shape`.

  Raises:
    UserError: a type other than F32, F16, Q8_0 or Q4_1, or a row length that is not a whole number of blocks.
  """
  name = type_name(type_id)
  if name not in DEQUANTIZABLE:
    raise UserError(f"{what} has GGML type {name}, which tfft cannot dequantise (it reads "
                    f"{', '.join(DEQUANTIZABLE)}); re-quantise the model to one of those")
  _, block, size = GGML_TYPES[type_id]
  if shape and shape[-1] % block:
    raise UserError(f"{what}: a row of {shape[-1]} elements is not a whole number of {name} blocks of {block}")
  if name == "F32":
    return raw.view("<f4").astype(np.float32).reshape(shape)
  if name == "F16":
    return raw.view("<f2").astype(np.float32).reshape(shape)
  blocks = raw.reshape(-1, size)
  d = blocks[:, 0:2].view("<f2").astype(np.float32)  # (n_blocks, 1)
  if name == "Q8_0":
    q = blocks[:, 2:].view(np.int8).astype(np.float32)
    return (d * q).reshape(shape)
  m = blocks[:, 2:4].view("<f2").astype(np.float32)
  qs = blocks[:, 4:]
  q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
  return (d * q + m).reshape(shape)


class _Cursor(binary_cursor.Cursor):
  """The shared cursor, with this format's strings."""

  def string(self, key: str) -> str:
    raw = self.take(self.unpack("<Q"))
    try:
      return str(raw, "utf-8")
    except UnicodeDecodeError as e:
      raise UserError(f"a string in {key!r} is not UTF-8 ({e.reason} at byte {e.start})") from None

  def value(self, value_type: int, key: str) -> Any:
    if value_type in _SCALAR_DTYPES:
      dtype = np.dtype(_SCALAR_DTYPES[value_type])
      return np.frombuffer(self.take(dtype.itemsize), dtype)[0].item()
    if value_type == _STRING:
      return self.string(key)
    if value_type == _ARRAY:
      item_type, count = self.unpack("<I"), self.unpack("<Q")
      if item_type in _SCALAR_DTYPES:
        # Numbers come back as one numpy array: token scores and types run to tens of thousands.
        dtype = np.dtype(_SCALAR_DTYPES[item_type])
        return np.frombuffer(self.take(dtype.itemsize * count), dtype).copy()
      return [self.value(item_type, key) for _ in range(count)]
    raise UserError(f"metadata key {key!r} has unknown value type {value_type}")


def load_gguf(path) -> GGUFFile:
  """Reads a GGUF file's header, metadata and tensor table, and memory-maps its tensor data.

  Args:
    path: the .gguf file.

  Returns:
    A GGUFFile. Metadata values are Python scalars or str; an array of numbers is a numpy array, any other array
    a list.

  Raises:
    UserError: the file is missing, is not GGUF, is a version other than 2 or 3, is big-endian, is malformed, or is
      truncated (its header, or a tensor's data, runs past the end).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f"{path}: no such GGUF file")
  size = path.stat().st_size
  if size < 4:
    raise UserError(f"{path}: truncated: {size} bytes, shorter than a GGUF header")
  data = np.memmap(path, dtype=np.uint8, mode="r")
  try:
    return _parse(path, data)
  except binary_cursor.Truncated as e:
    raise UserError(f"{path}: truncated: {e}; re-download or re-convert the file") from None
  except UserError as e:
    raise UserError(f"{path}: {e}") from None


def _parse(path: pathlib.Path, data: np.ndarray) -> GGUFFile:
  cur = _Cursor(memoryview(data))
  magic = bytes(cur.take(4))
  if magic != MAGIC:
    raise UserError(f"not a GGUF file (it starts with {magic!r}, not {MAGIC!r})")
  version = cur.unpack("<I")
  if version not in VERSIONS:
    if struct.unpack(">I", struct.pack("<I", version))[0] in VERSIONS:
      raise UserError("a big-endian GGUF file; tfft reads little-endian ones only")
    raise UserError(f"GGUF version {version}; tfft reads versions {' and '.join(map(str, VERSIONS))}")
  n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")

  metadata: Dict[str, Any] = {}
  for _ in range(n_kv):
    key = cur.string("a metadata key")
    if key in metadata:
      raise UserError(f"metadata key {key!r} appears twice")
    metadata[key] = cur.value(cur.unpack("<I"), key)

  table = []
  for _ in range(n_tensors):
    name = cur.string("a tensor name")
    n_dims = cur.unpack("<I")
    ne = [cur.unpack("<Q") for _ in range(n_dims)]
    table.append((name, tuple(reversed(ne)), cur.unpack("<I"), cur.unpack("<Q")))

  alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
  if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
    raise UserError(f"general.alignment is {alignment!r}; it must be a power of two")
  start = -(-cur.pos // alignment) * alignment

  tensors: Dict[str, TensorInfo] = {}
  for name, shape, type_id, rel in table:
    if name in tensors:
      raise UserError(f"tensor {name!r} appears twice in the tensor table")
    nbytes = None
    if type_id in GGML_TYPES:
      _, block, type_size = GGML_TYPES[type_id]
      nbytes = int(np.prod(shape, dtype=np.int64)) // block * type_size
      if start + rel + nbytes > len(data):
        raise binary_cursor.Truncated(f"tensor {name!r} ({type_name(type_id)}, {nbytes} bytes at offset "
                                      f"{start + rel}) runs past the end ({len(data)} bytes)")
    tensors[name] = TensorInfo(name, type_id, shape, start + rel, nbytes)
  return GGUFFile(path, version, alignment, metadata, tensors, data)
