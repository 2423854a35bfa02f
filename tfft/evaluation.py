"""The evaluate job: score an exported SavedModel through serving_default on a dataset split, and write its report."""

import pathlib
import shutil
import uuid
from typing import Dict, Optional, Tuple

from absl import logging

from tfft import runs, served
from tfft.config import DataConfig
from tfft.data import split as split_lib
from tfft.errors import UserError

SPLIT_CHOICES = split_lib.SPLITS + ("all",)


def _load_examples(data: DataConfig, task: str):
  """The dataset's examples as (inputs, labels, ids); inputs are texts, image file paths, or encoded images."""
  if task == "image":
    from tfft.data import images as image_data  # pylint: disable=g-import-not-at-top
    examples = image_data.load_examples(data)
    return image_data.served_inputs(examples), examples.labels, examples.ids
  from tfft.data import text as text_data  # pylint: disable=g-import-not-at-top

  examples = text_data.load_examples(data)
  return examples.texts, examples.labels, examples.ids


def _report_dir(value: Optional[str], export: pathlib.Path, run_dir: Optional[pathlib.Path],
                split: str) -> pathlib.Path:
  if value:
    path = pathlib.Path(value).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
      raise UserError(f"--report_dir={value} exists and is not empty; choose a new directory (nothing is overwritten)")
    return path
  base = (run_dir if run_dir is not None else pathlib.Path("reports")) / "evaluate"
  stem = f"{export.parent.name}-v{export.name}-{split}"
  path, n = base / stem, 1
  while path.exists():  # a default never overwrites an earlier report either
    n += 1
    path = base / f"{stem}-{n}"
  return path


def evaluate(model: str, *, model_dir: Optional[str] = None, data: Optional[DataConfig] = None, split: str = "test",
             report_dir: Optional[str] = None, batch_size: int = 32) -> Tuple[Dict, pathlib.Path]:
  """Scores the export on a split of a dataset through its serving_default, and writes the report.

  Args:
    model: an export version dir, a model base dir (highest version) or a run dir (see served.locate).
    model_dir: the run dir whose split manifest to use; default the run that wrote the export (its tfft.json).
    data: the dataset; default the run's --dataset.
    split: train, val or test of the run's split manifest, or all for every example of the dataset.
    report_dir: where the report goes; default RUN_DIR/evaluate/NAME-vVERSION-SPLIT (or reports/… without a run).
    batch_size: examples per signature call.

  Returns:
    (metrics, report dir).

  Raises:
    UserError: for a path that is not an export, labels the model does not know, a split without its manifest, or a
      report dir that exists.
  """
  export, run_dir = served.locate(model)
  meta = served.read_meta(export)
  if model_dir:
    run_dir = pathlib.Path(model_dir).expanduser()
  elif run_dir is None and meta.get("model_dir") and pathlib.Path(meta["model_dir"]).is_dir():
    run_dir = pathlib.Path(meta["model_dir"])
  run = runs.load_run(str(run_dir)) if run_dir is not None and (run_dir / runs.FLAGFILE).is_file() else None
  if model_dir and run is None:
    runs.load_run(model_dir)  # raises the error that names --model_dir
  class_names = served.read_class_names(export)
  if data is None:
    if run is None:
      raise UserError(f"--dataset is needed: {export} names no run whose dataset to reuse; pass --dataset=…")
    data = run.config.data
  if split != "all" and (run is None or run.manifest is None):
    where = f"{run_dir / split_lib.MANIFEST}" if run_dir is not None else "the run dir's split manifest"
    raise UserError(f"--split={split} needs the run's split manifest ({where}), which was not found; pass "
                    "--model_dir=RUN_DIR of the run that trained this model, or --split=all to score every example")
  task = meta.get("task", "text")
  inputs, labels, ids = _load_examples(data, task)
  where = f"--dataset={data.dataset}"
  y = runs.label_indices(labels, class_names, where=where)
  indices = range(len(ids)) if split == "all" else runs.select_split(run.manifest, ids, split, where=where)
  target = _report_dir(report_dir, export, run.path if run else None, split)

  from tfft import metrics as metrics_lib  # pylint: disable=g-import-not-at-top

  served_model = served.ServedModel(export)
  chosen = [inputs[i] for i in indices]
  logging.info("scoring %s on %d %s examples of %s", export, len(chosen), split, data.dataset)
  probabilities = served_model.predict(served.as_bytes(served_model.task, chosen), batch_size=batch_size)
  y_true = y[list(indices)]
  metrics = metrics_lib.classification_metrics(y_true, probabilities, class_names)
  metrics.update({"model": str(export), "dataset": data.dataset, "split": split})
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
  tmp.mkdir()
  try:
    metrics_lib.write_report(tmp, metrics, y_true=y_true, probabilities=probabilities,
                             inputs=[x if isinstance(x, str) else "(in memory; see id)" for x in chosen],
                             ids=[ids[i] for i in indices])
    if target.exists():
      target.rmdir()  # checked empty above
    tmp.rename(target)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return metrics, target
