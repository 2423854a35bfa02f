"""The commands' stderr filter: TensorFlow's C++ start-up notes are dropped, every other line passes, in order."""

import os
import subprocess
import sys
import textwrap

from conftest import REPO

_CHILD = textwrap.dedent("""
    import os, sys
    from tfft import startup
    startup.hide_startup_notes()
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796113963.443415    8935 port.cc:153] oneDNN custom operations are on. You may see slightly",
        "I0000 00:00:1796113963.443709    8935 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
        "tfft line 1",
        "E0000 00:00:1796113964.922396    8935 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        "E0000 00:00:1796113964.922396    8935 some_op.cc:52] a real error from TensorFlow",
        "I0000 00:00:1796113964.922396    8935 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
    ]
    os.write(2, ("\\n".join(lines[:4]) + "\\n").encode())  # as C++ writes: straight to fd 2
    print(lines[4], file=sys.stderr)
    print(lines[5], file=sys.stderr)
    os.write(2, ("\\n".join(lines[6:]) + "\\n").encode())
    print("tfft line 2", file=sys.stderr)
    print("stdout is untouched")
""")


def test_startup_notes_are_dropped_and_everything_else_kept():
  proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, cwd=REPO, timeout=60)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout == "stdout is untouched\n"
  kept = proc.stderr.splitlines()
  assert kept[0] == "tfft line 1" and kept[-1] == "tfft line 2"
  assert any("a real error from TensorFlow" in line for line in kept)
  # On a machine with an NVIDIA driver the two CUDA lines are real news and are kept.
  assert len(kept) == (5 if os.path.exists("/dev/nvidiactl") else 3), kept


def test_the_filter_can_be_turned_off():
  proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, cwd=REPO, timeout=60,
                        env={**os.environ, "TFFT_SHOW_STARTUP_LOGS": "1"})
  assert proc.returncode == 0 and "oneDNN custom operations are on" in proc.stderr
