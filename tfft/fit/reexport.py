"""tfft.export of a run dir: a finished run's model rebuilt from its flags.cfg and split manifest, its final weights
loaded, and published through train's own ending as a new version."""

import dataclasses
import json
import pathlib
from typing import Dict, Optional, Tuple

import tensorflow as tf

from tfft import rundir
from tfft.errors import UserError
from tfft.fit import publish, recipe, setup
from tfft.model import weights as weights_io
from tfft.tasks import registry


def reexport(model_dir: str, *, export_dir: Optional[str] = None, name: Optional[str] = None,
             warmup: Optional[bool] = None, strategy=None) -> Tuple[pathlib.Path, Dict]:
  """Rebuilds a finished run's model from its flags.cfg, loads its final weights and publishes them as a new version.

  The final weights (checkpoints/after_<last phase>.weights.h5) are the best validation epoch of the last phase.
  The export goes through the same ending as train's (tfft.fit.publish.score_and_publish): the run's --min_metric
  gate, then parity on the test split before the version is published.

  Args:
    model_dir: the run dir.
    export_dir: export base; default the run's --export_dir.
    name: model name; default the run's --name.
    warmup: write the warmup requests; default the run's --warmup.
    strategy: the tf.distribute strategy to build the model under; default TensorFlow's default strategy.

  Returns:
    (version dir, test metrics).

  Raises:
    UserError: for a dir that is not a finished run, or a dataset that no longer matches its manifest.
    RunFailed: if the gate is unmet or the export disagrees with the model.
  """
  run = rundir.load_run(model_dir)
  rundir.check_unlocked(run.dir)
  cfg = run.config
  cfg = registry.validate(dataclasses.replace(
      cfg, run=dataclasses.replace(cfg.run, model_dir=str(run.path), export_dir=export_dir or cfg.run.export_dir,
                                   name=name or cfg.run.name),
      report=dataclasses.replace(cfg.report, warmup=cfg.report.warmup if warmup is None else warmup)))
  last = recipe.plan_phases(cfg.train)[-1].name
  weights = run.dir.after(last)
  if not weights.is_file():
    raise UserError(f"--model_dir={model_dir}: {weights} is missing, so the run has not finished training; finish it "
                    f"with python -m tfft.train --flagfile={run.dir.flagfile}")
  if run.manifest is None:
    raise UserError(f"--model_dir={model_dir}: {rundir.MANIFEST} is missing; it is needed to feed the test split to "
                    "the parity check and validation examples to the warmup file")
  export_base = rundir.check_export_base(cfg.run)
  inputs = setup.load_inputs(cfg, manifest=run.manifest, names=run.class_names)
  task, examples, targets, split = inputs.task, inputs.examples, inputs.targets, inputs.split.indices
  strategy = strategy or tf.distribute.get_strategy()
  # Built in float32 whatever the run trained in: the weights file holds float32 variables either way.
  built = task.build_model(targets.width, strategy, precision="float32", weights="none")
  weights_io.load_weights(built.model, weights)
  prepared = task.prepare(examples, targets, split)
  trained = json.loads(run.dir.metrics.read_text()) if run.dir.metrics.is_file() else {}
  phases = [run.state.phase_result(p.name) for p in recipe.plan_phases(cfg.train) if run.state.phase_result(p.name)]
  with rundir.lock(run.dir):
    metrics, path = publish.score_and_publish(task, built.model, prepared, config=cfg, run_dir=run.dir,
                                      export_base=export_base, phases=phases, rescore=trained,
                                      methods=trained.get("methods", ()),
                                      temperature=trained.get("calibration", {}).get("temperature"))
  return path, metrics
