"""`make bench`: every contender in one run on this machine; writes bench/results.md and bench/results.json.

EfficientNet-Lite0's rows come from bench/lite0_speed.py (it needs Debian's dataset-fashion-mnist).

Each figure is reported as a ratio against a baseline measured in the same run; absolute numbers go to the JSON
for reference. Throughput is steady state: the last of two epochs (the first pays for tracing).

Usage: python bench/run.py [--examples=320] [--skip_hf] [--report_only=bench/results.json]
"""

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PY = sys.executable
HF_PY = REPO / ".venv-bench" / "bin" / "python"
SEQ, BATCH = 128, 32


def _run(cmd, env=None):
  """Runs a command and returns its stdout; a failure raises with the end of its stderr."""
  proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env={**os.environ, **(env or {})},
                        cwd=REPO)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  return proc.stdout


def _peak_rss_mb(cmd, env=None):
  """Runs cmd and returns (stdout, its peak RSS in MB) via os.wait4."""
  full_env = {**os.environ, **(env or {})}
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, text=True, env=full_env, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0), err.seek(0)
    if proc.returncode != 0:
      raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.read()[-4000:]}")
    return out.read(), usage.ru_maxrss / 1024


def _last_json(out: str):
  return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def write_data(tmp: pathlib.Path, examples: int):
  """BBC News as jsonl: a balanced subset of full articles, and every article's headline (its first line)."""
  sys.path.insert(0, str(REPO))
  from tfft.config import DataConfig
  from tfft.data import text as text_data

  bbc = text_data.load_examples(DataConfig(dataset="bbc_news"))
  classes = text_data.sorted_class_names(bbc.labels)
  per_class = math.ceil(examples / len(classes))
  taken = {c: 0 for c in classes}
  full, headlines = [], []
  for text, label in zip(bbc.texts, bbc.labels):
    headlines.append({"text": text.strip().splitlines()[0], "label": label})
    if taken[label] < per_class:
      taken[label] += 1
      full.append({"text": text, "label": label})
  paths = {"full": tmp / "bbc_full.jsonl", "headlines": tmp / "bbc_headlines.jsonl"}
  for name, rows in (("full", full), ("headlines", headlines)):
    paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
  return paths, len(full), len(headlines)


def minilm_dir() -> str:
  sys.path.insert(0, str(REPO))
  from tfft.model import text_backbones
  return text_backbones.resolve("minilm-l6").source


def tfft_train(tmp: pathlib.Path, name: str, data: pathlib.Path, *extra, env=None):
  """Runs tfft.train and returns (its run_state.json plus the split sizes, its peak RSS in MB)."""
  run_dir = tmp / name
  args = [PY, "-m", "tfft.train", f"--dataset=csv:{data}", "--backbone=minilm-l6", f"--sequence_length={SEQ}",
          f"--batch_size={BATCH}", "--val_fraction=0.05", "--test_fraction=0.05", f"--model_dir={run_dir}",
          f"--export_dir={tmp / 'exports'}", f"--name={name}", "--early_stopping_patience=0",
          "--baseline=none", "--nowarmup", *extra]
  _, rss = _peak_rss_mb(args, env)
  state = json.loads((run_dir / "run_state.json").read_text())
  state["split_sizes"] = json.loads((run_dir / "metrics.json").read_text())["split_sizes"]
  return state, rss


def steady(state, phase="finetune"):
  """Examples/s of the last epoch of a phase (tfft logs it per epoch, validation excluded)."""
  return state["phases"][phase]["history"]["examples_per_sec"][-1]


