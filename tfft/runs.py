"""A run read back from its model dir (config, labels, split manifest, weights), and its re-export as a new version."""

import dataclasses
import json
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfft import config as config_lib
from tfft.data import split as split_lib
from tfft.data.text import natural_key
from tfft.errors import UserError
from tfft.state import RunState

FLAGFILE = "flags.cfg"


@dataclasses.dataclass
class Run:
  """What a tfft.train run dir holds: its resolved config, labels.txt, the split manifest (None if missing)."""
  path: pathlib.Path
  config: config_lib.Config
  class_names: List[str]
  manifest: Optional[Dict[str, str]]
  state: RunState


def load_run(value: str, flag: str = "model_dir") -> Run:
  """Reads a run dir.

  Raises:
    UserError: if `value` is not a tfft.train run dir.
  """
  from tfft import flags as tfft_flags  # pylint: disable=g-import-not-at-top  (defines the train flags)

  path = pathlib.Path(value).expanduser()
  if not (path / FLAGFILE).is_file() or not (path / split_lib.LABELS).is_file():
    raise UserError(f"--{flag}={value} is not a tfft run dir (no {FLAGFILE} and {split_lib.LABELS}); pass the "
                    "--model_dir that tfft.train wrote")
  manifest_path = path / split_lib.MANIFEST
  return Run(path, tfft_flags.config_from_flagfile(path / FLAGFILE), split_lib.read_labels(path / split_lib.LABELS),
             split_lib.read_manifest(manifest_path) if manifest_path.is_file() else None, RunState(path))


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


def label_indices(labels: Sequence[str], class_names: Sequence[str], *, where: str) -> np.ndarray:
  """Class index of every label, in the model's labels.txt order.

  Raises:
    UserError: naming the labels that labels.txt does not hold.
  """
  position = {name: i for i, name in enumerate(class_names)}
  unknown = sorted(set(labels) - set(position), key=natural_key)
  if unknown:
    raise UserError(f"{where}: label(s) {', '.join(map(repr, unknown[:5]))}{' …' if len(unknown) > 5 else ''} are "
                    f"not in the model's labels.txt ({', '.join(class_names)}); use a dataset with the model's classes")
  return np.array([position[label] for label in labels], dtype=np.int64)


def export_run(value: str, *, export_dir: Optional[str] = None, name: Optional[str] = None,
               warmup: Optional[bool] = None) -> Tuple[pathlib.Path, Dict]:
  """Rebuilds a run's model from its flags.cfg, loads its final weights and exports them as a new version.

  The final weights (checkpoints/after_<last phase>.weights.h5) are the best validation epoch of the last phase:
  the best_<phase> files of cached phases hold only the head or the top blocks. The export goes through the same
  checks as train's: the run's --min_metric gate, then parity on the test split before the version is published.

  Args:
    value: the run dir.
    export_dir: export base; default the run's --export_dir.
    name: model name; default the run's --name.
    warmup: write the warmup requests; default the run's --warmup.

  Returns:
    (version dir, test metrics).

  Raises:
    UserError: for a dir that is not a finished run, or a dataset that no longer matches its manifest.
    RunFailed: if the gate is unmet or the export disagrees with the model.
  """
  from tfft import training  # pylint: disable=g-import-not-at-top

  run = load_run(value)
  cfg = run.config
  cfg = dataclasses.replace(
      cfg, run=dataclasses.replace(cfg.run, model_dir=str(run.path), export_dir=export_dir or cfg.run.export_dir,
                                   name=name or cfg.run.name),
      report=dataclasses.replace(cfg.report, warmup=cfg.report.warmup if warmup is None else warmup))
  config_lib.validate(cfg)
  plan = training.plan_phases(cfg.train)
  weights = run.path / "checkpoints" / f"after_{plan[-1].name}.weights.h5"
  if not weights.is_file():
    raise UserError(f"--model_dir={value}: {weights} is missing, so the run has not finished training; finish it "
                    f"with python -m tfft.train --flagfile={run.path / FLAGFILE}")
  if run.manifest is None:
    raise UserError(f"--model_dir={value}: {split_lib.MANIFEST} is missing; it is needed to feed the test split to "
                    "the parity check and validation examples to the warmup file")
  from tfft import tasks  # pylint: disable=g-import-not-at-top
  task = tasks.build_task(cfg)
  examples = task.load_examples()
  where = f"--dataset={cfg.data.dataset}"
  labels = label_indices(examples.labels, run.class_names, where=where)
  split = {s: select_split(run.manifest, examples.ids, s, where=where) for s in split_lib.SPLITS}

  import functools  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfft import metrics as metrics_lib, reporting  # pylint: disable=g-import-not-at-top

  strategy = tf.distribute.get_strategy()
  # Built in float32 whatever the run trained in: the weights file holds float32 variables either way.
  task.config = cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mixed_precision="float32"))
  model = task.build_model(len(run.class_names), strategy, weights="none")  # the run's weights are loaded next
  model.load_weights(str(weights))
  make = task.dataset_fn(examples, labels, split)
  data = task.run_data(examples, labels, split, run.class_names)
  logits = task.predict_logits(model, examples, split["test"], make)
  probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
  metrics = metrics_lib.classification_metrics(labels[split["test"]], probabilities, run.class_names)
  metrics["split_sizes"] = {s: int(len(i)) for s, i in split.items()}
  trained = run.path / metrics_lib.METRICS_JSON  # the run's baseline, for the model card
  if trained.is_file():
    metrics.update({k: v for k, v in json.loads(trained.read_text()).items() if k.startswith("baseline")})
  reporting.check_gate(metrics, cfg.report.min_metric, model_dir=run.path)
  phases = [run.state.phase_result(p.name) for p in plan if run.state.phase_result(p.name)]
  path = reporting.export_checked(
      functools.partial(task.export, model, run.class_names,
                        export_base=pathlib.Path(cfg.run.export_dir).expanduser() / cfg.run.name),
      cfg, data, model_dir=run.path, probabilities=probabilities, metrics=metrics, phases=phases,
      backbone=task.spec, contract=task.contract(), write_metrics=False)
  return path, metrics
