"""`make bench`: every contender in one run on this machine; writes bench/results.md and bench/results.json.

EfficientNet-Lite0's rows come from bench/lite0_speed.py (it needs Debian's dataset-fashion-mnist).

Every contender runs --repeats times in turn (A B C A B C ...), the fine-tune and short-text contenders in this
process (see bench/quick.py), oneDNN off/on, HF Trainer and the head-phase runs as their own processes. Throughput
is optimizer steps x batch over --min_seconds of steady state after each fit's warm-up steps (bench/stats.py). Each
figure is the median of the pairwise ratios with their min-max; "no clear difference" when the range holds 1.0.
Absolute figures go to the JSON.

Usage: python bench/run.py [--repeats=3] [--min_seconds=30] [--skip_hf] [--skip_images]
       [--report_only=bench/results.json]
"""

import argparse
import datetime
import itertools
import json
import math
import os
import pathlib
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


# Starts argv[2:] and writes its peak RSS (KB, from os.wait4) to argv[1]. A child's ru_maxrss on Linux counts the
# memory of the process it was forked from, up to its exec: measured straight from a benchmark process that holds
# models, a small command reads as large as that process. This launcher is small, so its child's figure is the
# command's own.
_LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, status, usage = os.wait4(p.pid, 0); "
             "open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(status) % 256)")


def _peak_rss_mb(cmd, env=None):
  """Runs cmd and returns (stdout, its peak RSS in MB), via os.wait4 in a small launcher process."""
  full_env = {**os.environ, **(env or {})}
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
      tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, rss.name, *[str(c) for c in cmd]], stdout=out,
                          stderr=err, text=True, env=full_env, cwd=REPO)
    out.seek(0), err.seek(0)
    if proc.returncode != 0:
      raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.read()[-4000:]}")
    return out.read(), int(pathlib.Path(rss.name).read_text()) / 1024


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


def matmul_peak(dtype: str, seconds: float = 8.0) -> float:
  """GFLOP/s of a large matmul in TF on this machine, with tfft's kernel settings: the best block of 10 products
  over `seconds` (at least 3 blocks), so that a dip of a second or two on a shared host does not read as the
  machine's peak."""
  code = f"""
import os, time, json
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
import tensorflow as tf
a = tf.cast(tf.random.normal((4096, 1536)), tf.{dtype}); b = tf.cast(tf.random.normal((1536, 1536)), tf.{dtype})
f = tf.function(lambda a, b: tf.matmul(a, b))
f(a, b).numpy()
best, blocks, start = 0, 0, time.perf_counter()
while blocks < 3 or time.perf_counter() - start < {seconds}:
  t = time.perf_counter()
  for _ in range(10): r = f(a, b)
  r.numpy()
  best, blocks = max(best, 2 * 4096 * 1536 * 1536 * 10 / (time.perf_counter() - t) / 1e9), blocks + 1
print(json.dumps({{"gflops": best}}))
"""
  return _last_json(_run([PY, "-c", code]))["gflops"]


def train_flops_per_example(checkpoint: str, seq: int, classes: int = 5) -> float:
  """Model FLOPs of one training example: 3x the forward matmuls (forward, and backward's two), as in MFU."""
  cfg = json.loads((pathlib.Path(checkpoint) / "config.json").read_text())
  h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
  per_layer = 2 * seq * (4 * h * h + 2 * h * inter) + 2 * 2 * seq * seq * h  # projections, FFN, QK^T and AV
  return 3 * (layers * per_layer + 2 * h * classes)


