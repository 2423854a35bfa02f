"""The members that most targets share; each kind's target overrides what it does its own way."""

from typing import Dict, List, Sequence, Tuple

import numpy as np

from tfft.serving import parity as parity_lib
from tfft.errors import UserError
from tfft.serving import loaded
from tfft.tasks.api import Targets


class TargetBase:
  """Defaults of the Target protocol (tfft.tasks.api.Target): the stratified split, nothing tuned on validation, no
  calibration, no per-example loss weights, and the served output compared as numbers."""
  writes_target_key = True
  own_split = False
  tunes_on_validation = False
  calibrates = False
  gates: Tuple[str, ...] = ()  # the metrics its report holds that --min_metric may gate on (its spec's)
  gates_note = ""  # what the gate error says of them, after "as gates"

  def check_gates(self, gates, targets: Targets) -> None:  # pylint: disable=unused-argument
    """Raises UserError for a --min_metric on a metric this target's report does not hold."""
    for name, threshold in gates:
      if name not in self.gates:
        raise UserError(f"--min_metric={name}:{threshold:g}: --task={self.name} reports {', '.join(self.gates)} as "
                        f"gates{self.gates_note}; gate on one of them")

  def monitor(self, value: str) -> str:
    """--monitor, with auto resolved to the first of `monitors`."""
    return self.monitors[0] if value == "auto" else value

  def split(self, targets: Targets, data, *, seed: int, groups=None):
    raise NotImplementedError(f"{type(self).__name__} splits on Targets.strata (own_split is False)")

  def tune(self, targets: Targets, val_logits: np.ndarray,  # pylint: disable=unused-argument
           val_values: np.ndarray) -> Targets:
    return targets

  def weighted_metrics(self) -> List:
    return []

  def log_line(self, targets: Targets) -> str:
    return ", ".join(targets.names)

  def check_parity(self, exported, data, in_process: np.ndarray, *, batch_size: int, atol: float) -> Dict:
    """The served `parity_output` against the in-process one, as numbers (scaled by a regression target's std)."""
    served = self.served_on_test(exported, data, batch_size=batch_size)
    scale = data.targets.info.get("std", 1.0) if data.targets is not None else 1.0
    return parity_lib.check_value_parity(served, in_process, output=self.parity_output, scale=scale, atol=atol)

  def served_on_test(self, exported, data, *, batch_size: int) -> np.ndarray:
    """The export's `parity_output` for the run's test inputs (a RunData), as TF Serving hands them over."""
    return exported.outputs(loaded.as_bytes(data.task, data.take("test")), batch_size=batch_size)[self.parity_output]

  def served_from_export(self, exported, inputs: Sequence, *, batch_size: int) -> np.ndarray:
    """What tfft.evaluate scores: the export's `parity_output` for the inputs, through serving_default."""
    feed = loaded.as_bytes(exported.task, inputs)
    if self.parity_output == "probabilities":
      return exported.probabilities(feed, batch_size=batch_size)
    return exported.outputs(feed, batch_size=batch_size)[self.parity_output]

  def score_export(self, inputs: Sequence, values, served, targets: Targets) -> Dict:  # pylint: disable=unused-argument
    """tfft.evaluate's metrics of the export's outputs on `inputs`."""
    return self.score(values, served, targets)
