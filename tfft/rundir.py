"""The run directory in one place: its file names, the run state, reading a run back, the resume check, and the one
atomic write that every file tfft writes goes through."""

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import os
import pathlib
import shutil
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfft import config as config_lib
from tfft.data.split import SPLITS
from tfft.errors import UserError
from tfft.files import write_atomically, write_json

FLAGFILE = "flags.cfg"
STATE = "run_state.json"
LABELS = "labels.txt"
MANIFEST = "split_manifest.csv"
METRICS = "metrics.json"
BACKBONE_WEIGHTS = "backbone.weights.h5"
LOCK = ".lock"  # held (flock) by the one process that trains or exports into the run dir
def write_labels(path: pathlib.Path, class_names: Sequence[str]):
  """labels.txt: one class name a line, in the order of the model's outputs."""
  write_atomically(path, "".join(f"{name}\n" for name in class_names))


def read_labels(path: pathlib.Path) -> List[str]:
  return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_manifest(path: pathlib.Path, ids: Sequence[str], labels: Sequence[str], split: Dict[str, np.ndarray],
                   duplicate_of: Optional[Sequence[str]] = None):
  """Writes which example went to which split, one row per example: id,label,split ("unused" if in none), and with
  `duplicate_of` a 4th column: the id of the first example with the same text, empty for a first or unique one."""
  where = {int(i): name for name in SPLITS for i in split[name]}
  out = io.StringIO(newline="")
  writer = csv.writer(out)
  extra = [] if duplicate_of is None else [duplicate_of]
  writer.writerow(["id", "label", "split"] + ["duplicate_of"] * len(extra))
  for i, (example_id, label) in enumerate(zip(ids, labels)):
    writer.writerow([example_id, label, where.get(i, "unused")] + [column[i] for column in extra])
  write_atomically(path, out.getvalue())


def read_manifest(path: pathlib.Path) -> Dict[str, str]:
  """Reads write_manifest's file back: example id -> split name."""
  with path.open(newline="", encoding="utf-8") as f:
    return {row["id"]: row["split"] for row in csv.DictReader(f)}


@dataclasses.dataclass
class PhaseResult:
  """What one phase did: parameters it trained and kept frozen, epochs run, and its best monitored value."""
  name: str
  trainable_params: int
  frozen_params: int
  epochs_run: int
  monitor: str
  best: Optional[float]
  history: Dict[str, List[float]]
  seconds: float = 0.0  # wall time, including the feature-cache pass the phase needed
  # The RNG states of the model's random layers (dropout, augmentation) at the phase's end, which weight files leave
  # out: the next phase starts from them whether it follows at once or in a re-run.
  seed_states: List = dataclasses.field(default_factory=list)
  freeze: str = ""  # the phase's freezing policy, as --freeze writes it ("" in runs written before it was kept)
  planned_epochs: int = 0  # the epochs the phase was planned with, the data's size considered (0: unknown)


class RunDir:
  """The paths of one run directory. Nothing here writes; the job and the phases do, through write_atomically."""

  def __init__(self, path):
    self.path = pathlib.Path(path).expanduser()

  @property
  def flagfile(self) -> pathlib.Path:
    return self.path / FLAGFILE

  @property
  def labels(self) -> pathlib.Path:
    return self.path / LABELS

  @property
  def manifest(self) -> pathlib.Path:
    return self.path / MANIFEST

  @property
  def metrics(self) -> pathlib.Path:
    return self.path / METRICS

  @property
  def backbone_weights(self) -> pathlib.Path:
    return self.path / BACKBONE_WEIGHTS

  def after(self, phase: str) -> pathlib.Path:
    """The whole model's weights at the end of a phase (its best validation epoch): the next phase starts here."""
    return self.path / "checkpoints" / f"after_{phase}.weights.h5"

  def best(self, phase: str) -> pathlib.Path:
    """The weights of what a phase fits (the head alone when cached) at its best validation epoch so far."""
    return self.path / "checkpoints" / f"best_{phase}.weights.h5"

  def history(self, phase: str) -> pathlib.Path:
    return self.path / f"history_{phase}.csv"

  def backup(self, phase: str) -> pathlib.Path:
    """Where an unfinished phase keeps its last committed epoch (see tfft.fit.callbacks.EpochBackup)."""
    return self.path / "backup" / phase

  def logs(self, phase: str) -> pathlib.Path:
    return self.path / "logs" / phase

  def is_run(self) -> bool:
    return any((self.path / name).exists() for name in (FLAGFILE, STATE, LOCK))

  def state(self) -> "RunState":
    return RunState(self.path / STATE)


