"""The benchmark's discipline: contenders measured in turn (A B A B ...), steady-state steps counted from the
optimizer, and each figure as a median with its min-max; a ratio whose pairwise range holds 1.0 is no clear
difference.
"""

import statistics
import time
from typing import Callable, Dict, List, Sequence

NO_CLEAR_DIFFERENCE = "no clear difference"


def spread(values: Sequence[float]) -> Dict:
  """Median, min, max and count of repeated measurements."""
  values = [float(v) for v in values]
  if not values:
    raise ValueError("no measurements")
  return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
          "values": values}


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Dict:
  """numerators[i] / denominators[i] for each interleaved pair i, summarised by spread(), with a verdict.

  The verdict is "higher" when every pair's ratio is above 1, "lower" when every one is below, else
  NO_CLEAR_DIFFERENCE.
  """
  if len(numerators) != len(denominators):
    raise ValueError(f"{len(numerators)} numerators against {len(denominators)} denominators: pair them")
  ratios = [a / b if b else float("nan") for a, b in zip(numerators, denominators)]
  out = spread(ratios)
  out["verdict"] = verdict(out["min"], out["max"])
  return out


def verdict(low: float, high: float) -> str:
  if low > 1.0:
    return "higher"
  if high < 1.0:
    return "lower"
  return NO_CLEAR_DIFFERENCE


def format_spread(s: Dict, digits: int = 2) -> str:
  """'1.02 (0.95-1.10)': median (min-max)."""
  return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def agree(first: Dict, second: Dict) -> bool:
  """Whether two runs of one ratio agree: their min-max ranges overlap."""
  return first["min"] <= second["max"] and second["min"] <= first["max"]


def interleave(contenders: Dict[str, Callable[[], Dict]], repeats: int, log=print,
               into: Dict[str, List] = None) -> Dict[str, List[Dict]]:
  """Runs each contender `repeats` times in turn (A B C A B C ...); returns each one's results in order.

  Given `into`, each result is appended to into[name] as soon as it is measured, so that a later failure keeps it.
  """
  results = into if into is not None else {}
  for name in contenders:
    results.setdefault(name, [])
  for r in range(repeats):
    for name, run in contenders.items():
      start = time.perf_counter()
      results[name].append(run())
      log(f"[bench] {name} #{r + 1}: {results[name][-1]} ({time.perf_counter() - start:.0f} s)")
  return results


class SteadyCounter:
  """Steady-state throughput from (wall clock, optimizer iterations) readings taken at the end of each train call.

  The first `warmup_steps` optimizer steps of a fit (tracing, first-call kernel setup) are left out, and so is the
  time between epochs (validation, checkpoints): each epoch's first reading is taken at its start. Steps are read
  from the optimizer, not from callbacks, so steps_per_execution (one callback per execution) counts right.

  The first train call of every later epoch is kept apart too (`start_steps`, `start_seconds`): Keras makes a new
  iterator per epoch for a dataset of known length (arrays, a dataset without repeat), and deleting the last one
  waits for tf.data's autotuning thread, which on this TensorFlow can take seconds with the CPU idle. That cost
  belongs to the epoch boundary, not to the step; `epoch_start_extra_seconds()` gives it per epoch start. An epoch
  of one train call (one execution under steps_per_execution) has nothing to set it against: `epoch_end` counts
  that call as steady, so such a fit still measures, and stops.
  """

  def __init__(self, warmup_steps: int, min_seconds: float):
    self.warmup_steps, self.min_seconds = warmup_steps, min_seconds
    self.steps, self.seconds = 0, 0.0
    self.start_steps, self.start_seconds = [], []
    self._last = None
    self._epoch_start = False
    self._last_was_start = False  # the last train call was kept apart as an epoch start

  def epoch_begin(self, now: float, iterations: int):
    self._epoch_start = self._last is not None  # an epoch after the fit's first
    self._last = (now, iterations)

  def epoch_end(self) -> bool:
    """Counts an epoch's only train call as steady if it was kept apart; returns whether it is time to stop."""
    if self._last_was_start:  # only an epoch's first call is kept apart, so it was the epoch's only one
      self.steps += self.start_steps.pop()
      self.seconds += self.start_seconds.pop()
    return self.seconds >= self.min_seconds

  def step_end(self, now: float, iterations: int, first_iteration: int) -> bool:
    """Records a reading; returns True once `min_seconds` of steady steps are counted (time to stop)."""
    last_time, last_iterations = self._last
    self._last = (now, iterations)
    epoch_start, self._epoch_start = self._epoch_start, False
    self._last_was_start = False
    if last_iterations - first_iteration >= self.warmup_steps:
      self._last_was_start = epoch_start
      if epoch_start:
        self.start_steps.append(iterations - last_iterations)
        self.start_seconds.append(now - last_time)
      else:
        self.steps += iterations - last_iterations
        self.seconds += now - last_time
    return self.seconds >= self.min_seconds

  def examples_per_sec(self, batch_size: int) -> float:
    return self.steps * batch_size / self.seconds if self.seconds > 0 else float("nan")

  def examples_per_sec_with_epoch_starts(self, batch_size: int) -> float:
    seconds = self.seconds + sum(self.start_seconds)
    return (self.steps + sum(self.start_steps)) * batch_size / seconds if seconds > 0 else float("nan")

  def epoch_start_extra_seconds(self) -> List[float]:
    """Per later epoch: its first train call's seconds beyond what its steps take at the steady rate."""
    if not self.steps:
      return []
    per_step = self.seconds / self.steps
    return [s - n * per_step for n, s in zip(self.start_steps, self.start_seconds)]


def step_clock(keras, *, batch_size: int, warmup_steps: int, min_seconds: float):
  """A Keras callback that counts steady-state steps with SteadyCounter and stops the fit after `min_seconds`.

  `callback.result()` gives examples_per_sec (steps x batch_size / seconds), steps and seconds, and what the
  epoch starts cost: examples_per_sec_with_epoch_starts, epoch_starts and their extra seconds.
  """

  class StepClock(keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.counter = SteadyCounter(warmup_steps, min_seconds)
      self._first = None

    def _iterations(self):
      return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs=None):
      self._first = self._iterations()

    def on_epoch_begin(self, epoch, logs=None):
      self.counter.epoch_begin(time.perf_counter(), self._iterations())

    def on_train_batch_end(self, batch, logs=None):
      if self.counter.step_end(time.perf_counter(), self._iterations(), self._first):
        self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
      if self.counter.epoch_end():
        self.model.stop_training = True

    def result(self) -> Dict:
      c = self.counter
      extra = c.epoch_start_extra_seconds()
      return {"examples_per_sec": c.examples_per_sec(batch_size), "steps": c.steps, "seconds": round(c.seconds, 2),
              "examples_per_sec_with_epoch_starts": c.examples_per_sec_with_epoch_starts(batch_size),
              "epoch_starts": len(extra), "epoch_start_extra_seconds": [round(e, 2) for e in extra]}

  return StepClock()


def meets(s: Dict, goal: float, ceiling: bool = False) -> str:
  """'yes' when the whole min-max range meets the goal (>= goal, or <= it for a ceiling), 'no' when none of it
  does, else 'within spread'."""
  low, high = (s["max"], s["min"]) if ceiling else (s["min"], s["max"])
  ok = (lambda v: v <= goal) if ceiling else (lambda v: v >= goal)
  if ok(low):
    return "yes"
  return "within spread" if ok(high) else "no"
