"""Hyperparameter search: KerasTuner's oracle over named train flags, each trial one train job in its own run dir,
judged on the validation split; the test split is scored once, for the best trial, at the end."""

import dataclasses
import json
import math
import pathlib
import re
from typing import Dict, List, Optional, Tuple

from absl import logging

from tfft import config as config_lib
from tfft import files, rundir
from tfft.config import Config
from tfft.errors import RunFailed, UserError
from tfft.fit import job
from tfft.tasks import registry

ALGORITHMS = ("random", "bayesian")
BEST_FLAGFILE = "best.cfg"
RESULTS = "search_results.json"
TRIALS = "trials"
PROJECT = "oracle"  # KerasTuner's own files: SEARCH_DIR/oracle/
# Options a search must not vary: they change the data or its split (so trials would be judged on different
# validation examples), where the run writes, how it is distributed, or what is measured after training.
_FIXED_SECTIONS = ("data", "run", "report")
_FIXED = ("seed", "strategy", "tpu", "worker_hosts", "task_index", "profile_batches", "cache_features",
          "backbone", "sequence_length", "monitor")


@dataclasses.dataclass(frozen=True)
class Dimension:
  """One searched option: a range (low, high; log-spaced if `log`) of an int or float option, or a choice."""
  name: str
  section: str
  choices: Tuple = ()
  low: Optional[float] = None
  high: Optional[float] = None
  log: bool = False
  integer: bool = False

  def values(self) -> Tuple:
    """The values the checks try: every choice, or both ends of the range."""
    return self.choices or (self.low, self.high)


@dataclasses.dataclass
class SearchResult:
  search_dir: str
  trials: List[Dict]  # per trial: id, values, status, score, run dir
  best: Dict
  monitor: str
  direction: str
  best_flagfile: str
  metrics: Dict
  export_path: str


def _parse_range(name: str, text: str, where: str) -> Tuple[float, float, bool]:
  match = re.fullmatch(r"\s*(\S+)\s*\.\.\s*(\S+?)\s*(\s+log)?\s*", text)
  if not match:
    raise UserError(f"{where}: {name}: {text!r} is neither LOW..HIGH [log] nor choices A | B | C")
  try:
    low, high = float(match.group(1)), float(match.group(2))
  except ValueError:
    raise UserError(f"{where}: {name}: {text!r}: LOW and HIGH must be numbers") from None
  return low, high, bool(match.group(3))