class RunState:
  """Which phases of a run have finished and where its export went: run_state.json, so a re-run skips them."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    self.data = json.loads(path.read_text()) if path.exists() else {"phases": {}, "finished": False}

  def phase_result(self, name: str) -> Optional[PhaseResult]:
    found = self.data["phases"].get(name)
    return PhaseResult(**found) if found else None

  def mark_phase(self, result: PhaseResult):
    self.data["phases"][result.name] = dataclasses.asdict(result)
    write_json(self.path, self.data)

  def mark_finished(self, export_path: str):
    self.data.update(finished=True, export_path=export_path)
    write_json(self.path, self.data)

  @property
  def finished(self) -> bool:
    return bool(self.data.get("finished"))

  @property
  def export_path(self) -> Optional[str]:
    return self.data.get("export_path")


def _in_use(run_dir: "RunDir", flag: str) -> UserError:
  """The error for a run dir whose lock another process holds, naming that process (its pid is in the file)."""
  try:
    holder = f"process {(run_dir.path / LOCK).read_text().split()[0]}"
  except (OSError, IndexError):
    holder = "another process"
  return UserError(f"--{flag}={run_dir.path} is in use by {holder} (a tfft.train or tfft.export running on it); "
                   "wait for it to finish, or stop it and re-run to resume")


def check_unlocked(run_dir: RunDir, flag: str = "model_dir"):
  """Raises UserError, touching nothing, if another process holds the run dir's lock (see lock)."""
  path = run_dir.path / LOCK
  if not path.is_file():
    return
  with open(path, "rb") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise _in_use(run_dir, flag) from None
    fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def lock(run_dir: RunDir, flag: str = "model_dir"):
  """Holds the run dir's lock while the block runs: one process trains or exports into a run dir at a time.

  An flock on RUN_DIR/.lock, which the kernel releases when the process ends, however it ends, so a killed run
  leaves no stale lock. The file holds the holder's process id, for the error the next process prints.

  Raises:
    UserError: if another process holds it.
  """
  path = run_dir.path / LOCK
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise _in_use(run_dir, flag) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    yield
  finally:
    os.close(fd)  # releases the lock


def check_model_dir(config: config_lib.Config) -> RunDir:
  """Checks the run directory without touching it, so a bad run leaves nothing behind.

  Raises:
    UserError: if the path is a file; holds a finished run without --overwrite; holds files that are not a tfft
      run; or holds an interrupted run whose split, model or data order options differ from these.
  """
  run = config.run
  run_dir = RunDir(run.model_dir)
  path = run_dir.path
  if path.exists() and not path.is_dir():
    raise UserError(f"--model_dir={run.model_dir} is a file; name a directory")
  if not path.is_dir():
    return run_dir
  if not run_dir.is_run() and any(path.iterdir()):
    raise UserError(f"--model_dir={run.model_dir} holds files that are not a tfft run; choose a new or empty "
                    "directory, so that nothing there is overwritten")
  check_unlocked(run_dir)
  if run.overwrite:
    return run_dir
  if run_dir.state().finished:
    raise UserError(f"--model_dir={run.model_dir} holds a finished run; pass --overwrite to start afresh or "
                    "choose another --model_dir")
  if run_dir.flagfile.is_file():
    before = config_lib.from_flag_lines(run_dir.flagfile.read_text().splitlines(), where=str(run_dir.flagfile))
    for section, field in config_lib.options():
      if not field.metadata["resume"]:
        continue
      old, new = (getattr(getattr(c, section), field.name) for c in (before, config))
      if old != new:
        raise UserError(f"--model_dir={run.model_dir} holds an interrupted run started with --{field.name}="
                        f"{config_lib.option_text(old)} (now {config_lib.option_text(new)}); re-run with "
                        f"--flagfile={run_dir.flagfile} to resume it, or pass --overwrite to start afresh, or "
                        "choose another --model_dir")
  return run_dir


