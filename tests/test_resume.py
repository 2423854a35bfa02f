"""Resume after kill -9, SIGTERM and Ctrl-C: a tiny text run is interrupted at points spread over the whole run and
re-run until it finishes; the result must equal an uninterrupted run with the same seed, bit for bit.

Two interrupted runs share one uninterrupted reference. The first is killed (SIGKILL) inside the first epoch of
phase 1 before its step is traced, when phase 1's last epoch is logged but not committed, in the window after the
phase boundary is committed and before phase 2 has run a step, inside the first epoch of phase 2 after tracing
(steps ran, nothing of the phase committed), during evaluation and during the export. The second gets SIGTERM in
the last epoch of phase 1, and Ctrl-C (SIGINT) mid phase 2 and during evaluation: each stops at the next safe point
with one line and exit 143 or 130, and the re-run resumes. (A kill before phase 2's first step and a SIGTERM in
phase 2's last epoch leave the same state and take the same code path as the kill after its third step and the
SIGTERM in phase 1's last epoch: they are not repeated.) The test hook TFFT_TEST_PAUSE_AT (tfft/testhooks.py)
holds the process at each point, so the signal lands there every time. While the first run is held, a second
train and an export on the same run dir must fail at once on its lock.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, run_tfft, tiny_flags

KILLS = [
    ("kill", "batch:head:0:0"),         # phase 1's first step, before it is traced
    ("kill", "epoch_end:head:1"),       # phase 1's last epoch logged, not committed
    ("kill", "phase_committed:head"),   # the phase boundary committed, phase 2 not started
    ("kill", "batch:finetune:0:2"),     # inside phase 2's first epoch, after tracing
    ("kill", "evaluate"),               # during evaluation
    ("kill", "export"),                 # a complete SavedModel under its temporary name, not yet renamed
]
SIGNALS = [
    ("term", "epoch_end:head:1"),       # the last epoch of phase 1: stops after the phase boundary
    ("int", "epoch_end:finetune:0"),    # Ctrl-C mid phase 2: stops after committing the epoch
    ("int", "evaluate"),                # Ctrl-C while scoring: stops before the export is published
]
SEND = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}
# Every column of the per-epoch history but the timings.
COMPARED = ("loss", "val_loss", "learning_rate", "accuracy", "val_accuracy")


def _start(args, marker, point):
  env = {**os.environ, "TFFT_TEST_PAUSE_AT": point, "TFFT_TEST_PAUSE_MARKER": str(marker)}
  return subprocess.Popen([sys.executable, "-m", "tfft.train", *map(str, args)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _interrupt(args, marker, how, point, *, while_held=None, timeout=300):
  """Runs train until it pauses at `point`, calls `while_held()`, then sends the signal (a signalled process is
  released to go on to its next safe point); returns (returncode, stderr, what while_held returned)."""
  marker.unlink(missing_ok=True)
  proc = _start(args, marker, point)
  deadline = time.monotonic() + timeout
  while not marker.exists():
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      _, err = proc.communicate()
      pytest.fail(f"never reached {point} (rc {proc.returncode}): {err[-3000:]}")
    time.sleep(0.1)
  held = while_held() if while_held else None
  proc.send_signal(SEND[how])
  if how != "kill":
    time.sleep(0.5)  # let the handler run before the hook releases the process
    marker.unlink()
  _, err = proc.communicate(timeout=timeout)
  return proc.returncode, err, held


def _history(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tiny_bert_preset, tiny_textdir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("resume")
  flags = lambda name: tiny_flags(tiny_bert_preset, tiny_textdir, tmp / name, head_epochs=2, epochs=2,
                                  early_stopping_patience=3)
  reference = run_tfft("train", flags("reference"))
  assert reference.returncode == 0, reference.stderr[-3000:]
  out = {"tmp": tmp, "reference": reference}
  for name, interruptions in (("killed", KILLS), ("signalled", SIGNALS)):
    args, marker = flags(name), tmp / f"{name}.paused"
    stages = []
    for i, (how, point) in enumerate(interruptions):
      held = None
      if name == "killed" and i == 0:  # the run dir is locked while the first process holds it
        held = lambda: (run_tfft("train", args), run_tfft("export", [f"--model_dir={tmp / name / 'run'}"]))
      rc, err, second = _interrupt(args, marker, how, point, while_held=held)
      export_base = tmp / name / "exports" / "tiny"
      versions = sorted(p.name for p in export_base.iterdir()) if export_base.is_dir() else []
      stages.append({"how": how, "point": point, "rc": rc, "stderr": err, "export_base": versions, "second": second})
    out[name] = (stages, run_tfft("train", args))
  return out


def test_every_interrupted_run_finishes(runs):
  for name, codes in (("killed", [-9] * len(KILLS)), ("signalled", [143, 130, 130])):
    stages, final = runs[name]
    assert [s["rc"] for s in stages] == codes, [s["stderr"][-1500:] for s in stages]
    assert final.returncode == 0, final.stderr[-3000:]


def test_signals_stop_at_the_next_safe_point_with_one_line(runs):
  stages, _ = runs["signalled"]
  expected = ["SIGTERM: stopped after phase head, committed in", "SIGINT: stopped after epoch 1 of 2 of phase finetune",
              "SIGINT: stopped after training and scoring, before publishing the export"]
  for stage, phrase in zip(stages, expected):
    err = stage["stderr"]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    stopped = [line for line in err.splitlines() if line.startswith("tfft.train: stopped:")]
    assert len(stopped) == 1 and phrase in stopped[0] and "re-run the same command" in stopped[0], err[-2000:]
    assert err.rstrip().splitlines()[-1] == stopped[0]
  assert len(stages) == len(expected) and stages[-1]["export_base"] == []  # nothing was published before the stop


def test_a_locked_run_dir_refuses_a_second_train_and_an_export(runs):
  stages, _ = runs["killed"]
  train, export = stages[0]["second"]
  for proc, prog in ((train, "tfft.train"), (export, "tfft.export")):
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.rstrip().splitlines()[-1]
    assert line.startswith(f"{prog}: error: --model_dir=") and "is in use by process " in line, line
  assert stages[1]["rc"] == -9  # the first process went on


def test_each_rerun_resumes_where_the_last_one_stopped(runs):
  stages, final = runs["killed"]
  reruns = [s["stderr"] for s in stages[1:]] + [final.stderr]
  assert "phase head: resuming" not in reruns[0]                      # killed before any epoch was committed
  assert "phase head: resuming after epoch 1 of 2" in reruns[1]
  assert "phase head finished in an earlier run" in reruns[2]
  assert "phase finetune: resuming" not in reruns[2] and "phase finetune: resuming" not in reruns[3]
  assert len(reruns) == 6
  for err in reruns[4:]:  # evaluation and export reruns train nothing
    assert "phase head finished in an earlier run" in err and "phase finetune finished in an earlier run" in err
    assert "Epoch 1/" not in err and "Epoch 2/" not in err


@pytest.mark.parametrize("name", ["killed", "signalled"])
def test_results_equal_the_uninterrupted_run_bit_for_bit(runs, name):
  tmp = runs["tmp"]
  for phase in ("head", "finetune"):
    ref = _history(tmp / "reference" / "run" / f"history_{phase}.csv")
    got = _history(tmp / name / "run" / f"history_{phase}.csv")
    assert [r["epoch"] for r in got] == ["0", "1"], got  # each epoch logged once
    assert [{k: r[k] for k in COMPARED} for r in got] == [{k: r[k] for k in COMPARED} for r in ref], phase
  ref = json.loads((tmp / "reference" / "run" / "metrics.json").read_text())
  got = json.loads((tmp / name / "run" / "metrics.json").read_text())
  for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "baseline"):
    assert got[key] == ref[key], key
  state = json.loads((tmp / name / "run" / "run_state.json").read_text())
  assert state["finished"] and [state["phases"][p]["epochs_run"] for p in ("head", "finetune")] == [2, 2]
  assert not (tmp / name / "run" / "backup" / "head").exists()


def test_a_kill_during_export_leaves_only_complete_versions(runs):
  tmp, (stages, _) = runs["tmp"], runs["killed"]
  # Killed after the SavedModel was complete under its temporary name: no version dir exists yet.
  assert stages[-1]["point"] == "export"
  assert [v for v in stages[-1]["export_base"] if not v.startswith(".tmp-")] == []
  assert len(stages[-1]["export_base"]) == 1
  base = tmp / "killed" / "exports" / "tiny"
  # The re-run published version 1 and removed the dead process's temporary dir.
  assert sorted(p.name for p in base.iterdir()) == ["1"]
  for name in ("saved_model.pb", "variables", "assets.extra/tfft.json", "assets.extra/labels.txt"):
    assert (base / "1" / name).exists(), name


def test_a_finished_run_is_not_clobbered(runs):
  tmp = runs["tmp"]
  args = tiny_flags(None, None, tmp / "killed")  # only --model_dir matters: it fails before the data
  before = sorted(str(p) for p in (tmp / "killed").rglob("*"))
  proc = run_tfft("train", [a for a in args if a.startswith("--model_dir")] + ["--dataset=textdir:/nonexistent"])
  assert proc.returncode == 2 and "holds a finished run; pass --overwrite" in proc.stderr, proc.stderr[-2000:]
  assert sorted(str(p) for p in (tmp / "killed").rglob("*")) == before


def test_nan_fails_the_run_keeps_the_checkpoint_and_exports_nothing(tiny_bert_preset, tiny_textdir, tmp_path):
  proc = run_tfft("train", tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path, head_epochs=3,
                                      head_learning_rate=1e30, epochs=1))
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  failed = [line for line in proc.stderr.splitlines() if line.startswith("tfft.train: failed:")]
  assert len(failed) == 1, proc.stderr[-2000:]
  assert "phase head diverged" in failed[0] and "lower --head_learning_rate (it is 1e+30)" in failed[0]
  assert "nothing was exported" in failed[0]
  assert not (tmp_path / "exports").exists()
  assert not (tmp_path / "run" / "checkpoints" / "after_head.weights.h5").exists()
  # No NaN epoch reached the history or the backup.
  rows = _history(tmp_path / "run" / "history_head.csv") if (tmp_path / "run" / "history_head.csv").exists() else []
  assert all(float(r["loss"]) == float(r["loss"]) for r in rows)


def test_a_second_ctrl_c_stops_at_once_also_after_a_sigterm():
  """The first signal is noted for the next safe point (and decides the exit code); a second Ctrl-C interrupts at
  once, whether the first signal was a Ctrl-C or a SIGTERM."""
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers can only be installed from the main thread")
  from tfft.fit.callbacks import StopRequest  # pylint: disable=g-import-not-at-top
  for first in (signal.SIGINT, signal.SIGTERM):
    stop = StopRequest()
    with stop.installed():
      os.kill(os.getpid(), first)
      if first == signal.SIGTERM:
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C is noted like any signal
      assert stop.signum == first
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs in the main thread between bytecodes: at the latest, here
