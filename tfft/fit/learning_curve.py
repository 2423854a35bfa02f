"""Learning curves: the train job at several training-set sizes and seeds, each beside its baseline on the same
split and the same few-shot draw; the table, learning_curve.csv and learning_curve.png."""

import csv
import dataclasses
import json
import pathlib
from typing import Dict, List, Sequence

import numpy as np
from absl import logging

from tfft import files, rundir
from tfft.config import Config
from tfft.errors import UserError
from tfft.fit import job
from tfft.report import plots, significance
from tfft.tasks import registry as tasks

CURVE_CSV = "learning_curve.csv"
CURVE_PNG = "learning_curve.png"
COLUMNS = ("examples_per_class", "seed", "classes", "train_examples", "model_accuracy", "baseline_accuracy", "difference",
           "difference_low", "difference_high", "verdict", "model_macro_f1", "baseline_macro_f1")


def parse_sizes(values: Sequence[str]) -> List[int]:
  """--train_sizes items: positive integers (training examples per class) or `all` (0: the whole train split).

  Raises:
    UserError: naming --train_sizes for an item that is neither, or for no items.
  """
  sizes = []
  for value in values:
    value = str(value).strip()
    if value == "all":
      sizes.append(0)
    elif value.isdigit() and int(value) > 0:
      sizes.append(int(value))
    else:
      raise UserError(f"--train_sizes={','.join(map(str, values))}: {value!r} is not a number of training examples "
                      "per class; use positive integers or all, e.g. 16,64,256,all")
  if not sizes:
    raise UserError("--train_sizes is empty; give the training examples per class, e.g. 16,64,256,all")
  return sizes


def point_config(config: Config, curve_dir: pathlib.Path, *, size: int, seed: int) -> Config:
  """The train config of one point: --train_examples_per_class and --seed set, its own run dir and export base."""
  name = f"{'all' if size == 0 else size}-seed{seed}"
  return dataclasses.replace(
      config, data=dataclasses.replace(config.data, train_examples_per_class=size),
      train=dataclasses.replace(config.train, seed=seed),
      run=dataclasses.replace(config.run, model_dir=str(curve_dir / "runs" / name),
                              export_dir=str(curve_dir / "exports"), name=name.replace("-", "_"), overwrite=False))


def _row(size: int, seed: int, metrics: Dict) -> Dict:
  if "baseline_comparison" not in metrics:
    raise UserError("--baseline=none: a learning curve compares the model with the baseline; leave --baseline=auto")
  paired = metrics["baseline_comparison"]["accuracy"]
  return {"examples_per_class": "all" if size == 0 else size, "seed": seed, "classes": len(metrics["class_names"]),
          "train_examples": metrics["split_sizes"]["train"], "model_accuracy": metrics["accuracy"],
          "baseline_accuracy": metrics["baseline"]["accuracy"], "difference": paired["difference"],
          "difference_low": paired["ci"][0], "difference_high": paired["ci"][1], "verdict": paired["verdict"],
          "model_macro_f1": metrics["macro_f1"], "baseline_macro_f1": metrics["baseline"]["macro_f1"]}


def run_curve(config: Config, curve_dir: str, *, sizes: Sequence[int], seeds: Sequence[int],
              strategy=None) -> List[Dict]:
  """Trains and scores every (size, seed) point, then writes the curve's files into curve_dir.

  A point whose run dir already holds a finished run is read back rather than trained again, so a curve that was
  stopped resumes where it was.

  Args:
    config: the validated train config every point starts from.
    curve_dir: where the points' run dirs, their exports and the curve's files go.
    sizes: training examples per class, 0 for the whole train split.
    seeds: the seeds; each gives its own split and few-shot draw, shared by the model and its baseline.
    strategy: passed to each train job (None: the one --strategy names).

  Returns:
    One row per point, with COLUMNS.

  Raises:
    UserError: as the train job does, naming the point's flags; for a --task whose curve is not drawn.
  """

  drawn = tasks.kinds_reading("train_examples_per_class")  # the kinds whose training set is drawn per class
  if config.data.task not in drawn:
    raise UserError(f"--task={config.data.task}: tfft.curve draws accuracy against training examples per class, "
                    f"for --task={' or '.join(drawn)}; train points of other tasks with tfft.train --max_examples")

  out = pathlib.Path(curve_dir).expanduser()
  rows = []
  for size in sizes:
    for seed in seeds:
      point = point_config(config, out, size=size, seed=seed)
      run_dir = rundir.RunDir(point.run.model_dir)
      if run_dir.is_run() and run_dir.state().finished and (run_dir.path / "metrics.json").is_file():
        logging.info("learning curve: %s finished in an earlier run; reading its metrics", run_dir.path)
        metrics = json.loads((run_dir.path / "metrics.json").read_text())
      else:
        logging.info("learning curve: training %s", run_dir.path)
        metrics = job.run(point, strategy=strategy).metrics
        import keras  # pylint: disable=g-import-not-at-top
        keras.backend.clear_session()  # each point builds its own model; keep the graph from growing
      rows.append(_row(size, seed, metrics))
  write_curve(out, rows)
  return rows


def summarize(rows: Sequence[Dict]) -> List[Dict]:
  """Per size, in the rows' order: the mean and spread (min, max) of both arms, and the seed_summary of the
  difference (mean, std, Student-t interval over seeds), plus how many seeds said `better`."""
  sizes = list(dict.fromkeys(row["examples_per_class"] for row in rows))
  out = []
  for size in sizes:
    group = [row for row in rows if row["examples_per_class"] == size]
    model = [row["model_accuracy"] for row in group]
    base = [row["baseline_accuracy"] for row in group]
    out.append({"examples_per_class": size, "seeds": len(group),
                "train_examples": float(np.mean([row["train_examples"] for row in group])),
                "per_class": float(np.mean([row["train_examples"] / row["classes"] for row in group])),
                "model": (float(np.mean(model)), min(model), max(model)),
                "baseline": (float(np.mean(base)), min(base), max(base)),
                "difference": significance.seed_summary([row["difference"] for row in group]),
                "better": sum(row["verdict"] == "better" for row in group)})
  return out


def format_table(rows: Sequence[Dict]) -> str:
  """The curve as a fixed-width table: per size, both arms' mean [min, max] and the difference over seeds."""
  lines = [f"{'per class':>9}  {'train':>6}  {'model accuracy':>24}  {'baseline accuracy':>24}  "
           f"{'model - baseline (95% CI over seeds)':>38}  better"]
  for s in summarize(rows):
    arm = lambda v: f"{v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}]"
    d = s["difference"]
    ci = "" if d["ci"] is None else f" ({d['ci'][0]:+.4f} to {d['ci'][1]:+.4f})"
    lines.append(f"{s['examples_per_class']!s:>9}  {s['train_examples']:6.0f}  {arm(s['model']):>24}  "
                 f"{arm(s['baseline']):>24}  {d['mean']:+.4f}{ci:>29}  {s['better']}/{s['seeds']}")
  return "\n".join(lines)


def write_curve(out: pathlib.Path, rows: Sequence[Dict]):
  """Writes learning_curve.csv (one row per point) and learning_curve.png (accuracy against training examples per
  class on a log axis, mean and min-max band of each arm over seeds)."""
  out.mkdir(parents=True, exist_ok=True)
  with files.atomic_path(out / CURVE_CSV) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)

  points = summarize(rows)
  plots.plot_learning_curve(out / CURVE_PNG, [s["per_class"] for s in points],
                            {"fine-tuned model": [s["model"] for s in points],
                             "baseline": [s["baseline"] for s in points]})
