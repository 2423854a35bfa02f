"""Reads PyTorch checkpoints (.pth / .pt, legacy and zip format) into numpy arrays, without torch and without
running anything the file names: its unpickler admits only the globals a tensor state dict needs.

A torch checkpoint is a pickle, and a plain unpickler calls whatever callable the file names (see
PITFALLS.md, "Unpickling checkpoints"). `RestrictedUnpickler.find_class` therefore resolves only
`collections.OrderedDict`, the tensor-rebuild functions of `torch._utils` (replaced here by numpy stand-ins) and
the `torch.<Type>Storage` names; any other global is refused before it is looked up.

Both of torch.save's layouts are read (torch/serialization.py, `_legacy_load` and `_load`):
  legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): five pickles in a row -- magic number,
    protocol version, sys_info, the object itself (storages as persistent ids ('storage', type, key, location,
    numel, view)), the list of storage keys -- then each storage's element count (int64) and raw bytes, in
    that list's order;
  zip (the default since torch 1.6): ARCHIVE/data.pkl with persistent ids ('storage', type, key, location,
    numel), each storage's bytes in ARCHIVE/data/KEY, and its byte order in ARCHIVE/byteorder.
"""

import collections
import pathlib
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Dict, Optional, Sequence

import numpy as np

from tfft.errors import UserError

LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001

# torch.<Name>Storage -> numpy dtype (without byte order) of its elements. numpy has no bfloat16: those are
# read as 16-bit words and widened to float32, which holds every bfloat16 value exactly.
STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?", "ComplexFloatStorage": "c8", "ComplexDoubleStorage": "c16", "UntypedStorage": "u1",
}
REFUSAL = "a tensor checkpoint needs only tensors"


class _StorageType:
  """Stands in for a torch.<Name>Storage class named by the pickle: it only knows its element type."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(STORAGE_DTYPES[name])

  def __repr__(self):
    return f"torch.{self.name}"


class _Storage:
  """One storage of the file; `array` (1-D, file byte order) is filled in once its bytes are read.

  A legacy view storage keeps its root and element offset, and reads through the root's array.
  """

  def __init__(self, storage_type: _StorageType, numel: int, root: Optional["_Storage"] = None, offset: int = 0):
    self.type, self.numel, self.root, self.offset = storage_type, numel, root, offset
    self.array: Optional[np.ndarray] = None

  def elements(self) -> np.ndarray:
    if self.root is not None:
      root = self.root.elements()
      return None if root is None else root[self.offset:self.offset + self.numel]
    return self.array


class _Tensor:
  """A tensor whose storage may not have been read yet: torch._utils._rebuild_tensor_v2's arguments."""

  def __init__(self, storage, storage_offset, size, stride):
    if not isinstance(storage, _Storage):
      raise UserError(f"a tensor in the checkpoint is built on {type(storage).__name__}, not a storage; "
                      "the file is corrupt or not a torch checkpoint")
    self.storage, self.offset, self.size, self.stride = storage, int(storage_offset), tuple(size), tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
  del requires_grad, backward_hooks, metadata  # training-time and Python-attribute state; arrays keep none
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data  # an nn.Parameter is its tensor


# (module, name) -> what the restricted unpickler hands back for it; everything else is refused.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
  """A pickle.Unpickler that resolves only the globals of a tensor state dict, and hands storages to a callback.

  Args:
    file: a binary file positioned at a pickle.
    source: the file's name, for error messages.
    storages: called with each persistent id (a tuple); returns what the pickle gets in its place. None: a
      persistent id is an error.

  Raises (from load()):
    UserError: for any other global (e.g. "…refuses to load posix.system: a tensor checkpoint needs only
      tensors"), or a persistent id when none is expected.
  """

  def __init__(self, file: BinaryIO, *, source: str, storages=None):
    # encoding: what torch.load passes, so pickles written by Python 2 read their str fields as text.
    super().__init__(file, encoding="utf-8")
    self._source, self._storages = source, storages

  def find_class(self, module: str, name: str):
    if module == "torch" and name in STORAGE_DTYPES:
      return _StorageType(name)
    found = ALLOWED_GLOBALS.get((module, name))
    if found is None:
      raise UserError(f"{self._source}: the torch checkpoint reader refuses to load {module}.{name}: {REFUSAL}; "
                      "this file runs code when unpickled, so do not load it with torch.load either")
    return found

  def persistent_load(self, pid):
    if self._storages is None or not isinstance(pid, tuple) or not pid:
      raise UserError(f"{self._source}: unexpected persistent id {str(pid)[:80]!r} in the checkpoint; the file is "
                      "corrupt or not a torch checkpoint")
    return self._storages(pid)


