"""The docs' seed tables: finished run dirs of one recipe (one per seed), each beside its baseline, and their summary.

Usage: python bench/seed_table.py [--refit_baseline] RUN_DIR [RUN_DIR ...]

Prints a Markdown table: per run, its seed, train and test sizes, the task's headline test metrics for the model and
for its baseline on the same split, and the model - baseline difference (classification also the paired 95%
interval and verdict); then per column the mean, sample std and 95% Student-t interval over seeds
(tfft.report.significance.seed_summary). Every run must be of one --task.

--refit_baseline (classify and pairs): fits the baseline again, with tfft's current baseline code, on each run's
own split (its split_manifest.csv), and compares it with the model's test predictions (the run's
misclassified.csv names every test example the model got wrong, and what it predicted), instead of reading the
baseline the run's metrics.json holds.
"""

import csv
import json
import pathlib
import sys

import numpy as np

from tfft import rundir
from tfft.report.significance import seed_summary

# Per task: the headline metrics (model and baseline), the one the difference is taken on, and whether lower is
# better for it.
HEADLINE = {
    "classify": (("accuracy", "macro_f1"), "accuracy", False),
    "pairs": (("accuracy", "macro_f1"), "accuracy", False),
    "regress": (("rmse", "pearson", "r2"), "rmse", True),
    "multilabel": (("micro_f1", "macro_f1", "mean_average_precision"), "micro_f1", False),
    "tag": (("entity_f1", "token_accuracy"), "entity_f1", False),
    "generate": (("rougeL", "rouge1", "rouge2"), "rougeL", False),  # the baseline is the lead sentence
}
# Per task: more columns after the baseline's, each (column, path in metrics.json).
EXTRA = {
    "generate": (("base model rougeL", ("base_model", "rougeL")), ("perplexity", ("perplexity",)),
                 ("base model perplexity", ("base_model", "perplexity"))),
}


def refit_baseline(path: pathlib.Path, config, metrics) -> dict:
  """The baseline block of metrics.json as the run would write it with tfft's current baseline code."""
  from tfft import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfft.data import text as text_data  # pylint: disable=g-import-not-at-top
  from tfft.report import baseline as baseline_lib, metrics as metrics_lib, run_report  # pylint: disable=g-import-not-at-top

  if config.data.task not in ("classify", "pairs") or config_lib.modality(config.data) != "text":
    raise SystemExit(f"{path}: --refit_baseline reads text classify and pairs runs, not --task={config.data.task}")
  examples = text_data.load_examples(config.data)
  index = {example_id: i for i, example_id in enumerate(examples.ids)}
  split = {"train": [], "test": []}
  with open(path / "split_manifest.csv", newline="") as f:
    for row in csv.DictReader(f):
      if row["split"] in split:
        split[row["split"]].append(index[row["id"]])
  names = metrics["class_names"]
  labels = np.array([names.index(label) for label in examples.labels])
  with open(path / "misclassified.csv", newline="") as f:
    wrong = {row["id"]: names.index(row["predicted_label"]) for row in csv.DictReader(f)}
  test = split["test"]
  y_true = labels[test]
  y_pred = np.array([wrong.get(examples.ids[i], labels[i]) for i in test])
  if (y_pred == y_true).mean() != metrics["accuracy"]:
    raise SystemExit(f"{path}: the model's test predictions do not give its metrics.json accuracy")
  texts = [tuple(t) if isinstance(t, (list, tuple)) else t for t in examples.texts]
  scores = baseline_lib.text_baseline([texts[i] for i in split["train"]], labels[split["train"]],
                                      [texts[i] for i in test], num_classes=len(names))
  base = metrics_lib.scalar_metrics(metrics_lib.classification_metrics(y_true, scores, names))
  comparison = run_report.compare_with_baseline(y_true, y_pred, scores.argmax(axis=-1), len(names))
  return {"baseline": base, "baseline_comparison": comparison}


def _row(path: pathlib.Path, refit: bool = False):
  metrics = json.loads((path / "metrics.json").read_text())
  config = rundir.load_run(str(path)).config
  task = config.data.task
  names, on, _ = HEADLINE[task]
  if refit:
    metrics.update(refit_baseline(path, config, metrics))
  base = metrics["baseline"]
  row = {"task": task, "seed": config.train.seed, "train": metrics["split_sizes"]["train"],
         "test": metrics["num_examples"]}
  for name in names:
    row[name] = metrics[name]
    row[f"baseline {name}"] = base[name]
  for column, keys in EXTRA.get(task, ()):
    value = metrics
    for key in keys:
      value = value[key]
    row[column] = value
  row["difference"] = metrics[on] - base[on]
  paired = metrics.get("baseline_comparison", {}).get(on)
  row["ci"], row["verdict"] = (paired["ci"], paired["verdict"]) if paired else (None, "")
  return row


def table(paths, refit_baseline: bool = False) -> str:
  rows = [_row(pathlib.Path(p), refit_baseline) for p in paths]
  tasks = {r["task"] for r in rows}
  if len(tasks) != 1:
    raise SystemExit(f"the runs are of several tasks ({', '.join(sorted(tasks))}); give one recipe's runs")
  names, on, lower = HEADLINE[rows[0]["task"]]
  columns = [*names, *(f"baseline {n}" for n in names), *(c for c, _ in EXTRA.get(rows[0]["task"], ())),
             "difference"]
  paired = any(r["ci"] for r in rows)
  head = ["seed", "train / test", *(f"model - baseline {on}" if c == "difference" else c for c in columns)]
  if paired:
    head += ["95% CI of the difference (paired)", "verdict"]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for r in rows:
    cells = [str(r["seed"]), f"{r['train']} / {r['test']}",
             *(f"{r[c]:+.4f}" if c == "difference" else f"{r[c]:.4f}" for c in columns)]
    if paired:
      cells += [f"{r['ci'][0]:+.4f} to {r['ci'][1]:+.4f}" if r["ci"] else "", r["verdict"]]
    lines.append("| " + " | ".join(cells) + " |")
  wins = sum((r["difference"] < 0) if lower else (r["difference"] > 0) for r in rows)
  for stat, label in (("mean", "mean"), ("std", "std (sample)"), ("ci", "95% CI of the mean (t)")):
    cells = [label, ""]
    for c in columns:
      s = seed_summary([r[c] for r in rows])
      if stat == "ci":
        cells.append("n/a" if s["ci"] is None else f"{s['ci'][0]:+.4f} to {s['ci'][1]:+.4f}" if c == "difference"
                     else f"{s['ci'][0]:.4f} to {s['ci'][1]:.4f}")
      elif s[stat] is None:
        cells.append("n/a")
      else:
        cells.append(f"{s[stat]:+.4f}" if c == "difference" and stat == "mean" else f"{s[stat]:.4f}")
    if paired:
      better = sum(r["verdict"] == "better" for r in rows)
      cells += ["", f"better on {better} of {len(rows)}" if stat == "mean" else ""]
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  lines.append(f"The model's {on} is {'below' if lower else 'above'} the baseline's on {wins} of {len(rows)} seeds "
               f"({'lower' if lower else 'higher'} is better).")
  return "\n".join(lines)


if __name__ == "__main__":
  refit = "--refit_baseline" in sys.argv[1:]
  paths = [a for a in sys.argv[1:] if a != "--refit_baseline"]
  if not paths:
    sys.exit(__doc__)
  print(table(paths, refit))
