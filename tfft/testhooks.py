"""Test hook: pause at a named point so that a test can kill or signal the process there (tests/test_resume.py).

With TFFT_TEST_PAUSE_AT=<point> (e.g. `epoch_end:head:0`, `phase_fitted:head`, `evaluate`, `export`) and
TFFT_TEST_PAUSE_MARKER=<file>, the process writes the point's name to the marker file on reaching that point and
waits there until the file is deleted (or the process is killed). Without TFFT_TEST_PAUSE_AT, which nothing but
the tests sets, `pause_point` returns at once and changes nothing.
"""

import os
import pathlib
import time


def pause_point(name: str):
  """Waits at `name` while TFFT_TEST_PAUSE_AT names it and the marker file exists; otherwise returns at once."""
  if os.environ.get("TFFT_TEST_PAUSE_AT") != name or not os.environ.get("TFFT_TEST_PAUSE_MARKER"):
    return
  marker = pathlib.Path(os.environ["TFFT_TEST_PAUSE_MARKER"])
  marker.write_text(name)
  while marker.exists():
    time.sleep(0.05)
