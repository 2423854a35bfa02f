"""The members that most targets share; each kind's target overrides what it does its own way."""

from typing import Dict, List, Sequence, Tuple

import numpy as np

from tfft.serving import parity as parity_lib
from tfft.errors import UserError
from tfft.serving import loaded
from tfft.tasks.api import Targets

# The parity check feeds the export this many test inputs (all of a smaller test split): the longest quarter of them,
# where truncation, windows and padding buckets differ, and a seeded draw of the rest. Skew that moves the outputs
# of 1% of the inputs is missed by a uniform draw of 512 with probability 0.99**512 < 0.006; skew in the
# preprocessing every input goes through (lowercasing, normalisation, image size) shows on all of them.
PARITY_EXAMPLES = 512
# How the model card names that sample when it is not the whole test split.
PARITY_SAMPLE = "a sample (the longest quarter and a seeded draw of the rest) of"


def parity_positions(inputs: Sequence, limit: int = PARITY_EXAMPLES, *, seed: int = 0) -> np.ndarray:
  """Positions in `inputs` (the test inputs) that the parity check feeds the export, in order."""
  n = len(inputs)
  if n <= limit:
    return np.arange(n)
  size = np.array([len(v) if isinstance(v, (str, bytes)) else sum(map(len, v)) if isinstance(v, (tuple, list))
                   else 0 for v in inputs])
  longest = np.argsort(-size, kind="stable")[:limit // 4]
  rest = np.setdiff1d(np.arange(n), longest)
  drawn = np.random.default_rng(seed).choice(rest, size=limit - len(longest), replace=False)
  return np.sort(np.concatenate([longest, drawn]))


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
    """The served `parity_output` against the in-process one on the parity sample of the test split, as numbers
    (scaled by a regression target's std)."""
    positions, served = self.served_on_test(exported, data, batch_size=batch_size)
    scale = data.targets.info.get("std", 1.0) if data.targets is not None else 1.0
    result = parity_lib.check_value_parity(served, np.asarray(in_process)[positions], output=self.parity_output,
                                           scale=scale, atol=atol)
    return {**result, "of": len(data.split["test"]), "sample": PARITY_SAMPLE}

  def served_on_test(self, exported, data, *, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """The parity sample's positions in the test split (parity_positions) and the export's `parity_output` for
    those test inputs of the run (a RunData), as TF Serving hands them over."""
    inputs = data.take("test")
    positions = parity_positions(inputs)
    feed = loaded.as_bytes(data.task, [inputs[i] for i in positions])
    return positions, exported.outputs(feed, batch_size=batch_size)[self.parity_output]

  def served_from_export(self, exported, inputs: Sequence, *, batch_size: int) -> np.ndarray:
    """What tfft.evaluate scores: the export's `parity_output` for the inputs, through serving_default."""
    feed = loaded.as_bytes(exported.task, inputs)
    if self.parity_output == "probabilities":
      return exported.probabilities(feed, batch_size=batch_size)
    return exported.outputs(feed, batch_size=batch_size)[self.parity_output]

  def score_export(self, inputs: Sequence, values, served, targets: Targets) -> Dict:  # pylint: disable=unused-argument
    """tfft.evaluate's metrics of the export's outputs on `inputs`."""
    return self.score(values, served, targets)