def load_state_dict(path) -> "collections.OrderedDict[str, np.ndarray]":
  """Reads a torch checkpoint's state dict: parameter and buffer names -> numpy arrays.

  A checkpoint that wraps its state dict ({"state_dict": {...}} or {"model": {...}}) is unwrapped.

  Args:
    path: a .pth / .pt / .bin file written by torch.save, in the legacy or the zip format.

  Returns:
    An OrderedDict name -> np.ndarray (C-contiguous, native byte order, in the file's order). bfloat16 tensors
    come back as float32.

  Raises:
    UserError: for a missing or unreadable file, any global other than the tensor ones, a TorchScript or
      pre-1.0 tar archive, truncated storages, or a file that does not hold a mapping of tensors.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f"{path}: no such torch checkpoint file")
  with open(path, "rb") as f:
    is_zip = f.read(4) == b"PK\x03\x04"  # torch's own test: a zip checkpoint starts with a local file header
  if is_zip:
    obj = _load_zip(path)
  else:
    with open(path, "rb") as f:
      obj = _load_legacy(f, str(path))
  return _as_state_dict(_materialise(obj, str(path)), str(path))


def _load_legacy(f: BinaryIO, source: str):
  def small_pickle(what: str):
    try:
      return RestrictedUnpickler(f, source=source).load()
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (any malformed stream: EOF, bad opcode, …)
      raise UserError(f"{source}: not a torch checkpoint (cannot read its {what}: {type(e).__name__}); pass a "
                      "file written by torch.save") from None

  if small_pickle("magic number") != LEGACY_MAGIC_NUMBER:
    raise UserError(f"{source}: not a torch checkpoint (wrong magic number); pass a file written by torch.save "
                    "(a checkpoint from torch < 0.4 must be re-saved with a newer torch)")
  protocol = small_pickle("protocol version")
  if protocol != LEGACY_PROTOCOL_VERSION:
    raise UserError(f"{source}: torch legacy protocol {protocol} is not supported (only "
                    f"{LEGACY_PROTOCOL_VERSION}); re-save the checkpoint with a current torch")
  sys_info = small_pickle("sys_info")
  order = "<" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">"

  storages: Dict[str, _Storage] = {}

  def storage(pid):
    if len(pid) != 6 or pid[0] not in ("storage", b"storage"):
      raise UserError(f"{source}: unexpected persistent id {str(pid)[:80]!r}; only tensors are supported")
    _, storage_type, root_key, _location, numel, view = pid
    _check_type(storage_type, source)
    root = storages.setdefault(str(root_key), _Storage(storage_type, int(numel)))
    if view is None:
      return root
    view_key, offset, view_numel = view
    return storages.setdefault(str(view_key), _Storage(storage_type, int(view_numel), root=root, offset=int(offset)))

  obj = _unpickle(RestrictedUnpickler(f, source=source, storages=storage), source)
  keys = small_pickle("storage keys")
  for key in keys:
    root = storages.get(str(key))
    if root is None or root.root is not None:
      raise UserError(f"{source}: storage {key} is listed but not used by any tensor; the file is corrupt")
    header = f.read(8)
    if len(header) != 8:
      raise UserError(f"{source}: truncated at storage {key}; the file is incomplete, download it again")
    (numel,) = struct.unpack(order + "q", header)
    if numel != root.numel:
      raise UserError(f"{source}: storage {key} holds {numel} elements, its tensors expect {root.numel}; the file "
                      "is corrupt")
    root.array = _read_array(f.read(numel * root.type.dtype.itemsize), root, order, f"{source}: storage {key}")
  return obj


def _load_zip(path: pathlib.Path):
  source = str(path)
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if any(n.endswith("constants.pkl") for n in names):
      raise UserError(f"{source}: a TorchScript archive (torch.jit.save), not a state dict; save the model's "
                      "state_dict() with torch.save and pass that file")
    if len(pickles) != 1:
      raise UserError(f"{source}: a zip file but not a torch checkpoint (no single data.pkl); pass a file written "
                      "by torch.save")
    prefix = pickles[0][:-len("data.pkl")]
    order_name = prefix + "byteorder"
    byteorder = archive.read(order_name).decode("ascii", "replace") if order_name in names else "little"
    if byteorder not in ("little", "big"):
      raise UserError(f"{source}: unknown byte order {byteorder!r} in the checkpoint")
    order = "<" if byteorder == "little" else ">"
    storages: Dict[str, _Storage] = {}

    def storage(pid):
      if len(pid) != 5 or pid[0] not in ("storage", b"storage"):
        raise UserError(f"{source}: unexpected persistent id {str(pid)[:80]!r}; only tensors are supported")
      _, storage_type, key, _location, numel = pid
      _check_type(storage_type, source)
      key = str(key)
      if key not in storages:
        record = f"{prefix}data/{key}"
        if record not in names:
          raise UserError(f"{source}: storage {key} is missing from the archive; the file is incomplete")
        item = _Storage(storage_type, int(numel))
        item.array = _read_array(archive.read(record), item, order, f"{source}: storage {key}")
        storages[key] = item
      return storages[key]

    with archive.open(pickles[0]) as f:
      return _unpickle(RestrictedUnpickler(f, source=source, storages=storage), source)


def _unpickle(unpickler: RestrictedUnpickler, source: str):
  try:
    return unpickler.load()
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (malformed stream, or a stand-in called with bad args)
    raise UserError(f"{source}: cannot read the checkpoint's pickle ({type(e).__name__}: {str(e)[:120]}); the "
                    "file is corrupt or not a torch checkpoint") from None


def _check_type(storage_type, source: str):
  if not isinstance(storage_type, _StorageType):
    raise UserError(f"{source}: a storage of type {storage_type!r} is not a torch storage type; the file is "
                    "corrupt")


def _read_array(data: bytes, storage: _Storage, order: str, what: str) -> np.ndarray:
  dtype = storage.type.dtype.newbyteorder(order)
  if len(data) != storage.numel * dtype.itemsize:
    raise UserError(f"{what}: {len(data)} bytes where {storage.numel * dtype.itemsize} were expected; the file is "
                    "truncated or corrupt")
  return np.frombuffer(data, dtype=dtype)


def _materialise(obj, source: str):
  """Replaces every pending tensor in dicts, lists and tuples by its numpy array (now that storages are read)."""
  if isinstance(obj, _Tensor):
    return _tensor_array(obj, source)
  if isinstance(obj, dict):
    out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for key, value in obj.items():
      out[key] = _materialise(value, source)
    return out
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(v, source) for v in obj)
  return obj


def _tensor_array(tensor: _Tensor, source: str) -> np.ndarray:
  storage = tensor.storage
  elements = storage.elements()
  if elements is None:
    raise UserError(f"{source}: a tensor's storage was never written to the file; the file is corrupt")
  size, stride, offset = tensor.size, tensor.stride, tensor.offset
  if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
    raise UserError(f"{source}: a tensor has size {size}, stride {stride}, offset {offset}; the file is corrupt")
  if 0 in size:
    return _native(np.zeros(size, elements.dtype), storage)
  # as_strided does no bounds check: refuse a view that would read past its storage.
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= len(elements):
    raise UserError(f"{source}: a tensor (size {size}, stride {stride}, offset {offset}) reaches past its storage "
                    f"of {len(elements)} elements; the file is corrupt")
  itemsize = elements.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(elements[offset:], shape=size, strides=[s * itemsize for s in stride],
                                         writeable=False)
  return _native(np.array(view, order="C"), storage)  # a C-contiguous copy that owns its memory


def _native(array: np.ndarray, storage: _Storage) -> np.ndarray:
  array = array.astype(array.dtype.newbyteorder("="), copy=False)
  if storage.type.name == "BFloat16Storage":
    # A bfloat16 is the top half of a float32.
    array = (array.astype(np.uint32) << 16).view(np.float32)
  return array


def _as_state_dict(obj: Any, source: str) -> "collections.OrderedDict[str, np.ndarray]":
  for wrapper in ("state_dict", "model"):
    if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict) and _all_arrays(obj[wrapper]):
      obj = obj[wrapper]
      break
  if not isinstance(obj, dict) or not _all_arrays(obj):
    raise UserError(f"{source}: the checkpoint holds {_describe(obj)}, not a state dict of tensors; save "
                    "model.state_dict() with torch.save and pass that file")
  return collections.OrderedDict((str(k), v) for k, v in obj.items())


def _all_arrays(mapping: dict) -> bool:
  return bool(mapping) and all(isinstance(v, np.ndarray) for v in mapping.values())


def _describe(obj) -> str:
  if isinstance(obj, dict):
    kinds: Sequence[str] = sorted({type(v).__name__ for v in obj.values()})
    return f"a dict of {', '.join(kinds) or 'nothing'}"
  return f"a {type(obj).__name__}"
