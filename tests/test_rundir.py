"""The run directory: its files written atomically, read back the same, the resume check, and one-line disk errors."""

import csv
import os
import resource
import signal

import pytest

from tfft import files
from tfft import config as config_lib
from tfft import rundir
from tfft.data import split as split_lib
from tfft.data.text import sorted_class_names
from tfft.errors import UserError

LABELS = ["a", "b", "c"] * 10


def test_manifest_records_every_example_once(tmp_path):
  ids = [f"{label}/{i:03d}.txt" for i, label in enumerate(LABELS)]
  s = split_lib.stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=0)
  path = tmp_path / rundir.MANIFEST
  rundir.write_manifest(path, ids, LABELS, s)
  with path.open(newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["id"] for r in rows] == ids
  assert [r["label"] for r in rows] == LABELS
  for name in rundir.SPLITS:
    assert [i for i, r in enumerate(rows) if r["split"] == name] == s[name].tolist()
  assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.MANIFEST]  # No .tmp left behind.


def test_labels_round_trip_in_natural_order(tmp_path):
  names = sorted_class_names(["10", "2", "10", "2", "1"])
  assert names == ["1", "2", "10"]
  path = tmp_path / rundir.LABELS
  rundir.write_labels(path, names)
  assert path.read_text(encoding="utf-8") == "1\n2\n10\n"
  assert rundir.read_labels(path) == names
  assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.LABELS]


def test_labels_round_trip_unicode_and_spaces(tmp_path):
  names = sorted_class_names(["économie", "sci fi", "class 10", "class 9"])
  assert names == ["class 9", "class 10", "sci fi", "économie"]
  path = tmp_path / rundir.LABELS
  rundir.write_labels(path, names)
  assert rundir.read_labels(path) == names


def test_write_labels_replaces_an_older_file(tmp_path):
  path = tmp_path / rundir.LABELS
  rundir.write_labels(path, ["a", "b", "c"])
  rundir.write_labels(path, ["x", "y"])
  assert rundir.read_labels(path) == ["x", "y"]


def test_atomic_write_leaves_the_old_file_when_the_disk_refuses(tmp_path):
  """A real write failure (EFBIG past RLIMIT_FSIZE, as ENOSPC on a full disk), in a child process."""
  path = tmp_path / "state.json"
  files.write_atomically(path, "old")
  pid = os.fork()
  if pid == 0:  # the child hits the limit and reports by exit code
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
    try:
      files.write_atomically(path, "x" * 5000, what="checkpoint", hint="free disk space")
    except UserError as e:
      os._exit(0 if str(e).startswith(f"cannot write checkpoint {path} (") and "free disk space" in str(e) else 3)
    os._exit(4)
  _, status = os.waitpid(pid, 0)
  assert os.waitstatus_to_exitcode(status) == 0
  assert path.read_text() == "old"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temporary file left behind


def test_flag_lines_round_trip_every_option_without_absl():
  config = config_lib.Config(
      data=config_lib.DataConfig(dataset="csv:/data/my file.tsv", classes=("a", "b")),
      model=config_lib.ModelConfig(head_units=(64, 8), pooling="mean"),
      train=config_lib.TrainConfig(freeze=config_lib.Freeze("top_k", 2), cache_features=False, seed=3),
      report=config_lib.ReportConfig(min_metric=config_lib.parse_min_metric(["accuracy:0.5", "macro_f1:0.25"])))
  lines = config_lib.to_flag_lines(config)
  assert "--cache_features=false" in lines and "--freeze=top_k:2" in lines and "--head_units=64,8" in lines
  assert "--min_metric=accuracy:0.5,macro_f1:0.25" in lines
  assert config_lib.from_flag_lines(lines, where="x") == config
  assert config_lib.from_flag_lines(["--nocache_features", "--seed=3"], where="x").train.cache_features is False
  with pytest.raises(UserError, match="^flags.cfg: --no_such_option is not a tfft.train option"):
    config_lib.from_flag_lines(["--no_such_option=1"], where="flags.cfg")


def test_an_interrupted_run_resumes_only_with_its_split_and_model_options(tmp_path):
  config = config_lib.Config(run=config_lib.RunConfig(model_dir=str(tmp_path / "run")))
  run_dir = rundir.RunDir(tmp_path / "run")
  rundir.create_model_dir(run_dir, config.run)
  files.write_atomically(run_dir.flagfile, config_lib.to_flagfile(config))
  assert rundir.check_model_dir(config).path == run_dir.path
  import dataclasses  # pylint: disable=g-import-not-at-top
  other_lr = dataclasses.replace(config, train=dataclasses.replace(config.train, learning_rate=1e-3))
  rundir.check_model_dir(other_lr)  # not a resume option: the rest of the run may use another value
  other_seed = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=7))
  with pytest.raises(UserError, match="started with --seed=42 \\(now 7\\)"):
    rundir.check_model_dir(other_seed)