def matmul_peak(dtype: str) -> float:
  """GFLOP/s of a large matmul in TF on this machine, with tfft's kernel settings."""
  code = f"""
import os, time, json
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
import tensorflow as tf
a = tf.cast(tf.random.normal((4096, 1536)), tf.{dtype}); b = tf.cast(tf.random.normal((1536, 1536)), tf.{dtype})
f = tf.function(lambda a, b: tf.matmul(a, b))
f(a, b).numpy()
best = 0
for _ in range(3):
  t = time.perf_counter()
  for _ in range(10): r = f(a, b)
  r.numpy()
  best = max(best, 2 * 4096 * 1536 * 1536 * 10 / (time.perf_counter() - t) / 1e9)
print(json.dumps({{"gflops": best}}))
"""
  return _last_json(_run([PY, "-c", code]))["gflops"]


def train_flops_per_example(checkpoint: str, seq: int, classes: int = 5) -> float:
  """Model FLOPs of one training example: 3x the forward matmuls (forward, and backward's two), as in MFU."""
  cfg = json.loads((pathlib.Path(checkpoint) / "config.json").read_text())
  h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
  per_layer = 2 * seq * (4 * h * h + 2 * h * inter) + 2 * 2 * seq * seq * h  # projections, FFN, QK^T and AV
  return 3 * (layers * per_layer + 2 * h * classes)


