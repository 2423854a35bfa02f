"""The one way tfft writes a file: under a temporary name beside it, flushed, then renamed over it; and file hashes."""

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
from typing import Callable, Iterator

from tfft.errors import UserError

# Temporary names start with this; TF Serving loads only integer directory names, so it never sees them either.
TMP_PREFIX = ".tmp-"


def tmp_name(path: pathlib.Path) -> pathlib.Path:
  """A temporary sibling of `path` for this process; it keeps the suffix, which Keras and matplotlib read."""
  return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: pathlib.Path, *, what: str = "", hint: str = "free disk space or choose another directory"
                ) -> Iterator[pathlib.Path]:
  """Yields a temporary path to write `path`'s content to; renames it over `path` when the block succeeds.

  A kill mid-write leaves the previous file intact, and a reader never sees half a file. A disk that refuses the
  write (full, quota, file size limit) becomes one line naming the file (`what` it is, e.g. "checkpoint") and
  `hint`, what to do.

  Raises:
    UserError: if the file cannot be written.
  """
  tmp = tmp_name(path)
  try:
    yield tmp
    os.replace(tmp, path)
  except OSError as e:
    reason = e.strerror or str(e).splitlines()[0]
    raise UserError(f"cannot write {what + ' ' if what else ''}{path} ({reason}); {hint}") from None
  finally:
    tmp.unlink(missing_ok=True)


def write_atomically(path: pathlib.Path, data, **kwargs):
  """Writes bytes or text to `path` through atomic_path (`what`, `hint`), flushed to disk before the rename.

  Raises:
    UserError: if the file cannot be written.
  """
  with atomic_path(path, **kwargs) as tmp:
    with open(tmp, "wb") as f:
      f.write(data.encode("utf-8") if isinstance(data, str) else data)
      f.flush()
      os.fsync(f.fileno())


def file_sha256(path: pathlib.Path) -> str:
  """The file's SHA-256, read a MiB at a time: the cache key of converted checkpoints."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def write_json(path: pathlib.Path, data, **kwargs):
  """Writes JSON atomically (NaN refused: it is not JSON)."""
  write_atomically(path, json.dumps(data, indent=2, allow_nan=False), **kwargs)


@contextlib.contextmanager
def atomic_dir(path: pathlib.Path, *, complete: Callable[[pathlib.Path], bool]) -> Iterator[pathlib.Path]:
  """Yields a temporary directory beside `path` to fill; renames it to `path` when the block succeeds.

  Two processes may fill the same directory at once: the first rename wins, and the other's result is dropped
  when `complete(path)` says the winner's is whole (otherwise a stale or broken directory is replaced).

  Raises:
    OSError: if the directory cannot be written or renamed.
  """
  tmp = tmp_name(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    yield tmp
    try:
      os.rename(tmp, path)
    except OSError:
      if not complete(path):  # not another run's finished directory: a stale or broken one
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
