"""MultiWorkerMirroredStrategy for real: two `python -m tfft.train` processes on 127.0.0.1 fine-tune the tiny model.

Both get the same flags but --task_index. Only the chief (worker 0) may leave outputs; the other writes to a
temporary dir (under its TMPDIR here) that must be gone at the end. The result must match the single-worker
tiny_run (same flags, same seed): the global batch is the same 8 examples, split 4 and 4 across the workers.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, tiny_flags


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _history(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _launch(args, tmp_path, tag, *, env_for=lambda index: {}):
  """Starts the 2 workers of one job (the same flags but --task_index), each with its own TMPDIR."""
  procs, scratch = [], []
  for index in range(2):
    scratch.append(tmp_path / f"tmpdir-{tag}{index}")
    scratch[-1].mkdir()
    env = {**os.environ, "TMPDIR": str(scratch[-1]), **env_for(index)}
    procs.append(subprocess.Popen([sys.executable, "-m", "tfft.train", *map(str, args), f"--task_index={index}"],
                                  cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  return procs, scratch


def _wait(procs, timeout=480):
  deadline = time.monotonic() + timeout  # a hung collective must fail the test, not hang the suite
  outputs = []
  for proc in procs:
    try:
      outputs.append(proc.communicate(timeout=max(1, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      pytest.fail(f"the 2-worker job did not finish in {timeout} s")
  return outputs


def _args(tiny_bert_preset, tiny_textdir, tmp_path, **overrides):
  hosts = ",".join(f"127.0.0.1:{port}" for port in _free_ports(2))
  # The head phase as the shared tiny run's (tests/conftest.py tiny_run), which the uninterrupted job is compared
  # with; the killed-and-resumed job is compared with the uninterrupted one, so it takes the same.
  overrides.setdefault("head_min_steps", 10)
  return tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path, eval_windows=2, strategy="multi_worker_mirrored",
                    worker_hosts=hosts, **overrides)


@pytest.fixture(scope="module")
def two_workers(tiny_bert_preset, tiny_textdir, tmp_path_factory):
  """One uninterrupted 2-worker job: (tmp dir, [(stdout, stderr)] per worker, the TMPDIR of each)."""
  tmp = tmp_path_factory.mktemp("two_workers")
  procs, scratch = _launch(_args(tiny_bert_preset, tiny_textdir, tmp), tmp, "a")
  outputs = _wait(procs)
  for proc, (_, err) in zip(procs, outputs):
    assert proc.returncode == 0, err[-3000:]
  return tmp, outputs, scratch


def test_two_workers_train_and_only_the_chief_writes(two_workers, tiny_run):
  single, _ = tiny_run
  tmp_path, outputs, scratch = two_workers
  for _, err in outputs:
    assert "Strategy with 2 replica(s)" in err  # the class is CollectiveAllReduceStrategy

  # Only the chief's outputs: one export version, one run dir; the worker's own dir and temporary dir are gone.
  assert sorted(p.name for p in (tmp_path / "exports" / "tiny").iterdir()) == ["1"]
  assert (tmp_path / "run" / "metrics.json").exists()
  assert not (tmp_path / "run.worker-1").exists(), "the finished worker left its run dir behind"
  assert list(scratch[1].iterdir()) == [], "the worker left its temporary outputs behind"
  assert f"export:   {tmp_path / 'exports' / 'tiny' / '1'}" in outputs[0][0]

  # The same training as the single-worker run with the same flags. The head phase (cached features, no dropout
  # on them) matches closely; in the full fine-tune each replica draws its own dropout masks, so the curves
  # drift apart a little (measured: val_loss 0.61 vs 0.53 after one epoch, then 0.38 vs 0.35).
  for phase, tolerance in (("head", 0.05), ("finetune", 0.3)):
    ref = _history(single / "run" / f"history_{phase}.csv")
    got = _history(tmp_path / "run" / f"history_{phase}.csv")
    assert len(got) == len(ref)
    for a, b in zip(ref, got):
      assert float(b["val_loss"]) == pytest.approx(float(a["val_loss"]), rel=tolerance), (phase, a["epoch"])
  ref = json.loads((single / "run" / "metrics.json").read_text())
  got = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert abs(got["accuracy"] - ref["accuracy"]) <= 0.1  # 12 test examples: at most one differs


def test_a_killed_worker_job_restarts_and_resumes_to_the_same_result(two_workers, tiny_bert_preset, tiny_textdir,
                                                                       tmp_path):
  """Worker 1 is killed inside phase 2's second epoch (the chief then waits in a collective and is killed too, as
  a cluster manager would); the same job started again resumes on both workers after phase 2's first epoch,
  finishes, and ends with the uninterrupted job's history and metrics, bit for bit."""
  reference, _, _ = two_workers
  args, marker = _args(tiny_bert_preset, tiny_textdir, tmp_path), tmp_path / "paused"
  pause = {"TFFT_TEST_PAUSE_AT": "batch:finetune:1:1", "TFFT_TEST_PAUSE_MARKER": str(marker)}
  procs, _ = _launch(args, tmp_path, "k", env_for=lambda index: pause if index == 1 else {})
  deadline = time.monotonic() + 480
  while not marker.exists():
    if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
      for p in procs:
        p.kill()
      pytest.fail(f"worker 1 never reached its pause point: {[p.communicate()[1][-1500:] for p in procs]}")
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGKILL)
  time.sleep(1)
  procs[0].send_signal(signal.SIGKILL)
  for p in procs:
    p.communicate()
  assert (tmp_path / "run.worker-1" / "backup" / "finetune").is_dir()  # the worker's own committed epoch

  # Fresh ports (the old ones may linger); --worker_hosts is not an option a resume must repeat.
  procs, _ = _launch(_args(tiny_bert_preset, tiny_textdir, tmp_path), tmp_path, "r")
  outputs = _wait(procs)
  for proc, (_, err) in zip(procs, outputs):
    assert proc.returncode == 0, err[-3000:]
    assert "phase head finished in an earlier run" in err and "phase finetune: resuming after epoch 1 of 2" in err
  # Every epoch, the resumed one included, is the uninterrupted job's: each replica takes the same slice of the
  # same global batches wherever the job's data stream starts.
  for phase in ("head", "finetune"):
    ref = _history(reference / "run" / f"history_{phase}.csv")
    got = _history(tmp_path / "run" / f"history_{phase}.csv")
    assert [r["epoch"] for r in got] == [r["epoch"] for r in ref]
    for a, b in zip(ref, got):
      for key in ("loss", "val_loss", "learning_rate", "accuracy", "val_accuracy"):
        assert b[key] == a[key], (phase, a["epoch"], key)
  ref = json.loads((reference / "run" / "metrics.json").read_text())
  got = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert got["accuracy"] == ref["accuracy"] and got["confusion_matrix"] == ref["confusion_matrix"]
  assert sorted(p.name for p in (tmp_path / "exports" / "tiny").iterdir()) == ["1"]
  assert not (tmp_path / "run.worker-1").exists()