def serving_bench(export: pathlib.Path, texts, checkpoint_run: pathlib.Path, repeats: int = 3, seconds: float = 10):
  """Batch-32 examples/s of the export's signature and of the same model in-process, measured in turn `repeats`
  times for `seconds` each (lists, in order), and single-request latency percentiles. The order within a pair
  alternates (signature first, then in-process first, ...), so that a drift within pairs does not lean the ratio."""
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
repeats, seconds = int(sys.argv[4]), float(sys.argv[5])
sig = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
run = pathlib.Path(sys.argv[3])
cfg = rundir.load_run(str(run)).config
spec = text_backbones.resolve(cfg.model.backbone)
pooling = spec.default_pooling if cfg.model.pooling == "auto" else cfg.model.pooling
labels = (run / "labels.txt").read_text().split()
model = heads.build_text_classifier(text_backbones.load_backbone(spec), num_classes=len(labels), pooling=pooling)
weights = run / "checkpoints" / "after_finetune.weights.h5"
model.load_weights(str(weights if weights.exists() else run / "checkpoints" / "after_head.weights.h5"))
pre = text_backbones.load_preprocessor(spec, cfg.model.sequence_length)
keras_fn = tf.function(lambda t: windows.windowed_logits(model, pre, t, 1, cfg.train.pad_to_multiple_of),
                       input_signature=[tf.TensorSpec([None], tf.string)])
batch = tf.constant(texts[:32])
def call(fn):
  out = fn(batch)
  return [v.numpy() for v in (out.values() if isinstance(out, dict) else [out])]
def rate(fn):
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    call(fn); calls += 1
  return 32 * calls / (time.perf_counter() - start)
served_fn = lambda b: sig(text=b)
call(served_fn), call(keras_fn)  # traced and warmed before any clock runs
served, in_process = [], []
for i in range(repeats):
  if i % 2:
    in_process.append(rate(keras_fn)); served.append(rate(served_fn))
  else:
    served.append(rate(served_fn)); in_process.append(rate(keras_fn))
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
  return _last_json(_run([PY, "-c", code, export, path, checkpoint_run, repeats, seconds]))


FIGURES = (  # as bench/quick.py's FIGURES: (key, what, numerator, denominator or None, goal or None, ceiling)
    ("p1_fp32", "P1: tfft fine-tune step / raw Keras fit, fp32", "tfft_finetune", "keras_raw", 0.95, False),
    ("p1_bf16", "P1: tfft / raw Keras, mixed_bfloat16", "tfft_bf16", "keras_raw_bf16", 0.95, False),
    ("p2_fp32", "P2: tfft / HF Trainer, fp32", "tfft_finetune", "hf_fp32", 1.6, False),
    ("p2_bf16", "P2: tfft / HF Trainer, bf16", "tfft_bf16", "hf_bf16", 1.1, False),
    ("p3_cache", "P3: frozen head phase with the feature cache (cache pass included) / full fine-tune",
     "frozen_head_cached", "tfft_finetune", 5.0, False),
    ("p4_short_bucket", "P4: short texts, bucketed / fixed padding", "short_bucket", "short_fixed", 3.0, False),
    ("p5_serving", "P5: serving signature / in-process Keras, batch 32", "serving_signature", "serving_in_process",
     0.9, False),
    ("p7_mfu_fp32", "P7: MFU fp32, tfft fine-tune step: model FLOP/s / matmul peak", "mfu_fp32", None, 0.6, False),
    ("p7_mfu_bf16", "P7: MFU bf16", "mfu_bf16", None, 0.6, False),
    ("p8_rss", "P8: peak RSS of a tfft.train full fine-tune, fp32, GB (a ceiling)", "peak_rss_gb", None, 4.0, True),
    ("spe4", "--steps_per_execution=4 / 1", "tfft_spe4", "tfft_finetune", None, False),
    ("lora8", "--lora_rank=8 / full fine-tune step", "tfft_lora8", "tfft_finetune", None, False),
    ("rss_lora8", "peak RSS of a tfft.train epoch, --lora_rank=8 / full fine-tune", "peak_rss_lora_gb",
     "peak_rss_gb", None, False),
    ("jit", "--jit_compile / default", "tfft_jit", "tfft_finetune", None, False),
    ("dynamic_long", "long texts: --padding=dynamic / auto (the default: fixed here)", "tfft_dynamic_long",
     "tfft_finetune", None, False),
    ("bf16_vs_fp32", "mixed_bfloat16 / float32, tfft", "tfft_bf16", "tfft_finetune", None, False),
    ("onednn", "oneDNN on / off, raw Keras fp32 (whole processes)", "keras_raw_process_onednn_on",
     "keras_raw_process_onednn_off", None, False),
    ("frozen_uncached", "frozen head phase without the feature cache / full fine-tune", "frozen_head_uncached",
     "tfft_finetune", None, False),
    ("short_dynamic", "short texts: dynamic / fixed padding", "short_dynamic", "short_fixed", None, False),
    ("short_auto", "short texts: --padding=auto (the default) / fixed", "short_auto", "short_fixed", None, False),
)  # + bench/quick.py's EPOCH_START_FIGURES, added in write_report


