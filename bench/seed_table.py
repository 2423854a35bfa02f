"""The docs' seed tables: finished run dirs of one recipe (one per seed), each beside its baseline, and their summary.

Usage: python bench/seed_table.py RUN_DIR [RUN_DIR ...]

Prints a Markdown table: per run, its seed, train and test sizes, the task's headline test metrics for the model and
for its baseline on the same split, and the model - baseline difference (classification also the paired 95%
interval and verdict); then per column the mean, sample std and 95% Student-t interval over seeds
(tfft.report.significance.seed_summary). Every run must be of one --task.
"""

import json
import pathlib
import sys

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
}


def _row(path: pathlib.Path):
  metrics = json.loads((path / "metrics.json").read_text())
  config = rundir.load_run(str(path)).config
  task = config.data.task
  names, on, _ = HEADLINE[task]
  base = metrics["baseline"]
  row = {"task": task, "seed": config.train.seed, "train": metrics["split_sizes"]["train"],
         "test": metrics["num_examples"]}
  for name in names:
    row[name] = metrics[name]
    row[f"baseline {name}"] = base[name]
  row["difference"] = metrics[on] - base[on]
  paired = metrics.get("baseline_comparison", {}).get(on)
  row["ci"], row["verdict"] = (paired["ci"], paired["verdict"]) if paired else (None, "")
  return row


def table(paths) -> str:
  rows = [_row(pathlib.Path(p)) for p in paths]
  tasks = {r["task"] for r in rows}
  if len(tasks) != 1:
    raise SystemExit(f"the runs are of several tasks ({', '.join(sorted(tasks))}); give one recipe's runs")
  names, on, lower = HEADLINE[rows[0]["task"]]
  columns = [*names, *(f"baseline {n}" for n in names), "difference"]
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
  if len(sys.argv) < 2:
    sys.exit(__doc__)
  print(table(sys.argv[1:]))
