"""One lever of a text recipe at a time, judged on validation only: each variant is a flagfile plus overrides, run
as its own process per seed up to the committed end of training (no test scoring, no export: the same
`score_test=False` path tfft.search's trials take), timed as a whole process.

A variant's row: its best validation metric (the epoch the run keeps), the epoch it came from, training seconds
(the phases' own clocks) and the whole process's wall seconds, per seed, with the median and the seeds' range.

Usage:
  python bench/recipe_levers.py --flagfile=configs/quickstart.cfg --seeds=0,1,2 --out=bench/levers_quickstart.json \
      --variant='current:' --variant='no_head:--head_epochs=0 --nocache_features' ...

Each --variant is NAME:FLAGS, FLAGS added after the flagfile (later flags win). The table goes to OUT with .md.
"""

import argparse
import json
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from stats import spread as _spread  # noqa: E402  (bench/stats.py, beside this script)

CHILD = r'''
import json, pathlib, sys
from tfft import flags as tfft_flags
tfft_flags.FLAGS(["recipe_levers", *sys.argv[2:]])
config = tfft_flags.config_from_flags()
from tfft.fit import job
result = job.run(config, score_test=False)
phases = [{"name": p.name, "epochs": p.epochs_run, "best": p.best, "seconds": p.seconds,
           "history": {k: [float(x) for x in v] for k, v in (p.history or {}).items()}} for p in result.phases]
pathlib.Path(sys.argv[1]).write_text(json.dumps({"phases": phases, "monitor": config.train.monitor}))
'''


def run_variant(flagfile: str, flags, seed: int, tmp: pathlib.Path) -> dict:
  out = tmp / "result.json"
  argv = [sys.executable, "-c", CHILD, str(out), f"--flagfile={flagfile}", *flags, f"--seed={seed}",
          f"--model_dir={tmp / 'run'}", f"--export_dir={tmp / 'exports'}"]
  start = time.perf_counter()
  proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
  wall = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f"{' '.join(map(shlex.quote, argv))} failed:\n{proc.stderr[-3000:]}")
  result = json.loads(out.read_text())
  last = result["phases"][-1]
  return {"seed": seed, "val": last["best"], "epochs": [p["epochs"] for p in result["phases"]],
          "train_seconds": sum(p["seconds"] for p in result["phases"]), "wall_seconds": wall,
          "history": {p["name"]: p["history"] for p in result["phases"]}}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--flagfile", required=True)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--variant", action="append", required=True, help="NAME:FLAGS")
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  out = pathlib.Path(args.out)
  rows = json.loads(out.read_text())["variants"] if out.exists() else {}
  for spec in args.variant:
    name, _, flags = spec.partition(":")
    for seed in seeds:
      done = {r["seed"] for r in rows.get(name, {}).get("runs", [])}
      if seed in done:
        continue
      with tempfile.TemporaryDirectory() as tmp:
        run = run_variant(args.flagfile, shlex.split(flags), seed, pathlib.Path(tmp))
      row = rows.setdefault(name, {"flags": flags, "runs": []})
      row["runs"].append(run)
      row["val"] = _spread([r["val"] for r in row["runs"]])
      row["wall_seconds"] = _spread([r["wall_seconds"] for r in row["runs"]])
      row["train_seconds"] = _spread([r["train_seconds"] for r in row["runs"]])
      print(f"{name} seed {seed}: val {run['val']:.4f}, epochs {run['epochs']}, train {run['train_seconds']:.0f}s, "
            f"wall {run['wall_seconds']:.0f}s", flush=True)
      out.write_text(json.dumps({
          "date": time.strftime("%Y-%m-%d"), "flagfile": args.flagfile,
          "command": "python bench/recipe_levers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
          "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
          "variants": rows}, indent=1) + "\n")
  lines = ["| variant | flags | val (median, min-max) | training s | whole process s |", "|---|---|---|---|---|"]
  for name, row in rows.items():
    v, tr, w = row["val"], row["train_seconds"], row["wall_seconds"]
    lines.append(f"| {name} | `{row['flags']}` | {v['median']:.4f} ({v['min']:.4f}-{v['max']:.4f}) | "
                 f"{tr['median']:.0f} ({tr['min']:.0f}-{tr['max']:.0f}) | {w['median']:.0f} ({w['min']:.0f}-{w['max']:.0f}) |")
  out.with_suffix(".md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
