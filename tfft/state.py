"""Run state persisted in the model dir: which phases finished, so that a re-run resumes instead of redoing."""

import dataclasses
import json
import pathlib
from typing import Dict, List, Optional

STATE_FILE = "run_state.json"


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


class RunState:
  """Which phases of a run have finished, persisted in the model dir so that a re-run skips them."""

  def __init__(self, model_dir: pathlib.Path):
    self.path = model_dir / STATE_FILE
    self.data = json.loads(self.path.read_text()) if self.path.exists() else {"phases": {}, "finished": False}

  def phase_result(self, name: str) -> Optional[PhaseResult]:
    found = self.data["phases"].get(name)
    return PhaseResult(**found) if found else None

  def mark_phase(self, result: PhaseResult):
    self.data["phases"][result.name] = dataclasses.asdict(result)
    self._write()

  def mark_finished(self, export_path: str):
    self.data["finished"] = True
    self.data["export_path"] = export_path
    self._write()

  @property
  def finished(self) -> bool:
    return bool(self.data.get("finished"))

  def _write(self):
    tmp = self.path.with_name(self.path.name + ".tmp")
    tmp.write_text(json.dumps(self.data, indent=2))
    tmp.replace(self.path)