def serving_bench(export: pathlib.Path, texts, checkpoint_run: pathlib.Path):
  code = r"""
import json, sys, time, pathlib
import tfft  # first: it sets TF's kernel options before TensorFlow loads, as in a tfft run
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa
from tfft import rundir
from tfft.data import windows
from tfft.model import heads, text_backbones
texts = json.loads(open(sys.argv[2]).read())
sig = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
run = pathlib.Path(sys.argv[3])
cfg = rundir.load_run(str(run)).config
spec = text_backbones.resolve(cfg.model.backbone)
pooling = spec.default_pooling if cfg.model.pooling == "auto" else cfg.model.pooling
labels = (run / "labels.txt").read_text().split()
model = heads.build_text_classifier(text_backbones.load_backbone(spec), num_classes=len(labels), pooling=pooling)
model.load_weights(str(run / "checkpoints" / "after_finetune.weights.h5"))
pre = text_backbones.load_preprocessor(spec, cfg.model.sequence_length)
keras_fn = tf.function(lambda t: windows.windowed_logits(model, pre, t, 1, cfg.train.pad_to_multiple_of),
                       input_signature=[tf.TensorSpec([None], tf.string)])
batch = tf.constant(texts[:32])
def rate(fn, reps=5):
  fn(batch); best = 0
  for _ in range(reps):
    t = time.perf_counter(); out = fn(batch); _ = [v.numpy() for v in (out.values() if isinstance(out, dict) else [out])]
    best = max(best, 32 / (time.perf_counter() - t))
  return best
served, in_process = rate(lambda b: sig(text=b)), rate(keras_fn)
lat = []
for i in range(60):
  one = tf.constant(texts[i % len(texts):i % len(texts) + 1])
  t = time.perf_counter(); sig(text=one)["probabilities"].numpy(); lat.append(time.perf_counter() - t)
lat = np.array(lat[10:]) * 1000
print(json.dumps({"served_ex_per_s": served, "in_process_ex_per_s": in_process,
                  "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95))}))
"""
  path = export.parent.parent / "serving_texts.json"
  path.write_text(json.dumps(texts))
  return _last_json(_run([PY, "-c", code, export, path, checkpoint_run]))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--examples", type=int, default=320, help="BBC articles in the MiniLM runs (90% train)")
  parser.add_argument("--skip_hf", action="store_true", help="leave out the HF Trainer contender")
  parser.add_argument("--out", default=str(BENCH))
  parser.add_argument("--report_only", default="",
                      help="rewrite the table from this results.json's measurements, measuring nothing")
  args = parser.parse_args()
  if args.report_only:
    write_report(json.loads(pathlib.Path(args.report_only).read_text()), minilm_dir(), pathlib.Path(args.out))
    return

  results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.processor() or
             platform.machine(), "cores": os.cpu_count(), "seq": SEQ, "batch": BATCH, "measurements": {}}
  m = results["measurements"]

  def note(key, value):
    m[key] = value
    print(f"[bench] {key}: {json.dumps(value)}", flush=True)

  with tempfile.TemporaryDirectory(prefix="tfft-bench-") as tmp:
    tmp = pathlib.Path(tmp)
    paths, n_full, n_head = write_data(tmp, args.examples)
    ckpt = minilm_dir()
    full_ft = ["--head_epochs=0", "--epochs=2", "--freeze=none", "--nocache_features", "--learning_rate=5e-5"]

    # 7. The machine's own matmul peak, for MFU.
    note("matmul_peak_gflops", {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16")})

    # 1. Training throughput: (a) tfft.train end to end, (b) raw Keras fit, (c) HF Trainer; fp32 and bf16.
    for precision in ("float32", "mixed_bfloat16"):
      state, rss = tfft_train(tmp, f"a_{precision}", paths["full"], *full_ft, f"--mixed_precision={precision}")
      note(f"a_tfft_{precision}", {"examples_per_sec": steady(state), "peak_rss_mb": rss})
      raw = _last_json(_run([PY, BENCH / "keras_raw.py", paths["full"], ckpt, f"--precision={precision}",
                             f"--seq={SEQ}", f"--batch_size={BATCH}"], env={"TF_ENABLE_ONEDNN_OPTS": "1"}))
      note(f"b_keras_{precision}", raw)
    raw = _last_json(_run([PY, BENCH / "keras_raw.py", paths["full"], ckpt, f"--seq={SEQ}"],
                          env={"TF_ENABLE_ONEDNN_OPTS": "0"}))
    note("b_keras_float32_onednn_off", raw)
    # --padding=dynamic on long texts: what --padding=auto (the default) avoids there.
    for flag in ("--jit_compile", "--steps_per_execution=4", "--padding=dynamic"):
      state, _ = tfft_train(tmp, "a_" + flag.strip("-").split("=")[0], paths["full"], *full_ft, flag)
      note(f"a_tfft_float32{flag}", {"examples_per_sec": steady(state)})
    if not args.skip_hf:
      if not HF_PY.exists():
        raise SystemExit(f"{HF_PY} is missing: run `make bench` (it builds .venv-bench), or pass --skip_hf")
      for bf16 in (False, True):
        out = _run([HF_PY, BENCH / "hf_trainer.py", paths["full"], ckpt, f"--seq={SEQ}", f"--batch_size={BATCH}"]
                   + (["--bf16"] if bf16 else []))
        note(f"c_hf_{'bf16' if bf16 else 'float32'}", _last_json(out))

    # 2. Frozen backbone: the head phase with and without the feature cache (cache pass included).
    for cached in (True, False):
      state, _ = tfft_train(tmp, f"frozen_{cached}", paths["full"], "--head_epochs=3", "--epochs=0",
                            "--freeze=all", "--head_learning_rate=1e-3",
                            "--cache_features" if cached else "--nocache_features")
      head = state["phases"]["head"]
      examples = head["epochs_run"] * state["split_sizes"]["train"]
      note(f"frozen_head_cached_{cached}", {"phase_seconds": head["seconds"], "epochs": head["epochs_run"],
                                            "examples_per_sec": examples / head["seconds"]})

    # 3. Short texts: headlines, fixed padding vs dynamic vs bucketed, and what the default (auto) picks.
    for padding in ("fixed", "dynamic", "bucket", "auto"):
      state, _ = tfft_train(tmp, f"short_{padding}", paths["headlines"], *full_ft, f"--padding={padding}")
      note(f"short_{padding}", {"examples_per_sec": steady(state)})

    # 5. Image input pipeline (read, decode, resize, augment) against the train step of a small backbone.
    note("image_pipeline", _last_json(_run([PY, BENCH / "image_pipeline.py"])))

    # 6. EfficientNet-Lite0 at the image transfer demo's size: train step, input pipeline, feature cache; 3 times.
    note("lite0", _last_json(_run([PY, BENCH / "lite0_speed.py", "--repeats=3"])))

    # 4. Serving: the export of run (a) fp32 against the same model in-process.
    export = tmp / "exports" / "a_float32" / "1"
    texts = [json.loads(line)["text"] for line in paths["full"].read_text().splitlines()]
    note("serving", serving_bench(export, texts, tmp / "a_float32"))
  write_report(results, ckpt, pathlib.Path(args.out))


def write_report(results, ckpt: str, out: pathlib.Path):
  """Adds the targets and ratios to `results` and writes results.json and results.md into `out`."""
  m = results["measurements"]

  def ratio(a, b):
    return a / b if b else float("nan")

  flops = train_flops_per_example(ckpt, SEQ)
  a32, abf = m["a_tfft_float32"]["examples_per_sec"], m["a_tfft_mixed_bfloat16"]["examples_per_sec"]
  targets = [
      ("P1", "(a) tfft.train / (b) raw Keras fit, fp32", ratio(a32, m["b_keras_float32"]["examples_per_sec"]), 0.95),
      ("P1", "(a) / (b), mixed_bfloat16", ratio(abf, m["b_keras_mixed_bfloat16"]["examples_per_sec"]), 0.95),
  ]
  if "c_hf_float32" in m:
    targets += [("P2", "(a) / (c) HF Trainer, fp32", ratio(a32, m["c_hf_float32"]["examples_per_sec"]), 1.6),
                ("P2", "(a) / (c), bf16", ratio(abf, m["c_hf_bf16"]["examples_per_sec"]), 1.1)]
  targets += [
      ("P3", "frozen head phase, cached / full fine-tune (a)",
       ratio(m["frozen_head_cached_True"]["examples_per_sec"], a32), 5.0),
      ("P4", "short texts: bucketed / fixed padding",
       ratio(m["short_bucket"]["examples_per_sec"], m["short_fixed"]["examples_per_sec"]), 3.0),
      ("P5", "serving signature / in-process Keras, batch 32",
       ratio(m["serving"]["served_ex_per_s"], m["serving"]["in_process_ex_per_s"]), 0.9),
      ("P6", "image pipeline, first epoch (every file decoded) / train step of mobilenetv3small at 128x128",
       ratio(m["image_pipeline"]["pipeline_ex_per_s"], m["image_pipeline"]["train_step_ex_per_s"]), 3.0),
      ("P7", "MFU fp32: (a) model FLOP/s / matmul peak", a32 * flops / 1e9 / m["matmul_peak_gflops"]["float32"], 0.6),
      ("P7", "MFU bf16", abf * flops / 1e9 / m["matmul_peak_gflops"]["bfloat16"], 0.6),
      ("P8", "peak RSS of run (a) fp32, GB (target is a ceiling)", m["a_tfft_float32"]["peak_rss_mb"] / 1024, 4.0),
  ]
  results["train_flops_per_example"] = flops
  results["targets"] = [{"id": i, "what": w, "value": v, "target": t,
                         "met": (v <= t) if i == "P8" else (v >= t)} for i, w, v, t in targets]
  results["ratios"] = {
      "oneDNN on / off, raw Keras fp32": ratio(m["b_keras_float32"]["examples_per_sec"],
                                               m["b_keras_float32_onednn_off"]["examples_per_sec"]),
      "--jit_compile / default": ratio(m["a_tfft_float32--jit_compile"]["examples_per_sec"], a32),
      "--steps_per_execution=4 / default": ratio(m["a_tfft_float32--steps_per_execution=4"]["examples_per_sec"], a32),
      "mixed_bfloat16 / float32, tfft": ratio(abf, a32),
      "short texts: dynamic / fixed padding": ratio(m["short_dynamic"]["examples_per_sec"],
                                                    m["short_fixed"]["examples_per_sec"]),
      "frozen head phase, uncached / full fine-tune": ratio(m["frozen_head_cached_False"]["examples_per_sec"], a32),
      "image pipeline, read + decode + resize only / train step":
          ratio(m["image_pipeline"]["decode_resize_only_ex_per_s"], m["image_pipeline"]["train_step_ex_per_s"]),
      "image pipeline, later epochs (decoded images cached) / train step":
          ratio(m["image_pipeline"]["cached_augmented_ex_per_s"], m["image_pipeline"]["train_step_ex_per_s"]),
  }
  if "short_auto" in m:  # absent from results saved before these were measured
    results["ratios"]["short texts: --padding=auto (the default) / fixed"] = ratio(
        m["short_auto"]["examples_per_sec"], m["short_fixed"]["examples_per_sec"])
    results["ratios"]["long texts: --padding=dynamic / auto (the default), fp32"] = ratio(
        m["a_tfft_float32--padding=dynamic"]["examples_per_sec"], a32)
  if "augment_one_warp_ex_per_s" in m["image_pipeline"]:  # absent from results saved before it was measured
    results["ratios"]["augmentation: one warp / Keras layer chain"] = ratio(
        m["image_pipeline"]["augment_one_warp_ex_per_s"], m["image_pipeline"]["augment_keras_chain_ex_per_s"])
  if "lite0" in m:  # absent from results saved before it was measured
    lite0 = m["lite0"]
    results["ratios"]["Lite0 head phase: feature cache on / off (cache pass included)"] = ratio(
        lite0["head_cached_images_per_sec"]["median"], lite0["head_uncached_images_per_sec"]["median"])
    results["ratios"]["Lite0 input pipeline (PNG files) / train step (top 4 blocks)"] = ratio(
        lite0["pipeline_png_images_per_sec"]["median"], lite0["finetune_top4_images_per_sec"]["median"])
  (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  (out / "results.md").write_text(to_markdown(results))
  print((out / "results.md").read_text())


def to_markdown(r) -> str:
  lines = [f"# tfft benchmark ({r['date']}, {r['cores']} cores, seq {r['seq']}, batch {r['batch']})", "",
           "Ratios are against baselines measured in the same run; absolute figures are in results.json.", "",
           "| target | measured | goal | met |", "|---|---|---|---|"]
  for t in r["targets"]:
    goal = f"<= {t['target']:g}" if t["id"] == "P8" else f">= {t['target']:g}"
    lines.append(f"| {t['id']}: {t['what']} | {t['value']:.2f} | {goal} | {'yes' if t['met'] else 'NO'} |")
  lines += ["", "| other ratio | measured |", "|---|---|"]
  lines += [f"| {k} | {v:.2f} |" for k, v in r["ratios"].items()]
  lite0 = r["measurements"].get("lite0")
  if lite0:
    lines += ["", f"EfficientNet-Lite0 (ImageNet weights) at {lite0['image_size']}x{lite0['image_size']}, "
              "Fashion-MNIST, batch 32, images/s over 3 repeats:", "",
              "| what | median | min | max |", "|---|---|---|---|"]
    for key, what in (("finetune_top4_images_per_sec", "train step, top 4 blocks + head (the demo's phase 2)"),
                      ("finetune_all_images_per_sec", "train step, the whole model"),
                      ("head_cached_images_per_sec", "head phase, 3 epochs, feature cache on (cache pass included)"),
                      ("head_uncached_images_per_sec", "head phase, 3 epochs, feature cache off"),
                      ("pipeline_memory_images_per_sec", "input pipeline, pixels in memory (resize)"),
                      ("pipeline_png_images_per_sec", "input pipeline, PNG files (read + decode + resize)")):
      v = lite0[key]
      lines.append(f"| {what} | {v['median']:.1f} | {v['min']:.1f} | {v['max']:.1f} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