def create_model_dir(run_dir: RunDir, run: config_lib.RunConfig):
  """Creates the run directory, clearing an earlier run first when --overwrite asks for it.

  Raises:
    UserError: if it cannot be created or written.
  """
  path = run_dir.path
  if run.overwrite and path.is_dir() and run_dir.is_run():
    shutil.rmtree(path)  # only a tfft run dir (check_model_dir refuses others), finished or interrupted
  try:
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"--model_dir={run.model_dir}: cannot create it ({e.strerror}); choose a writable path") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise UserError(f"--model_dir={run.model_dir} is not writable; choose a writable path")


def check_export_base(run: config_lib.RunConfig) -> pathlib.Path:
  """EXPORT_DIR/NAME, checked before anything runs: a file in the way would otherwise fail after training.

  Raises:
    UserError: if --export_dir or EXPORT_DIR/NAME is a file.
  """
  base = pathlib.Path(run.export_dir).expanduser()
  for path, flag in ((base, f"--export_dir={run.export_dir}"), (base / run.name, f"--export_dir/--name {base / run.name}")):
    if path.exists() and not path.is_dir():
      raise UserError(f"{flag} is a file; name a directory for the exports")
  return base / run.name


def write_labels_once(run_dir: RunDir, class_names: List[str]):
  """Writes labels.txt, or checks that the run being resumed had the same classes.

  Raises:
    UserError: if the run dir was started with other classes.
  """
  if run_dir.labels.exists() and read_labels(run_dir.labels) != class_names:
    raise UserError(f"--model_dir={run_dir.path} was started with other classes ({run_dir.labels}); use a new "
                    "--model_dir or --overwrite")
  write_labels(run_dir.labels, class_names)


@dataclasses.dataclass
class Run:
  """What a tfft.train run dir holds: its resolved config, labels.txt, the split manifest (None if missing)."""
  dir: RunDir
  config: config_lib.Config
  class_names: List[str]
  manifest: Optional[Dict[str, str]]
  state: RunState

  @property
  def path(self) -> pathlib.Path:
    return self.dir.path


def load_run(value: str, flag: str = "model_dir") -> Run:
  """Reads a run dir back.

  Raises:
    UserError: if `value` is not a tfft.train run dir, or its flags.cfg was written by another version of tfft.
  """
  run_dir = RunDir(value)
  if not run_dir.flagfile.is_file() or not run_dir.labels.is_file():
    raise UserError(f"--{flag}={value} is not a tfft run dir (no {FLAGFILE} and {LABELS}); pass the "
                    "--model_dir that tfft.train wrote")
  config = config_lib.from_flag_lines(run_dir.flagfile.read_text().splitlines(), where=str(run_dir.flagfile))
  manifest = read_manifest(run_dir.manifest) if run_dir.manifest.is_file() else None
  return Run(run_dir, config, read_labels(run_dir.labels), manifest, run_dir.state())


def select_split(manifest: Dict[str, str], ids: Sequence[str], name: str, *, where: str) -> np.ndarray:
  """Indices into `ids` of the examples the manifest puts in split `name`.

  Raises:
    UserError: if some of them are not in `ids` (the dataset is not the one the run was trained on).
  """
  wanted = [example_id for example_id, split in manifest.items() if split == name]
  index = {example_id: i for i, example_id in enumerate(ids)}
  missing = [example_id for example_id in wanted if example_id not in index]
  if missing or not wanted:
    raise UserError(f"{where}: {len(missing)} of the {len(wanted)} examples the split manifest puts in {name} are "
                    f"not in this dataset (e.g. {missing[:1]}); use the dataset the run was trained on, or "
                    "--split=all")
  return np.array(sorted(index[example_id] for example_id in wanted), dtype=np.int64)
