"""Export versions as TF Serving sees them: integer directories under EXPORT_DIR/NAME, the highest one served, and
publishing a complete export under the next number in one rename."""

import os
import pathlib
import shutil
from typing import List

from tfft.files import TMP_PREFIX


def published(base: pathlib.Path) -> List[int]:
  """The complete versions under `base` (integer directories holding saved_model.pb), lowest first."""
  if not base.is_dir():
    return []
  return sorted(int(p.name) for p in base.iterdir()
                if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file())


def next_version(base: pathlib.Path) -> int:
  """One past the highest integer directory under `base`, complete or not, so no number is ever reused."""
  taken = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
  return max(taken, default=0) + 1


def publish(tmp: pathlib.Path, base: pathlib.Path) -> pathlib.Path:
  """Renames a complete export into the next free version; a concurrent export just takes the one after."""
  while True:
    target = base / str(next_version(base))
    try:
      os.rename(tmp, target)  # atomic; fails if another export took this version first
      return target
    except OSError:
      if not target.exists():
        raise


def remove_abandoned(base: pathlib.Path):
  """Removes temporary exports whose writer process is gone (killed mid-export); a live one's is left alone."""
  for tmp in base.glob(TMP_PREFIX + "*"):
    pid = tmp.name[len(TMP_PREFIX):].split("-")[0]
    if not pid.isdigit():
      continue
    try:
      os.kill(int(pid), 0)
    except ProcessLookupError:
      shutil.rmtree(tmp, ignore_errors=True)
    except PermissionError:
      pass  # another user's live process