def load_space(path: str, base: Config) -> List[Dimension]:
  """Reads a space file: JSON ({"learning_rate": {"min": 1e-5, "max": 1e-3, "log": true}, "freeze": ["none",
  "top_k:1"]}) or one option a line (`learning_rate = 1e-5..1e-3 log`, `freeze = none | top_k:1`, `#` comments).

  Every value is checked against the base config as a train run would check it.

  Raises:
    UserError: naming the file and the option for an unknown option, one a search may not vary, a malformed or
      empty range, or a value the train run would reject.
  """
  where = f"--space={path}"
  file = pathlib.Path(path).expanduser()
  try:
    text = file.read_text()
  except OSError as e:
    raise UserError(f"{where}: cannot read it ({e.strerror})") from None
  raw: Dict[str, object] = {}
  if file.suffix == ".json":
    try:
      raw = json.loads(text)
    except ValueError as e:
      raise UserError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
      raise UserError(f"{where}: must be a JSON object of option name -> range or list of choices")
  else:
    for number, line in enumerate(text.splitlines(), 1):
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      name, sep, value = line.partition("=")
      if not sep or not name.strip():
        raise UserError(f"{where}: line {number}: {line!r} is not NAME = LOW..HIGH [log] or NAME = A | B")
      raw[name.strip().lstrip("-")] = value.strip()
  if not raw:
    raise UserError(f"{where}: names no option to search")
  fields = {field.name: (section, field) for section, field in config_lib.options()}
  dims = []
  for name, spec in raw.items():
    if name not in fields:
      raise UserError(f"{where}: --{name} is not a tfft.train option")
    section, field = fields[name]
    if section in _FIXED_SECTIONS or name in _FIXED:
      raise UserError(f"{where}: --{name} cannot be searched: trials must share the data, split and outputs, and "
                      "are judged on the same validation metric; set it in the flagfile instead")
    default = field.default
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if isinstance(spec, list) or (isinstance(spec, str) and ".." not in spec):
      items = spec if isinstance(spec, list) else [s.strip() for s in spec.split("|")]
      if not items or any(isinstance(item, str) and not item for item in items):
        raise UserError(f"{where}: {name}: give at least one choice")
      choices = tuple(config_lib.option_value(field, item if isinstance(item, str) else
                                              config_lib.option_text(item)) for item in items)
      dim = Dimension(name, section, choices=choices)
    else:
      if not numeric:
        raise UserError(f"{where}: --{name} takes {type(default).__name__} values: give choices, not a range")
      if isinstance(spec, dict):
        unknown = set(spec) - {"min", "max", "log"}
        if unknown or not {"min", "max"} <= set(spec):
          raise UserError(f"{where}: {name}: a range is {{\"min\": LOW, \"max\": HIGH, \"log\": false}}")
        low, high, log = float(spec["min"]), float(spec["max"]), bool(spec.get("log", False))
      else:
        low, high, log = _parse_range(name, str(spec), where)
      integer = isinstance(default, int)
      if not low < high or (log and low <= 0) or (integer and (low != int(low) or high != int(high))):
        raise UserError(f"{where}: {name}: {low:g}..{high:g} must have LOW < HIGH" + (
            ", both whole numbers" if integer else "") + (", LOW > 0 for log" if log else ""))
      dim = Dimension(name, section, low=low, high=high, log=log, integer=integer)
    for value in dim.values():
      try:
        apply(base, {name: int(value) if dim.integer else value})
      except UserError as e:
        raise UserError(f"{where}: {name}={config_lib.option_text(value)} does not apply to this run: {e}") from None
    dims.append(dim)
  return dims


def apply(base: Config, values: Dict, **run) -> Config:
  """The base config with the searched values (and run-section overrides), validated as tfft.train validates."""
  fields = {field.name: section for section, field in config_lib.options()}
  changes: Dict[str, Dict] = {}
  for name, value in values.items():
    changes.setdefault(fields[name], {})[name] = value
  if run:
    changes.setdefault("run", {}).update(run)
  return registry.validate(dataclasses.replace(base, **{
      section: dataclasses.replace(getattr(base, section), **kw) for section, kw in changes.items()}))


def _hyperparameters(dims: List[Dimension]):
  import keras_tuner as kt  # pylint: disable=g-import-not-at-top
  hp = kt.HyperParameters()
  for d in dims:
    if d.choices:
      texts = [config_lib.option_text(c) for c in d.choices]
      hp.Choice(d.name, texts)
    elif d.integer:
      hp.Int(d.name, int(d.low), int(d.high), sampling="log" if d.log else "linear")
    else:
      hp.Float(d.name, d.low, d.high, sampling="log" if d.log else "linear")
  return hp


def _values(dims: List[Dimension], hp_values: Dict) -> Dict:
  fields = {field.name: field for _, field in config_lib.options()}
  return {d.name: (config_lib.option_value(fields[d.name], hp_values[d.name]) if d.choices
                   else (int(hp_values[d.name]) if d.integer else float(hp_values[d.name]))) for d in dims}


def _monitor(base: Config) -> Tuple[str, str]:
  monitor = registry.target(base.data.task).monitor(base.train.monitor)
  return monitor, "min" if monitor.endswith("loss") else "max"


