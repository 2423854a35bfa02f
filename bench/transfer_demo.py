"""The image transfer demo: EfficientNet-Lite0 ImageNet-pretrained vs the same model from random weights on
Fashion-MNIST, at 10 and 100 labels per class, 3 seeds each, beside each run's own pixel baseline.

Each (arm, labels, seed) is one `python -m tfft.train --flagfile=configs/fashion_lite0_<arm>.cfg` run; a seed fixes
the split and the few-shot draw, so the arms of one seed train on the same images and are scored on the same test
images. The numbers come from each run's metrics.json. Writes the table to OUT_DIR/transfer_demo.md and the raw
numbers to OUT_DIR/transfer_demo.json; a run whose metrics.json exists is not run again.

  python bench/transfer_demo.py [--out_dir=runs/transfer_demo] [--seeds=0,1,2] [--labels=10,100]
"""

import datetime
import json
import pathlib
import statistics
import subprocess
import sys
import time

from absl import app, flags, logging

REPO = pathlib.Path(__file__).resolve().parents[1]
ARMS = {"imagenet": "configs/fashion_lite0_imagenet.cfg", "scratch": "configs/fashion_lite0_scratch.cfg"}

flags.DEFINE_string("out_dir", "runs/transfer_demo", "Where the runs and the table go.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: each fixes the split and the few-shot draw.")
flags.DEFINE_list("labels", ["10", "100"], "Training images per class.")
flags.DEFINE_list("arms", list(ARMS), "Which arms to run (the table needs both; runs already done are read back).")
flags.DEFINE_bool("report_only", False, "Run nothing: the table of the runs in --out_dir that are done.")
FLAGS = flags.FLAGS


def command(arm: str, labels: int, seed: int, run_dir: pathlib.Path):
  return [sys.executable, "-m", "tfft.train", f"--flagfile={ARMS[arm]}", f"--train_examples_per_class={labels}",
          f"--seed={seed}", f"--model_dir={run_dir}", f"--export_dir={run_dir.parent / 'exports'}",
          f"--name={run_dir.name}", "--overwrite"]


def run_one(arm: str, labels: int, seed: int, out_dir: pathlib.Path) -> dict:
  """Trains one arm (unless its metrics.json exists) and returns its test numbers and wall time."""
  run_dir = out_dir / f"{arm}_{labels}_seed{seed}"
  metrics_file = run_dir / "metrics.json"
  seconds = None
  if not metrics_file.is_file():
    start = time.time()
    # Straight to the log file, not a pipe: the run's output can be followed, and the run outlives this script.
    with open(out_dir / f"{run_dir.name}.log", "w") as log:
      proc = subprocess.run(command(arm, labels, seed, run_dir), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - start
    if proc.returncode != 0:
      raise RuntimeError(f"{run_dir.name} failed (exit {proc.returncode}); see {out_dir / run_dir.name}.log")
  metrics = json.loads(metrics_file.read_text())
  return {"arm": arm, "labels": labels, "seed": seed, "accuracy": metrics["accuracy"],
          "macro_f1": metrics["macro_f1"], "baseline_accuracy": metrics["baseline"]["accuracy"],
          "baseline_macro_f1": metrics["baseline"]["macro_f1"], "split_sizes": metrics["split_sizes"],
          "seconds": seconds}


def _mean_sd(values):
  return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def table(rows) -> str:
  """Per labels-per-class: each arm's accuracy per seed, mean ± sample std, and the pixel baseline."""
  lines = ["| labels/class | seed | Lite0 ImageNet | Lite0 scratch | pixel baseline |", "|---|---|---|---|---|"]
  for labels in sorted({r["labels"] for r in rows}):
    by = {(r["arm"], r["seed"]): r for r in rows if r["labels"] == labels}
    seeds = sorted({r["seed"] for r in rows if r["labels"] == labels})
    cell = lambda arm, seed: f"{by[(arm, seed)]['accuracy']:.4f}" if (arm, seed) in by else "not run"
    for seed in seeds:
      # Both arms of a seed score the same test images with the same baseline (same split, same draw).
      base = (by.get(("imagenet", seed)) or by[("scratch", seed)])["baseline_accuracy"]
      lines.append(f"| {labels} | {seed} | {cell('imagenet', seed)} | {cell('scratch', seed)} | {base:.4f} |")
    col = lambda arm, key: [by[(arm, s)][key] for s in seeds if (arm, s) in by]
    mean = lambda arm, key: _mean_sd(col(arm, key)) if col(arm, key) else "not run"
    base = [(by.get(("imagenet", s)) or by[("scratch", s)])["baseline_accuracy"] for s in seeds]
    lines.append(f"| {labels} | mean ± sd | {mean('imagenet', 'accuracy')} | {mean('scratch', 'accuracy')} | "
                 f"{_mean_sd(base)} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  out_dir = (REPO / FLAGS.out_dir) if not pathlib.Path(FLAGS.out_dir).is_absolute() else pathlib.Path(FLAGS.out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  rows = []
  for labels in map(int, FLAGS.labels):
    for seed in map(int, FLAGS.seeds):
      for arm in FLAGS.arms:
        if FLAGS.report_only and not (out_dir / f"{arm}_{labels}_seed{seed}" / "metrics.json").is_file():
          continue
        rows.append(run_one(arm, labels, seed, out_dir))
        logging.info("%s", rows[-1])
  # Runs of the other arms that exist already (e.g. from a run with --arms) join the table.
  for labels in map(int, FLAGS.labels):
    for seed in map(int, FLAGS.seeds):
      for arm in set(ARMS) - set(FLAGS.arms):
        if (out_dir / f"{arm}_{labels}_seed{seed}" / "metrics.json").is_file():
          rows.append(run_one(arm, labels, seed, out_dir))
  date = datetime.date.today().isoformat()
  text = table(rows)
  (out_dir / "transfer_demo.json").write_text(json.dumps({"date": date, "rows": rows}, indent=1))
  command_line = " ".join(["python bench/transfer_demo.py", *sys.argv[1:]])
  (out_dir / "transfer_demo.md").write_text(f"Written {date}: {command_line}\n\n{text}\n")
  print(text)


if __name__ == "__main__":
  app.run(main)