def frozen_head(tmp, data, name, cached: bool):
  """A whole tfft.train run of 3 head epochs on the frozen backbone: examples/s of the phase, its feature-cache
  pass included when cached. --head_min_steps=0 keeps it at 3 epochs (a small training set would stretch it)."""
  state, _ = tfft_train(tmp, name, data, "--head_epochs=3", "--head_min_steps=0", "--epochs=0", "--freeze=all",
                        "--head_learning_rate=1e-3", "--cache_features" if cached else "--nocache_features")
  head = state["phases"]["head"]
  return {"examples_per_sec": head["epochs_run"] * state["split_sizes"]["train"] / head["seconds"],
          "phase_seconds": round(head["seconds"], 2), "epochs": head["epochs_run"]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--examples", type=int, default=320, help="BBC articles in the MiniLM runs")
  parser.add_argument("--headlines", type=int, default=1984, help="headlines per epoch of the short-text runs")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--min_seconds", type=float, default=30.0, help="steady-state seconds per training measurement")
  parser.add_argument("--skip_hf", action="store_true", help="leave out the HF Trainer contender")
  parser.add_argument("--skip_images", action="store_true", help="leave out the image pipeline and Lite0 rows")
  parser.add_argument("--out", default=str(BENCH))
  parser.add_argument("--report_only", default="",
                      help="rewrite the table from this results.json's measurements, measuring nothing")
  args = parser.parse_args()
  sys.path.insert(0, str(BENCH))
  import quick  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(args.out)
  if args.report_only:
    results = json.loads(pathlib.Path(args.report_only).read_text())
    if "host" not in results or "repeats" not in results:
      raise SystemExit(f"{args.report_only} holds single measurements without their spread, which this report "
                       "does not present: run `make bench` for a new one")
    write_report(results, out)
    return
  if not args.skip_hf and not HF_PY.exists():
    raise SystemExit(f"{HF_PY} is missing: run `make bench` (it builds .venv-bench), or pass --skip_hf")
  started = time.perf_counter()
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "command": " ".join(["python bench/run.py", *sys.argv[1:]]), "host": quick.host(), "seq": SEQ,
             "batch": BATCH, "repeats": args.repeats, "min_seconds": args.min_seconds,
             "load_before": os.getloadavg()}
  import tfft  # noqa: F401  pylint: disable=unused-import  (first: it sets TF's kernel options, as in a tfft run)
  del tfft
  m = {}
  try:
    measure(args, results, m)
  except BaseException:
    # An hour of measurements is not lost to a failure near the end: what was measured is kept, unsummarised.
    partial = out / "results.partial.json"
    partial.write_text(json.dumps({**results, "measurements": m, "failed": True}, indent=2) + "\n")
    print(f"[bench] failed; the measurements so far are in {partial}", file=sys.stderr)
    raise
  results["measurements"] = m
  results["load_after"] = os.getloadavg()
  results["minutes"] = (time.perf_counter() - started) / 60
  write_report(results, out)