def check_search_dir(search_dir: pathlib.Path, space: List[Dimension], base: Config, trials: int,
                     algorithm: str) -> Dict:
  """The search's own description (search.json): a search dir resumes only the same search."""
  spec = {"space": [dataclasses.asdict(d) | {"choices": [config_lib.option_text(c) for c in d.choices]}
                    for d in space],
          "base": config_lib.to_flag_lines(base, leave_out=("overwrite", "model_dir", "export_dir", "name")),
          "algorithm": algorithm, "trials": trials}
  if search_dir.exists() and not search_dir.is_dir():
    raise UserError(f"--search_dir={search_dir} is a file; name a directory")
  described = search_dir / "search.json"
  if search_dir.is_dir() and any(search_dir.iterdir()):
    if not described.is_file():
      raise UserError(f"--search_dir={search_dir} holds files that are not a tfft search; choose a new or empty "
                      "directory")
    before = json.loads(described.read_text())
    for key in ("space", "base", "algorithm"):
      if before[key] != spec[key]:
        raise UserError(f"--search_dir={search_dir} holds a search with another {'flagfile' if key == 'base' else key};"
                        " resume it with the same flags, or choose another --search_dir")
  return spec


def run_search(base: Config, *, space_file: str, trials: int, search_dir: str, algorithm: str = "random",
               strategy=None) -> SearchResult:
  """Runs (or resumes) the search and then scores and exports the best trial.

  Each trial is tfft.train with the trial's values in SEARCH_DIR/trials/ID/run, stopped once training is committed
  (tfft.fit.job.run(score_test=False)): its score is the best value of --monitor in the last phase, on the
  validation split. KerasTuner's oracle state is in SEARCH_DIR/oracle; a re-run with the same flags continues from
  it, and a trial killed midway resumes from its run dir's last committed epoch. At the end, only the best trial's
  run is resumed to scoring the test split and publishing its export (to the flagfile's --export_dir/--name), and
  SEARCH_DIR/best.cfg is written: the flagfile with the best values, for a fresh tfft.train.

  Raises:
    UserError: for a bad space file, search dir or argument, or any input a train run rejects.
    RunFailed: when no trial finished, or the best trial's gate or parity check fails.
  """
  import keras  # pylint: disable=g-import-not-at-top
  import keras_tuner as kt  # pylint: disable=g-import-not-at-top

  if trials < 1:
    raise UserError(f"--trials={trials}: must be >= 1")
  if algorithm not in ALGORITHMS:
    raise UserError(f"--search_algorithm={algorithm}: must be one of {', '.join(ALGORITHMS)}")
  dims = load_space(space_file, base)
  out = pathlib.Path(search_dir).expanduser()
  spec = check_search_dir(out, dims, base, trials, algorithm)
  rundir.check_export_base(base.run)
  monitor, direction = _monitor(base)
  out.mkdir(parents=True, exist_ok=True)
  files.write_atomically(out / "search.json", json.dumps(spec, indent=2) + "\n")

  objective = kt.Objective(monitor, direction)
  oracle_cls = {"random": kt.oracles.RandomSearchOracle, "bayesian": kt.oracles.BayesianOptimizationOracle}[algorithm]
  oracle = oracle_cls(objective=objective, max_trials=trials, hyperparameters=_hyperparameters(dims),
                      seed=base.train.seed, max_consecutive_failed_trials=trials)
  raised: List[BaseException] = []

  def trial_config(trial_id: str, values: Dict) -> Config:
    return apply(base, values, model_dir=str(out / TRIALS / trial_id / "run"), overwrite=False)

  class _Tuner(kt.engine.base_tuner.BaseTuner):
    """Runs a trial as a train job stopped before the test split."""

    def run_trial(self, trial, *args, **kwargs):
      values = _values(dims, trial.hyperparameters.values)
      config = trial_config(trial.trial_id, values)
      logging.info("trial %s: %s", trial.trial_id, " ".join(f"--{k}={config_lib.option_text(v)}"
                                                           for k, v in values.items()))
      keras.backend.clear_session()
      try:
        result = job.run(config, strategy=strategy, score_test=False)
      except RunFailed as e:  # e.g. the loss diverged at this learning rate: the trial failed, the search goes on
        logging.warning("trial %s failed: %s", trial.trial_id, e)
        raise kt.errors.FailedTrialError(str(e)) from e
      except Exception as e:  # a bad input, Preempted or a bug: stop the search with it
        raised.append(e)
        raise kt.errors.FatalError(str(e)) from e
      best = result.phases[-1].best
      if best is None or not math.isfinite(best):
        raise kt.errors.FailedTrialError(f"the last phase has no finite {monitor}")
      files.write_atomically(out / TRIALS / trial.trial_id / "result.json", json.dumps(
          {"values": {k: config_lib.option_text(v) for k, v in values.items()}, monitor: best,
           "phase": result.phases[-1].name}, indent=2) + "\n")
      return {monitor: best}

    def save_model(self, trial_id, model, step=0):  # the trial's run dir holds its checkpoints
      pass

    def load_model(self, trial):
      raise NotImplementedError("a trial's model is its run dir")

  try:
    tuner = _Tuner(oracle, directory=str(out), project_name=PROJECT, overwrite=False)
    tuner.search()
  except kt.errors.FatalError:
    if raised:
      raise raised[0] from None
    raise
  finished = [t for t in oracle.trials.values() if t.status == "COMPLETED" and t.score is not None]
  if not finished:
    raise RunFailed(f"no trial of the search in {out} finished; see the log for why each failed")
  best_trial = oracle.get_best_trials(1)[0]
  best_values = _values(dims, best_trial.hyperparameters.values)
  best_config = trial_config(best_trial.trial_id, best_values)
  files.write_atomically(out / BEST_FLAGFILE, config_lib.to_flagfile(apply(base, best_values)))

  # Only now is the test split read: the best trial's run resumes past training to scoring and its export.
  best_dir = rundir.RunDir(best_config.run.model_dir)
  state = best_dir.state()
  if state.finished:
    metrics = json.loads(best_dir.metrics.read_text())
    export_path = state.export_path
  else:
    keras.backend.clear_session()
    result = job.run(best_config, strategy=strategy)
    metrics, export_path = result.metrics, result.export_path
  rows = [{"trial": t.trial_id, "status": t.status, "score": t.score,
           "values": {k: config_lib.option_text(v) for k, v in _values(dims, t.hyperparameters.values).items()},
           "run_dir": str(out / TRIALS / t.trial_id / "run")}
          for t in sorted(oracle.trials.values(), key=lambda t: t.trial_id)]
  best = next(r for r in rows if r["trial"] == best_trial.trial_id)
  files.write_atomically(out / RESULTS, json.dumps(
      {"monitor": monitor, "direction": direction, "trials": rows, "best": best,
       "test": {k: metrics.get(k) for k in ("accuracy", "macro_f1", "rmse", "r2", "micro_f1", "entity_f1")
                if metrics.get(k) is not None}, "export": export_path}, indent=2) + "\n")
  return SearchResult(str(out), rows, best, monitor, direction, str(out / BEST_FLAGFILE), metrics, export_path)


def format_result(result: SearchResult) -> str:
  """The command's final table: every trial's values and validation score, the best, and its test scores."""
  names = list(result.best["values"])
  lines = ["", "tfft search", "===========",
           f"{'trial':<6} {'status':<10} {result.monitor:>12}  " + "  ".join(names)]
  for row in result.trials:
    score = "n/a" if row["score"] is None else f"{row['score']:.4f}"
    mark = " *" if row["trial"] == result.best["trial"] else ""
    lines.append(f"{row['trial']:<6} {row['status']:<10} {score:>12}  "
                 + "  ".join(f"{n}={row['values'][n]}" for n in names) + mark)
  test = "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if k in ("accuracy", "macro_f1", "rmse", "r2")
                   and isinstance(v, float))
  lines += [f"best:     trial {result.best['trial']} ({result.direction} {result.monitor} on validation)",
            f"test:     {test}  (scored once, for the best trial only)",
            f"flags:    {result.best_flagfile}",
            f"run dir:  {result.best['run_dir']}",
            f"export:   {result.export_path}"]
  return "\n".join(lines)
