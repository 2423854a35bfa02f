"""The docs' seed table: finished run dirs of one recipe (one per seed), each beside its baseline, and their summary.

Usage: python bench/seed_table.py RUN_DIR [RUN_DIR ...]
Prints a Markdown table: per run, its seed, train and test sizes, test accuracy and macro-F1 of the model and of
the baseline, the paired accuracy difference with its 95% interval and verdict; then per column the mean, sample
std and 95% Student-t interval over seeds (tfft.report.significance.seed_summary).
"""

import json
import pathlib
import sys

from tfft import rundir
from tfft.report.significance import seed_summary


def _row(path: pathlib.Path):
  metrics = json.loads((path / "metrics.json").read_text())
  config = rundir.load_run(str(path)).config
  paired = metrics["baseline_comparison"]["accuracy"]
  return {"seed": config.train.seed, "train": metrics["split_sizes"]["train"], "test": metrics["num_examples"],
          "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
          "baseline accuracy": metrics["baseline"]["accuracy"], "baseline macro_f1": metrics["baseline"]["macro_f1"],
          "difference": paired["difference"], "ci": paired["ci"], "verdict": paired["verdict"]}


def main(paths):
  rows = [_row(pathlib.Path(p)) for p in paths]
  columns = ("accuracy", "macro_f1", "baseline accuracy", "baseline macro_f1", "difference")
  print("| seed | train / test | " + " | ".join(columns) + " | 95% CI of the difference (paired) | verdict |")
  print("|---" * (len(columns) + 4) + "|")
  for r in rows:
    print(f"| {r['seed']} | {r['train']} / {r['test']} | " + " | ".join(
        f"{r[c]:+.4f}" if c == "difference" else f"{r[c]:.4f}" for c in columns)
          + f" | {r['ci'][0]:+.4f} to {r['ci'][1]:+.4f} | {r['verdict']} |")
  for stat in ("mean", "std", "ci"):
    cells = []
    for c in columns:
      s = seed_summary([r[c] for r in rows])
      if stat == "ci":
        cells.append("n/a" if s["ci"] is None else f"{s['ci'][0]:.4f} to {s['ci'][1]:.4f}")
      elif s[stat] is None:
        cells.append("n/a")
      else:
        cells.append(f"{s[stat]:+.4f}" if c == "difference" and stat == "mean" else f"{s[stat]:.4f}")
    name = {"mean": "mean", "std": "std (sample)", "ci": "95% CI of the mean (t)"}[stat]
    better = sum(r["verdict"] == "better" for r in rows)
    print(f"| {name} | | " + " | ".join(cells) + f" | | {f'better on {better} of {len(rows)}' if stat == 'mean' else ''} |")


if __name__ == "__main__":
  if len(sys.argv) < 2:
    sys.exit(__doc__)
  main(sys.argv[1:])