def measure(args, results: dict, m: dict):
  """Runs every contender, filling `m` (each contender's measurements) and `results` (the rest) as it goes."""
  import quick  # pylint: disable=g-import-not-at-top
  import stats  # pylint: disable=g-import-not-at-top
  seconds = args.min_seconds
  with tempfile.TemporaryDirectory(prefix="tfft-bench-") as tmp:
    tmp = pathlib.Path(tmp)
    paths, n_full, _ = write_data(tmp, args.examples)
    ckpt = minilm_dir()
    peaks = {"bfloat16": matmul_peak("bfloat16")}  # fp32's is measured in turn with the fp32 step, below
    results["matmul_peak_gflops"] = peaks
    articles = [json.loads(line) for line in paths["full"].read_text().splitlines()]
    names = sorted({r["label"] for r in articles})
    texts, labels = [r["text"] for r in articles], [names.index(r["label"]) for r in articles]
    sizes = {"train_n": quick.train_size(n_full), "val_n": 32, "num_classes": len(names)}

    # 1. The fine-tune step: tfft and its flags, raw Keras (in this process), HF Trainer and the frozen head
    #    phase (processes), all in turn.
    finetune = quick.TfftContender(tmp, texts, labels, **sizes)
    lora8 = quick.TfftContender(tmp, texts, labels, lora_rank=8, **sizes)
    raw = quick.KerasContender(paths["full"], ckpt)
    frozen = itertools.count()
    contenders = {
        "tfft_finetune": lambda: finetune.fit(min_seconds=seconds),
        "matmul_peak_gflops": lambda: matmul_peak("float32"),
        "keras_raw": lambda: raw.fit(min_seconds=seconds),
        "tfft_spe4": lambda: finetune.fit(steps_per_execution=4, warmup_steps=4, min_seconds=seconds),
        "tfft_lora8": lambda: lora8.fit(min_seconds=seconds),
        "tfft_jit": lambda: finetune.fit(jit_compile=True, min_seconds=seconds),
        "tfft_dynamic_long": lambda: finetune.fit(padding="dynamic", warmup_steps=12, min_seconds=seconds),
        "frozen_head_cached": lambda: frozen_head(tmp, paths["full"], f"frozen_{next(frozen)}", True),
        "frozen_head_uncached": lambda: frozen_head(tmp, paths["full"], f"uncached_{next(frozen)}", False),
    }
    if not args.skip_hf:
      hf = lambda bf16: _last_json(_run([HF_PY, BENCH / "hf_trainer.py", paths["full"], ckpt, f"--seq={SEQ}",
                                         f"--batch_size={BATCH}", f"--min_seconds={seconds}"]
                                        + (["--bf16"] if bf16 else [])))
      contenders.update(hf_fp32=lambda: hf(False), hf_bf16=lambda: hf(True))
    stats.interleave(contenders, args.repeats, into=m)
    quick.add_epoch_starts(m)

    # 2. mixed_bfloat16, tfft and raw Keras.
    finetune16 = quick.TfftContender(tmp, texts, labels, precision="mixed_bfloat16", **sizes)
    raw16 = quick.KerasContender(paths["full"], ckpt, precision="mixed_bfloat16")
    stats.interleave({"tfft_bf16": lambda: finetune16.fit(min_seconds=seconds),
                      "keras_raw_bf16": lambda: raw16.fit(min_seconds=seconds)}, args.repeats, into=m)

    # 3. oneDNN on and off (read when TensorFlow starts: whole processes of bench/keras_raw.py).
    keras_raw = lambda onednn: _last_json(_run([PY, BENCH / "keras_raw.py", paths["full"], ckpt, f"--seq={SEQ}",
                                                f"--batch_size={BATCH}", f"--min_seconds={seconds}"],
                                               env={"TF_ENABLE_ONEDNN_OPTS": onednn}))
    stats.interleave({"keras_raw_process_onednn_on": lambda: keras_raw("1"),
                      "keras_raw_process_onednn_off": lambda: keras_raw("0")}, args.repeats, into=m)

    # 4. Short texts: headlines with fixed, dynamic, bucketed and auto padding.
    heads_ = [json.loads(line) for line in paths["headlines"].read_text().splitlines()][:args.headlines + 32]
    short = quick.TfftContender(tmp, [h["text"] for h in heads_], [names.index(h["label"]) for h in heads_],
                                train_n=args.headlines, val_n=32, num_classes=len(names))
    stats.interleave({
        "short_fixed": lambda: short.fit(padding="fixed", min_seconds=seconds),
        "short_dynamic": lambda: short.fit(padding="dynamic", warmup_steps=12, min_seconds=seconds),
        "short_bucket": lambda: short.fit(padding="bucket", warmup_steps=12, min_seconds=seconds),
        "short_auto": lambda: short.fit(padding="auto", warmup_steps=12, min_seconds=seconds),
    }, args.repeats, into=m)

    # 5. Peak RSS of a whole tfft.train full fine-tune (one epoch), fp32.
    _, rss = tfft_train(tmp, "rss", paths["full"], "--head_epochs=0", "--epochs=1", "--freeze=none",
                        "--nocache_features", "--learning_rate=5e-5")
    m["peak_rss_gb"] = [rss / 1024]
    _, rss = tfft_train(tmp, "rss_lora", paths["full"], "--head_epochs=0", "--epochs=1", "--lora_rank=8",
                        "--nocache_features", "--learning_rate=5e-4")
    m["peak_rss_lora_gb"] = [rss / 1024]

    # 6. Serving: the export of the last cached head-phase run against the same model in-process.
    last = f"frozen_{next(frozen) - 2}"
    serving = serving_bench(tmp / "exports" / last / "1", texts, tmp / last, repeats=args.repeats, seconds=10)
    m["serving_signature"] = serving["served_ex_per_s"]
    m["serving_in_process"] = serving["in_process_ex_per_s"]
    results["serving_latency_ms"] = {"p50": serving["p50_ms"], "p95": serving["p95_ms"]}

    flops = train_flops_per_example(ckpt, SEQ)
    results["train_flops_per_example"] = flops
    m["mfu_fp32"] = [v["examples_per_sec"] * flops / 1e9 / peak
                     for v, peak in zip(m["tfft_finetune"], m["matmul_peak_gflops"])]
    m["mfu_bf16"] = [v["examples_per_sec"] * flops / 1e9 / peaks["bfloat16"] for v in m["tfft_bf16"]]  # one bf16 peak

    if not args.skip_images:
      # 7. Image input pipeline (read, decode, resize, augment) against the train step of a small backbone.
      results["image_pipeline"] = _last_json(_run([PY, BENCH / "image_pipeline.py"]))
      # 8. EfficientNet-Lite0 at the image transfer demo's size: train step, input pipeline, feature cache; 3 times.
      results["lite0"] = _last_json(_run([PY, BENCH / "lite0_speed.py", f"--repeats={args.repeats}"]))


