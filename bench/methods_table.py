"""The fine-tuning methods side by side: the default recipe, LoRA, layer-wise LR decay and gradual unfreezing.

Usage: python bench/methods_table.py --out=DIR [--seeds=0,1,2] [--datasets=rt,bbc] [--methods=...]
       python bench/methods_table.py --out=DIR --table_only

For each dataset (a shipped flagfile and a training size), each seed and each method, one `python -m tfft.train`
in its own process, seed-major (every method of seed 0, then seed 1, ...), so a partial run still compares the
methods on the same seeds. Each run's wall time, CPU time (user + system) and peak RSS come from the process's own
resource usage (os.wait4); accuracy, validation and the phase-2 trainable parameters from its run dir. Results go
to DIR/results.jsonl (one line per run; runs already there are skipped, so the script resumes) and the table to
stdout: per dataset and method, the mean, sample std and 95% Student-t interval over seeds
(tfft.report.significance.seed_summary), and each method's paired test-accuracy difference from the default.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfft.report.significance import seed_summary  # noqa: E402

# The data: a shipped flagfile at a training size small enough for 24 runs on 2 cores, large enough that phase 2
# runs a few dozen steps (2 epochs of the flagfile's batch 32).
DATASETS = {
    "rt": ("configs/quickstart.cfg", ["--train_examples_per_class=256"]),
    "bbc": ("configs/bbc_news.cfg", ["--train_examples_per_class=64"]),
}
# Phase 2 of each method; the rest is the flagfile's. LoRA takes 10x the flagfile's LR (adapters start at zero and
# usually want a higher one); layer decay and gradual unfreezing keep it.
METHODS = {
    "default": {"rt": [], "bbc": []},
    "lora8": {"rt": ["--freeze=none", "--lora_rank=8", "--learning_rate=5e-4"],
              "bbc": ["--freeze=none", "--lora_rank=8", "--learning_rate=1e-3"]},
    "layer_decay0.8": {"rt": ["--freeze=none", "--layer_decay=0.8"], "bbc": ["--freeze=none", "--layer_decay=0.8"]},
    "gradual": {"rt": ["--freeze=none", "--unfreeze=gradual", "--unfreeze_every=1"],
                "bbc": ["--freeze=none", "--unfreeze=gradual", "--unfreeze_every=1"]},
}


def _phase2_trainable(run_dir: pathlib.Path) -> int:
  """The largest trainable-parameter count of phase 2 (the last stage's under gradual unfreezing)."""
  phases = json.loads((run_dir / "run_state.json").read_text())["phases"]
  return max(p["trainable_params"] for name, p in phases.items() if name != "head")


def _best_val(run_dir: pathlib.Path) -> float:
  phases = json.loads((run_dir / "run_state.json").read_text())["phases"]
  return max(max(p["history"]["val_accuracy"]) for name, p in phases.items() if name != "head")


def run_one(out: pathlib.Path, dataset: str, method: str, seed: int) -> dict:
  flagfile, data_flags = DATASETS[dataset]
  where = out / dataset / method / f"seed{seed}"
  where.mkdir(parents=True, exist_ok=True)
  cmd = [sys.executable, "-m", "tfft.train", f"--flagfile={flagfile}", *data_flags, *METHODS[method][dataset],
         f"--seed={seed}", f"--model_dir={where / 'run'}", f"--export_dir={where / 'exports'}", "--overwrite"]
  start = time.monotonic()
  with open(where / "log.txt", "w") as log:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
  wall = time.monotonic() - start
  code = os.waitstatus_to_exitcode(status)
  if code != 0:
    raise SystemExit(f"{dataset} {method} seed {seed} failed (exit {code}); see {where / 'log.txt'}")
  metrics = json.loads((where / "run" / "metrics.json").read_text())
  return {"dataset": dataset, "method": method, "seed": seed, "command": " ".join(cmd[1:]),
          "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"],
          "baseline_accuracy": metrics["baseline"]["accuracy"], "best_val_accuracy": _best_val(where / "run"),
          "trainable_params": _phase2_trainable(where / "run"), "wall_s": wall,
          "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_gb": usage.ru_maxrss / 2**20,
          "train": metrics["split_sizes"]["train"], "test": metrics["num_examples"]}


def _cell(values, digits):
  s = seed_summary(values)
  if len(values) < 2:
    return f"{s['mean']:.{digits}f}"
  return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def table(rows) -> str:
  lines = []
  for dataset in DATASETS:
    of = [r for r in rows if r["dataset"] == dataset]
    if not of:
      continue
    first = of[0]
    lines += [f"**{dataset}** ({first['train']} training / {first['test']} test examples; mean ± std over seeds; "
              "difference: paired by seed, mean and 95% interval)", "",
              "| method | seeds | test accuracy | best val accuracy | test acc - default | phase-2 trainable params "
              "| wall s | CPU s | peak RSS GB |", "|---|---|---|---|---|---|---|---|---|"]
    default = {r["seed"]: r["test_accuracy"] for r in of if r["method"] == "default"}
    for method in METHODS:
      rs = sorted((r for r in of if r["method"] == method), key=lambda r: r["seed"])
      if not rs:
        continue
      diffs = [r["test_accuracy"] - default[r["seed"]] for r in rs if r["seed"] in default]
      if method == "default" or len(diffs) < 2:
        diff = "" if method == "default" else (f"{diffs[0]:+.4f}" if diffs else "")
      else:
        s = seed_summary(diffs)
        diff = f"{s['mean']:+.4f} [{s['ci'][0]:+.4f}, {s['ci'][1]:+.4f}]"
      lines.append(f"| {method} | {','.join(str(r['seed']) for r in rs)} | "
                   f"{_cell([r['test_accuracy'] for r in rs], 4)} | {_cell([r['best_val_accuracy'] for r in rs], 4)} | "
                   f"{diff} | {rs[0]['trainable_params']:,} | {_cell([r['wall_s'] for r in rs], 0)} | "
                   f"{_cell([r['cpu_s'] for r in rs], 0)} | {_cell([r['peak_rss_gb'] for r in rs], 2)} |")
    baseline = [r["baseline_accuracy"] for r in of if r["method"] == "default"]
    if baseline:
      lines.append(f"| TF-IDF baseline (same splits) | | {_cell(baseline, 4)} | | | | | | |")
    lines.append("")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, type=pathlib.Path)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--datasets", default=",".join(DATASETS))
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--table_only", action="store_true")
  args = parser.parse_args()
  results = args.out / "results.jsonl"
  args.out.mkdir(parents=True, exist_ok=True)
  rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
  if not args.table_only:
    done = {(r["dataset"], r["method"], r["seed"]) for r in rows}
    for seed in (int(s) for s in args.seeds.split(",")):
      for dataset in args.datasets.split(","):
        for method in args.methods.split(","):
          if (dataset, method, seed) in done:
            continue
          row = run_one(args.out, dataset, method, seed)
          rows.append(row)
          with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
          print(f"{time.strftime('%H:%M:%S')} {dataset} {method} seed {seed}: test {row['test_accuracy']:.4f} "
                f"wall {row['wall_s']:.0f}s", flush=True)
  print(table(rows))


if __name__ == "__main__":
  main()
