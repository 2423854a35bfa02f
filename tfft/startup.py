"""The commands' stderr: TensorFlow's C++ start-up notes are dropped, so a run's output starts with tfft's own lines.

TensorFlow prints a few notes through C++ logging before Python can configure it (TF_CPP_MIN_LOG_LEVEL does not
reach them): that oneDNN is on, which CPU instructions it was built for, and on a machine without an NVIDIA
driver that CUDA cannot start ("E0000 … failed call to cuInit"), which reads as a failure. The commands route
stderr through a filter that drops exactly those known lines and passes every other line through unchanged, in
order. CUDA lines are dropped only when the machine has no NVIDIA device. TFFT_SHOW_STARTUP_LOGS=1 turns it off.
"""

import atexit
import os
import pathlib
import re
import sys
import threading

# The start-up notes, each a whole line; everything else passes.
_NOTES = [
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"[IW]\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\..*",
    r"I\d{4} [\d:.]+ +\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU .*",
    r"To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.",
    r"E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_INT64 only on platforms with AVX-512\..*",
]
_CUDA_NOTES = [
    r"I\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.",
    r"E\d{4} [\d:.]+ +\d+ cuda_(platform|executor)\.cc:\d+\] failed call to cuInit: .*",
]
_installed = False


def _pattern() -> "re.Pattern":
  notes = list(_NOTES)
  if not pathlib.Path("/dev/nvidiactl").exists():  # no NVIDIA driver: CUDA cannot start, and that is expected
    notes += _CUDA_NOTES
  return re.compile(rb"^(?:" + b"|".join(n.encode() for n in notes) + rb")\r?\n?$")


def hide_startup_notes():
  """Routes this process's stderr (fd 2) through the filter, until the process exits. Safe to call twice."""
  global _installed
  if _installed or os.environ.get("TFFT_SHOW_STARTUP_LOGS") == "1":
    return
  _installed = True
  notes = _pattern()
  sys.stderr.flush()
  real = os.dup(2)
  read, write = os.pipe()
  os.dup2(write, 2)
  os.close(write)

  def copy():
    with os.fdopen(read, "rb", buffering=0) as pipe, os.fdopen(real, "wb", buffering=0) as out:
      pending = b""
      while True:
        chunk = pipe.read(65536)
        if not chunk:
          break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out.write(b"".join(line + b"\n" for line in lines if not notes.match(line)))
      if pending and not notes.match(pending):
        out.write(pending)

  thread = threading.Thread(target=copy, name="tfft-stderr", daemon=True)
  thread.start()

  def restore():
    sys.stderr.flush()
    saved = os.dup(real)  # the copy thread closes `real` when it ends
    os.dup2(saved, 2)  # closes the pipe's write end, so the thread reads to the end and stops
    os.close(saved)
    thread.join(timeout=5)

  atexit.register(restore)