def write_report(results, out: pathlib.Path):
  """Adds the spreads, figures and verdicts to `results` and writes results.json and results.md into `out`."""
  import quick  # pylint: disable=g-import-not-at-top
  quick.summarize(results, results["measurements"], FIGURES + quick.EPOCH_START_FIGURES)
  (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  (out / "results.md").write_text(to_markdown(results))
  print((out / "results.md").read_text())


def to_markdown(r) -> str:
  import quick  # pylint: disable=g-import-not-at-top
  lines = quick.to_markdown(r, title="tfft benchmark").rstrip("\n").split("\n")
  image = r.get("image_pipeline")
  if image:
    lines += ["", "Image input pipeline (bench/image_pipeline.py, one run), images/s ratios:", "",
              "| ratio | measured |", "|---|---|"]
    train = image["train_step_ex_per_s"]
    for key, what in (("pipeline_ex_per_s", "P6: first epoch (every file decoded) / train step of "
                       "mobilenetv3small at 128x128 (goal >= 3)"),
                      ("decode_resize_only_ex_per_s", "read + decode + resize only / train step"),
                      ("cached_augmented_ex_per_s", "later epochs (decoded images cached) / train step")):
      lines.append(f"| {what} | {image[key] / train:.2f} |")
    if "augment_one_warp_ex_per_s" in image:
      lines.append(f"| augmentation: one warp / Keras layer chain | "
                   f"{image['augment_one_warp_ex_per_s'] / image['augment_keras_chain_ex_per_s']:.2f} |")
  if r.get("notes"):  # what was changed in the results after the run, and why
    lines += [""] + [f"Note: {n}" for n in r["notes"]]
  lite0 = r.get("lite0")
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
