"""Using an export as a client does: tfft.evaluate scores it on a dataset split and writes a report; tfft.predict
reads inputs and prints its predictions (top classes, or scores). Both go through serving_default, as TF Serving
would run it; what they score and print is the export's target's (tfft.tasks.api.Target)."""

import dataclasses
import glob
import json
import pathlib
import shutil
import sys
import uuid
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from absl import logging

from tfft import rundir
from tfft.config import DataConfig
from tfft.data import split as split_lib
from tfft.errors import UserError
from tfft.serving import loaded
from tfft.tasks import registry

SPLIT_CHOICES = rundir.SPLITS + ("all",)


def kind_of(meta: Dict, export: pathlib.Path) -> str:
  """The export's --task: tfft.json's "target" (exports without it are classifiers).

  Raises:
    UserError: for a target this version of tfft does not know.
  """
  name = meta.get("target", registry.DEFAULT_KIND)
  if name not in registry.KINDS:
    raise UserError(f"{export}: tfft.json names target {name!r}, which this version of tfft does not know")
  return name


def _data_for(data: DataConfig, meta: Dict, export: pathlib.Path) -> DataConfig:
  """The export's --task (and a pair model's columns) on a dataset given to tfft.evaluate."""
  task = kind_of(meta, export)
  reads_pairs = "pair_columns" in registry.spec(task).options
  return dataclasses.replace(data, task=task, pair_columns=tuple(meta.get("pair_columns") or ())
                             if reads_pairs and "," not in data.text_column else data.pair_columns)


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


