"""EfficientNet-Lite0 speed at the transfer demo's size (96x96, Fashion-MNIST): train images/s, the input
pipeline's images/s, and the head phase with the frozen-feature cache on and off; each measured --repeats times.

Prints one JSON line: for each figure its runs, median, min and max.

  python bench/lite0_speed.py [--repeats=3] [--image_size=96]
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
# 120 per class, 80/10/10: 960 training images (30 batches of 32), 120 val, 120 test.
DATA = ["--dataset=fashion_mnist", "--examples_per_class=120", "--val_fraction=0.1", "--test_fraction=0.1"]


def _summary(values):
  return {"runs": values, "median": statistics.median(values), "min": min(values), "max": max(values)}


def train(tmp: pathlib.Path, name: str, image_size: int, *extra) -> dict:
  """One tfft.train run on Lite0 ImageNet; returns its run_state.json plus the split sizes."""
  run_dir = tmp / name
  cmd = [PY, "-m", "tfft.train", *DATA, "--backbone=efficientnet_lite0", "--backbone_weights=imagenet",
         f"--image_size={image_size}", "--batch_size=32", "--early_stopping_patience=0", "--baseline=none",
         "--nowarmup", f"--model_dir={run_dir}", f"--export_dir={tmp / 'exports'}", f"--name={name}", *extra]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  state = json.loads((run_dir / "run_state.json").read_text())
  state["split_sizes"] = json.loads((run_dir / "metrics.json").read_text())["split_sizes"]
  return state


def pipeline_rate(image_size: int, *, files: bool) -> float:
  """Images/s of one shuffled epoch of tfft's tf.data pipeline over 960 Fashion-MNIST images, in memory or as PNG
  files (read + decode + resize), with nothing training; the decoded-image cache is off, so every image is done."""
  code = f"""
import json, pathlib, sys, tempfile, time
import numpy as np
import tensorflow as tf
from tfft.data import image_batches, images
ex = images.load_fashion_mnist().take(range(960))
if {files}:
  root = pathlib.Path(tempfile.mkdtemp())
  paths = []
  for i, p in enumerate(ex.pixels):
    path = root / f"{{i}}.png"; path.write_bytes(tf.io.encode_png(p[..., :1]).numpy()); paths.append(str(path))
  ex = images.ImageExamples(ex.labels, ex.ids, str(root), paths=paths)
labels = np.zeros(len(ex), np.int64)
ds = image_batches.make_dataset(ex, labels, np.arange(len(ex)), num_classes=10, image_size={image_size},
                                batch_size=32, shuffle=True, cache=False)
for _ in ds.take(2): pass  # traced and warm
start = time.perf_counter()
n = sum(int(x.shape[0]) for x, _ in ds)
print(json.dumps({{"images_per_sec": n / (time.perf_counter() - start)}}))
"""
  proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=REPO)
  if proc.returncode != 0:
    raise RuntimeError(proc.stderr[-4000:])
  return json.loads(proc.stdout.strip().splitlines()[-1])["images_per_sec"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--image_size", type=int, default=96)
  args = parser.parse_args()
  size = args.image_size
  runs = {"finetune_top4_images_per_sec": [], "finetune_all_images_per_sec": [], "head_cached_images_per_sec": [],
          "head_uncached_images_per_sec": [], "pipeline_memory_images_per_sec": [],
          "pipeline_png_images_per_sec": []}
  with tempfile.TemporaryDirectory(prefix="tfft-lite0-") as tmp:
    tmp = pathlib.Path(tmp)
    for rep in range(args.repeats):
      # Train step: the demo's phase 2 (top 4 blocks), and the whole model; the last of 2 epochs (the first
      # pays for tracing), validation excluded.
      for freeze, key in (("top_k:4", "finetune_top4_images_per_sec"), ("none", "finetune_all_images_per_sec")):
        state = train(tmp, f"ft_{freeze.replace(':', '')}_{rep}", size, "--head_epochs=0", "--epochs=2",
                      f"--freeze={freeze}", "--learning_rate=1e-4")
        runs[key].append(state["phases"]["finetune"]["history"]["examples_per_sec"][-1])
      # Head phase of 3 epochs on the frozen backbone: with the cache its pass over train and val is included.
      for cached in (True, False):
        state = train(tmp, f"head_{cached}_{rep}", size, "--head_epochs=3", "--head_min_steps=0", "--epochs=0",
                      "--freeze=all", "--cache_features" if cached else "--nocache_features")
        head = state["phases"]["head"]
        rate = head["epochs_run"] * state["split_sizes"]["train"] / head["seconds"]
        runs["head_cached_images_per_sec" if cached else "head_uncached_images_per_sec"].append(rate)
      runs["pipeline_memory_images_per_sec"].append(pipeline_rate(size, files=False))
      runs["pipeline_png_images_per_sec"].append(pipeline_rate(size, files=True))
      print(f"[lite0] repeat {rep + 1}: " + json.dumps({k: v[-1] for k, v in runs.items()}), file=sys.stderr,
            flush=True)
  print(json.dumps({"image_size": size, "date": time.strftime("%Y-%m-%d"),
                    **{k: _summary(v) for k, v in runs.items()}}))


if __name__ == "__main__":
  main()
