"""Resume after kill -9 and SIGTERM: one tiny text run is interrupted at every stage and re-run until it finishes.

The run is stopped with SIGKILL mid phase 1 (an epoch logged but not committed), at the phase boundary (phase 1
fitted, its final weights not yet saved), mid phase 2, during evaluation and during the export (a complete
SavedModel written under its temporary name, not yet renamed), and with SIGTERM mid phase 2. The test hook
TFFT_TEST_PAUSE_AT (tfft/testhooks.py) holds the process at each point, so the kill lands there every time.
After each interruption the same command is re-run. The finished run must match an uninterrupted run with the
same seed epoch by epoch: same losses and learning rates (so weights, optimizer state, schedule position and data
order were all restored), each epoch logged once, one export.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_tfft, tiny_flags

# (how, where): the interruptions, in the order the run reaches them.
INTERRUPTIONS = [
    ("kill", "epoch_end:head:1"),       # mid phase 1: epoch 1 logged to the CSV, not committed
    ("kill", "phase_fitted:head"),      # the phase boundary
    ("term", "epoch_end:finetune:0"),   # SIGTERM: finishes and commits epoch 0, exits 143
    ("kill", "epoch_end:finetune:1"),   # mid phase 2
    ("kill", "evaluate"),               # during evaluation
    ("kill", "export"),                 # during the export
]


def _start(args, marker, point):
  env = {**os.environ, "TFFT_TEST_PAUSE_AT": point, "TFFT_TEST_PAUSE_MARKER": str(marker)}
  return subprocess.Popen([sys.executable, "-m", "tfft.train", *map(str, args)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _interrupt(args, marker, how, point, timeout=300):
  """Runs train until it pauses at `point`, then SIGKILLs it, or SIGTERMs it and lets it go on; returns (rc, err)."""
  marker.unlink(missing_ok=True)
  proc = _start(args, marker, point)
  deadline = time.monotonic() + timeout
  while not marker.exists():
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      out, err = proc.communicate()
      pytest.fail(f"never reached {point} (rc {proc.returncode}): {err[-3000:]}")
    time.sleep(0.1)
  if how == "kill":
    proc.send_signal(signal.SIGKILL)
  else:
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # let the handler run before the hook releases the process
    marker.unlink()
  _, err = proc.communicate(timeout=timeout)
  return proc.returncode, err


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
  args, marker = flags("interrupted"), tmp / "paused"
  stages = []
  for how, point in INTERRUPTIONS:
    rc, err = _interrupt(args, marker, how, point)
    export_base = tmp / "interrupted" / "exports" / "tiny"
    versions = sorted(p.name for p in export_base.iterdir()) if export_base.is_dir() else []
    stages.append({"how": how, "point": point, "rc": rc, "stderr": err, "export_base": versions})
  final = run_tfft("train", args)
  return tmp, reference, stages, final


def test_interrupted_run_finishes(runs):
  _, _, stages, final = runs
  assert [s["rc"] for s in stages] == [-9, -9, 143, -9, -9, -9], [s["stderr"][-1500:] for s in stages]
  assert final.returncode == 0, final.stderr[-3000:]
  term = stages[2]["stderr"]
  stopped = [line for line in term.splitlines() if line.startswith("tfft.train: stopped:")]
  assert len(stopped) == 1 and "after epoch 1 of 2 of phase finetune" in stopped[0] and "re-run" in stopped[0], term[-2000:]


def test_each_rerun_resumes_where_the_last_one_stopped(runs):
  _, _, stages, final = runs
  # stderr of the run after each interruption: what it resumed from.
  reruns = [s["stderr"] for s in stages[1:]] + [final.stderr]
  assert "phase head: resuming after epoch 1 of 2" in reruns[0]
  assert "phase head: resuming after epoch 2 of 2" in reruns[1]        # fitted, not saved: no epoch redone
  assert "phase head finished in an earlier run" in reruns[2]
  assert "phase finetune: resuming after epoch 1 of 2" in reruns[2]    # the SIGTERM checkpoint
  assert "phase finetune: resuming after epoch 1 of 2" in reruns[3]    # killed before epoch 2 was committed
  for err in reruns[4:]:  # evaluation and export reruns train nothing
    assert "phase head finished in an earlier run" in err and "phase finetune finished in an earlier run" in err
    assert "Epoch 1/" not in err and "Epoch 2/" not in err


def test_no_epoch_ran_twice_and_results_match_the_uninterrupted_run(runs):
  tmp, _, _, _ = runs
  for phase in ("head", "finetune"):
    ref = _history(tmp / "reference" / "run" / f"history_{phase}.csv")
    got = _history(tmp / "interrupted" / "run" / f"history_{phase}.csv")
    assert [r["epoch"] for r in got] == ["0", "1"], got
    for a, b in zip(ref, got):
      for key in ("loss", "val_loss", "learning_rate", "accuracy", "val_accuracy"):
        assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-3, abs=1e-4), (phase, a["epoch"], key)
  ref = json.loads((tmp / "reference" / "run" / "metrics.json").read_text())
  got = json.loads((tmp / "interrupted" / "run" / "metrics.json").read_text())
  for key in ("accuracy", "macro_f1"):
    assert got[key] == pytest.approx(ref[key], abs=0.02)
  state = json.loads((tmp / "interrupted" / "run" / "run_state.json").read_text())
  assert state["finished"] and [state["phases"][p]["epochs_run"] for p in ("head", "finetune")] == [2, 2]
  assert not (tmp / "interrupted" / "run" / "backup" / "head").exists()


def test_a_kill_during_export_leaves_only_complete_versions(runs):
  tmp, _, stages, final = runs
  # Killed after the SavedModel was complete under its temporary name: no version dir exists yet.
  assert stages[-1]["point"] == "export"
  assert [v for v in stages[-1]["export_base"] if not v.startswith(".tmp-")] == []
  assert len(stages[-1]["export_base"]) == 1
  base = tmp / "interrupted" / "exports" / "tiny"
  # The re-run published version 1 and removed the dead process's temporary dir.
  assert sorted(p.name for p in base.iterdir()) == ["1"]
  for name in ("saved_model.pb", "variables", "assets.extra/tfft.json", "assets.extra/labels.txt"):
    assert (base / "1" / name).exists(), name


def test_a_finished_run_is_not_clobbered(runs):
  tmp, _, _, _ = runs
  args = tiny_flags(None, None, tmp / "interrupted")  # only --model_dir matters: it fails before the data
  before = sorted(str(p) for p in (tmp / "interrupted").rglob("*"))
  proc = run_tfft("train", [a for a in args if a.startswith("--model_dir")] + ["--dataset=textdir:/nonexistent"])
  assert proc.returncode == 2 and "holds a finished run; pass --overwrite" in proc.stderr, proc.stderr[-2000:]
  assert sorted(str(p) for p in (tmp / "interrupted").rglob("*")) == before


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