def evaluate_export(model: str, *, model_dir: Optional[str] = None, data: Optional[DataConfig] = None, split: str = "test",
             report_dir: Optional[str] = None, batch_size: int = 32) -> Tuple[Dict, pathlib.Path]:
  """Scores the export on a split of a dataset through its serving_default, and writes the report.

  Args:
    model: an export version dir, a model base dir (highest version) or a run dir (see loaded.locate).
    model_dir: the run dir whose split manifest to use; default the run that wrote the export (its tfft.json).
    data: the dataset; default the run's --dataset.
    split: train, val or test of the run's split manifest, or all for every example of the dataset.
    report_dir: where the report goes; default RUN_DIR/evaluate/NAME-vVERSION-SPLIT (or reports/… without a run).
    batch_size: examples per signature call.

  Returns:
    (metrics, report dir); metrics hold "ci", the bootstrap intervals of accuracy and macro-F1.

  Raises:
    UserError: for a path that is not an export, labels the model does not know, a split without its manifest, or a
      report dir that exists.
  """
  export, run_dir = loaded.locate(model)
  meta = loaded.read_meta(export)
  if model_dir:
    run_dir = pathlib.Path(model_dir).expanduser()
  elif run_dir is None and meta.get("model_dir") and pathlib.Path(meta["model_dir"]).is_dir():
    run_dir = pathlib.Path(meta["model_dir"])
  run = rundir.load_run(str(run_dir)) if run_dir is not None and (run_dir / rundir.FLAGFILE).is_file() else None
  if model_dir and run is None:
    rundir.load_run(model_dir)  # raises the error that names --model_dir
  class_names = loaded.read_class_names(export)
  if run is not None and run.class_names != class_names:
    raise UserError(f"{run.dir.labels} and {export / 'assets.extra' / rundir.LABELS} name different classes; "
                    "pass --model_dir=RUN_DIR of the run that trained this export")
  if data is None:
    if run is None:
      raise UserError(f"--dataset is needed: {export} names no run whose dataset to reuse; pass --dataset=…")
    data = run.config.data
  else:
    data = _data_for(data, meta, export)
  if split != "all" and (run is None or run.manifest is None):
    where = f"{run_dir / rundir.MANIFEST}" if run_dir is not None else "the run dir's split manifest"
    raise UserError(f"--split={split} needs the run's split manifest ({where}), which was not found; pass "
                    "--model_dir=RUN_DIR of the run that trained this model, or --split=all to score every example")
  spec = registry.spec(kind_of(meta, export))
  module = spec.load()
  kind = module.TARGET
  inputs, labels, ids = module.load_served_examples(data, meta.get("task", "text"))
  if data.classes and "classes" in spec.options:  # the run's --classes, as its training kept them
    keep = split_lib.select_classes(labels, data.classes, flag_value=data.dataset)
    inputs, labels, ids = [inputs[i] for i in keep], [labels[i] for i in keep], [ids[i] for i in keep]
  where = f"--dataset={data.dataset}"
  encoded = kind.encode(labels, where=where, names=class_names, ids=ids)
  # Score the export's own decisions: a two-class --threshold, or the per-label thresholds of a multi-label model.
  decided = {k: meta[k] for k in ("threshold", "positive", "threshold_rule", "thresholds") if k in meta}
  if decided:
    encoded = dataclasses.replace(encoded, info={**encoded.info, **decided})
  indices = range(len(ids)) if split == "all" else rundir.select_split(run.manifest, ids, split, where=where)
  out_dir = _report_dir(report_dir, export, run.path if run else None, split)

  served_model = loaded.ExportedModel(export, kind)
  chosen = [inputs[i] for i in indices]
  logging.info("scoring %s on %d %s examples of %s", export, len(chosen), split, data.dataset)
  served = kind.served_from_export(served_model, chosen, batch_size=batch_size)
  y_true = encoded.values[list(indices)]
  metrics = kind.score_export(chosen, y_true, served, encoded)
  metrics.update({"model": str(export), "dataset": data.dataset, "split": split})
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = out_dir.parent / f".tmp-{uuid.uuid4().hex}"
  tmp.mkdir()
  try:
    kind.write_report(tmp, metrics, values=y_true, served=served,
                      inputs=[x if isinstance(x, (str, tuple)) else "(in memory; see id)" for x in chosen],
                      ids=[ids[i] for i in indices])
    if out_dir.exists():
      out_dir.rmdir()  # checked empty above
    tmp.rename(out_dir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return metrics, out_dir


def read_inputs(args: Sequence[str], *, input_file: Optional[str] = None, stdin: TextIO = sys.stdin) -> List[str]:
  """The inputs: arguments, then --input_file's lines; stdin's lines when neither is given or an argument is `-`.

  Raises:
    UserError: for a missing input file, or no input at all.
  """
  values = []
  for arg in args:
    values.extend(line for line in stdin.read().splitlines() if line.strip()) if arg == "-" else values.append(arg)
  if input_file:
    path = pathlib.Path(input_file).expanduser()
    if not path.is_file():
      raise UserError(f"--input_file={input_file}: no such file; it should hold one input per line")
    values.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
  elif not args:
    values.extend(line for line in stdin.read().splitlines() if line.strip())
  if not values:
    raise UserError("no inputs: pass texts or image paths as arguments, --input_file=FILE (one per line), or lines "
                    "on stdin")
  return values


def expand_images(values: Sequence[str]) -> List[str]:
  """Image paths with globs expanded, in order.

  Raises:
    UserError: for a path that does not exist or a glob that matches nothing.
  """
  paths = []
  for value in values:
    matches = sorted(glob.glob(str(pathlib.Path(value).expanduser()), recursive=True))
    files = [m for m in matches if pathlib.Path(m).is_file()]
    if not files:
      raise UserError(f"{value}: no such image file (and no file matches it as a glob); pass image paths or globs")
    paths.extend(files)
  return paths


def split_pairs(values: Sequence) -> List[Tuple[str, str]]:
  """A pair model's inputs: each `TEXT_A<TAB>TEXT_B` line (or a pair already) as a pair of texts.

  Raises:
    UserError: for an input without exactly one tab.
  """
  pairs = []
  for value in values:
    if isinstance(value, (tuple, list)) and len(value) == 2:
      pairs.append(tuple(value))
      continue
    parts = str(value).split("\t")
    if len(parts) != 2:
      raise UserError(f"{str(value)[:60]!r}: this model reads pairs of texts; give each input as TEXT_A<TAB>TEXT_B "
                      "(one tab between the two texts)")
    pairs.append((parts[0], parts[1]))
  return pairs


def predict_export(model: str, values: Sequence[str], *, top_k: int = 3, batch_size: int = 32) -> List[Dict]:
  """Runs inputs through the export's serving_default (tfft.serving.loaded.ExportedModel.predict).

  Args:
    model: an export dir, model base dir or run dir (see tfft.serving.loaded.locate).
    values: texts for a text model (TEXT_A<TAB>TEXT_B, or pairs, for a pair model); image paths or globs for an
      image model.
    top_k: classes to keep per input.
    batch_size: inputs per signature call.

  Raises:
    UserError: for a path that is no export, or an image path or glob that matches no file.
  """
  export, _ = loaded.locate(model)
  loaded.read_class_names(export)  # fail before loading TensorFlow
  meta = loaded.read_meta(export)
  is_image = meta.get("task") == "image"
  values = expand_images(values) if is_image else list(values)
  spec = registry.spec(kind_of(meta, export))
  if "pair_columns" in spec.options:
    values = split_pairs(values)
  served_model = loaded.ExportedModel(export, spec.load().TARGET)
  if served_model.task == "image" and not is_image:
    values = expand_images(values)
  return served_model.predict(values, top_k=top_k, batch_size=batch_size)


def format_table(rows: Sequence[Dict], *, width: int = 48, target: str = registry.DEFAULT_KIND) -> str:
  """One block per input: the input (shortened), then its predictions as the export's target (--task, tfft.json's
  "target") shows them (top classes with probabilities, or the score)."""
  return registry.target(target).format_rows(rows, width=width)


def load(value: str) -> loaded.ExportedModel:
  """Loads the export that `value` names (an export dir, a model base dir or a run dir; see
  tfft.serving.loaded.locate), with TensorFlow and TF Text only, as TF Serving runs it (the Python API's tfft.load).

  Raises:
    UserError: if `value` names no tfft export, it cannot be loaded, or its tfft.json names a target this version
      of tfft does not know.
  """
  export, _ = loaded.locate(value)
  return loaded.ExportedModel(export, registry.target(kind_of(loaded.read_meta(export), export)))


def format_json(rows: Sequence[Dict]) -> str:
  return json.dumps(list(rows), indent=2, ensure_ascii=False)
