"""`make bench-quick`: the benchmark's headline ratios in 15 turns of about a minute on 2 cores, for development.

P1 tfft's fine-tuning step against a raw Keras fit, the frozen head phase with the feature cache against the full
fine-tune, auto padding on short texts against fixed (the fine-tune step), and the serving signature against the
same model in-process; all five training contenders (and the matmul peak of MFU) in one turn.
Every contender runs --repeats times in turn (A B C A B C ...); each training measurement counts optimizer steps
over --min_seconds of steady state after its warm-up steps (bench/stats.py). A ratio is the median of the
pairwise ratios with their min-max; one whose range holds 1.0 is "no clear difference".

The fine-tuning contenders run in this process, each fit in turn on its own compiled model: tfft's through
tfft.fit.phases.run_phase (its datasets, optimizer, schedule and callbacks), raw Keras through bench/keras_raw.py's
model. The cached head phase is a whole `tfft.train` run (its feature-cache pass included), whose export the serving
figure reads. The full `make bench` (bench/run.py) adds the other flags, HF Trainer, bfloat16, oneDNN off and
the image models.

Usage: python bench/quick.py [--repeats=3] [--min_seconds=30] [--out=bench]
Writes OUT/results_quick.json and OUT/results_quick.md, and says whether each ratio agrees (overlapping ranges)
with the results_quick.json it replaces.
"""

import argparse
import datetime
import itertools
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

BENCH = pathlib.Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]
import run  # noqa: E402  (bench/run.py)
import stats  # noqa: E402

SEQ, BATCH = run.SEQ, run.BATCH
# Seconds each later epoch's first step took beyond the steady step time (bench/stats.py's SteadyCounter), pooled
# over the repeats; left out of the step figures above. Raw Keras makes a new iterator per epoch of arrays.
EPOCH_START_FIGURES = (
    ("epoch_start_raw", "raw Keras fit on arrays: extra seconds at each later epoch start", "keras_raw_epoch_start_s",
     None, None, False),
    ("epoch_start_tfft", "tfft fine-tune (one stream over the epochs): extra seconds at each later epoch start",
     "tfft_finetune_epoch_start_s", None, None, False),
)
# (key, what, numerator, denominator or None for a spread of its own, goal or None, goal is a ceiling)
FIGURES = (
    ("p1_fp32", "P1: tfft fine-tune step / raw Keras fit, fp32", "tfft_finetune", "keras_raw", 0.95, False),
    ("p3_cache", "P3: frozen head phase with the feature cache (cache pass included) / full fine-tune",
     "frozen_head_cached", "tfft_finetune", 5.0, False),
    ("p4_short_auto", "P4: short texts, --padding=auto (the default) / fixed (the fine-tune step's 32 x 128)",
     "short_auto", "tfft_finetune", 3.0, False),
    ("p5_serving", "P5: serving signature / in-process Keras, batch 32", "serving_signature", "serving_in_process",
     0.9, False),
    ("p7_mfu_fp32", "P7: MFU fp32, tfft fine-tune step: model FLOP/s / matmul peak", "mfu_fp32", None, 0.6, False),
    ("spe4", "--steps_per_execution=4 / 1, tfft fine-tune step", "tfft_spe4", "tfft_finetune", None, False),
    ("lora8", "--lora_rank=8 / full fine-tune step (query and value adapters)", "tfft_lora8", "tfft_finetune", None,
     False),
) + EPOCH_START_FIGURES


def train_size(examples: int, val: int = 32) -> int:
  """Training examples of the in-process fine-tune runs: whole batches, 4 per execution at most (so that
  --steps_per_execution=4 divides the epoch), after `val` held out."""
  return (examples - val) // (4 * BATCH) * 4 * BATCH


def host() -> dict:
  model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
  flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
  return {"cpu": model, "cores": os.cpu_count(),
          "cpu_flags": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]}


class TfftContender:
  """tfft's fine-tuning phase on in-memory tokenized texts, one fit per call, counted by a step clock."""

  def __init__(self, tmp: pathlib.Path, texts, labels, *, train_n: int, val_n: int, num_classes: int,
               precision: str = "float32", lora_rank: int = 0):
    import numpy as np
    import tensorflow as tf
    from tfft.data import text_batches
    from tfft.model import heads, text_backbones

    import keras
    self.tmp, self.num_classes, self.precision = tmp, num_classes, precision
    spec = text_backbones.resolve("minilm-l6")
    self.features = text_batches.tokenize(text_backbones.load_preprocessor(spec, SEQ), texts)
    self.labels = np.asarray(labels)
    self.train_idx, self.val_idx = np.arange(train_n), np.arange(train_n, train_n + val_n)
    keras.mixed_precision.set_global_policy(precision)
    try:
      self.backbone = text_backbones.load_backbone(spec, dtype=None if precision == "float32" else precision)
      self.model = heads.build_text_classifier(self.backbone, num_classes=num_classes, pooling=spec.default_pooling)
    finally:
      keras.mixed_precision.set_global_policy("float32")
    self.blocks = text_backbones.transformer_blocks(self.backbone)
    self.strategy = tf.distribute.get_strategy()
    if lora_rank:  # as --lora_rank: Keras' adapters on the query and value projections; the phase trains only them
      from tfft.model import lora
      lora.enable_lora(self.backbone, rank=lora_rank, alpha=0.0, targets=(), backbone_flag="minilm-l6",
                       strategy=self.strategy)
    self._runs = itertools.count()

  def padding(self, padding: str) -> str:
    from tfft.config import TrainConfig
    from tfft.data import padding as padding_lib
    return padding_lib.choose_padding(TrainConfig(padding=padding, batch_size=BATCH, mixed_precision=self.precision),
                                 self.features["padding_mask"], self.train_idx)

  def fit(self, *, padding="fixed", warmup_steps=2, min_seconds=30.0, steps_per_execution=1, jit_compile=False):
    import keras
    from tfft.config import Freeze, TrainConfig
    from tfft.data import text_batches
    from tfft.fit import phases, recipe
    from tfft.rundir import RunDir

    padding = self.padding(padding)
    train = TrainConfig(batch_size=BATCH, padding=padding, learning_rate=5e-5, early_stopping_patience=0,
                        steps_per_execution=steps_per_execution, jit_compile=jit_compile,
                        mixed_precision=self.precision)
    make = lambda idx, **kw: text_batches.make_dataset(self.features, self.labels, idx, num_classes=self.num_classes,
                                                       batch_size=BATCH, padding=padding,
                                                       pad_to_multiple_of=train.pad_to_multiple_of, **kw)
    steps = text_batches.num_batches(self.features, self.train_idx, batch_size=BATCH, padding=padding,
                                     pad_to_multiple_of=train.pad_to_multiple_of)
    clock = stats.step_clock(keras, batch_size=BATCH, warmup_steps=warmup_steps, min_seconds=min_seconds)
    run_dir = self.tmp / f"fit-{next(self._runs)}"
    phases.run_phase(self.model, self.backbone, recipe.Phase("finetune", 100, 5e-5, 0.1, Freeze("none")),
                     train_ds=lambda first, stop: make(self.train_idx, shuffle=True, seed=0, epochs=(first, stop)),
                     val_ds=make(self.val_idx), steps_per_epoch=steps, examples_per_epoch=len(self.train_idx),
                     train=train, run_dir=RunDir(run_dir), strategy=self.strategy, blocks=self.blocks,
                     extra_callbacks=[clock])
    shutil.rmtree(run_dir, ignore_errors=True)
    return {**clock.result(), "padding": padding}


def articles_contender(tmp: pathlib.Path, path: pathlib.Path, n_full: int, **kwargs) -> TfftContender:
  """A TfftContender on the BBC articles of `path` (run.write_data's "full" file): train_size(n_full) of them
  to train on, the next 32 to validate on."""
  articles = [json.loads(line) for line in path.read_text().splitlines()]
  names = sorted({r["label"] for r in articles})
  return TfftContender(tmp, [r["text"] for r in articles], [names.index(r["label"]) for r in articles],
                       train_n=train_size(n_full), val_n=32, num_classes=len(names), **kwargs)


class KerasContender:
  """bench/keras_raw.py's model: a raw Keras fit on the same articles, one fit per call."""

  def __init__(self, data: pathlib.Path, ckpt: str, precision: str = "float32"):
    import keras
    import keras_raw
    self.x, self.y, names = keras_raw.load_data(data, ckpt, SEQ)
    try:
      self.model = keras_raw.build_model(ckpt, len(names), precision)
    finally:
      keras.mixed_precision.set_global_policy("float32")

  def fit(self, min_seconds=30.0, warmup_steps=2):
    import keras
    clock = stats.step_clock(keras, batch_size=BATCH, warmup_steps=warmup_steps, min_seconds=min_seconds)
    self.model.fit(self.x, self.y, batch_size=BATCH, epochs=100, shuffle=True, verbose=0, callbacks=[clock])
    return clock.result()


def add_epoch_starts(m: dict, names=("keras_raw", "tfft_finetune")):
  """m[NAME_epoch_start_s]: every later epoch start's extra seconds over NAME's measurements, where there are any."""
  for name in names:
    extra = [e for v in m.get(name, []) for e in v.get("epoch_start_extra_seconds", [])]
    if extra:
      m[f"{name}_epoch_start_s"] = extra


def summarize(results: dict, measurements: dict, figures=FIGURES, previous: dict = None) -> dict:
  """Adds each contender's spread and each figure's (a paired ratio's, or a spread's) median, min-max, verdict
  and goal, and, given `previous` results, whether each figure's range overlaps the previous one's."""
  values = {k: [v["examples_per_sec"] if isinstance(v, dict) else v for v in vs] for k, vs in measurements.items()
            if isinstance(vs, list)}  # repeated measurements only
  results["spreads"] = {k: stats.spread(v) for k, v in values.items()}
  results["figures"] = {}
  for key, what, num, den, goal, ceiling in figures:
    if num not in values or (den and den not in values):
      continue
    figure = {"what": what, **(stats.paired_ratio(values[num], values[den]) if den else stats.spread(values[num]))}
    if goal is not None:
      figure.update(goal=goal, ceiling=ceiling, met=stats.meets(figure, goal, ceiling))
    results["figures"][key] = figure
  if previous:
    results["agreement_with_previous"] = {
        key: stats.agree(f, previous["figures"][key]) for key, f in results["figures"].items()
        if key in previous.get("figures", {})}
  return results


def to_markdown(r: dict, title="tfft quick benchmark") -> str:
  served = len(r.get("measurements", {}).get("serving_signature", []))
  serving = f" ({served} of each serving one, alternating which goes first)" if served else ""
  lines = [f"# {title} ({r['date']})", "",
           f"`{r['command']}` on {r['host']['cpu']} ({r['host']['cores']} cores; "
           f"{', '.join(r['host']['cpu_flags'])}), seq {SEQ}, batch {BATCH}: {r['repeats']} interleaved repeats of "
           f"each training contender{serving}, {r['min_seconds']:g} s of steady-state steps per training measurement. "
           f"Load average "
           f"(1 min) {r['load_before'][0]:.2f} before, {r['load_after'][0]:.2f} after; {r['minutes']:.1f} min in all.",
           "", "A ratio is the median of the pairwise ratios (run i of A / run i of B) with their min–max; "
           "\"no clear difference\" when that range holds 1.0. A goal is met when the whole range meets it.", "",
           "| figure | median | min–max | verdict | goal | met |", "|---|---|---|---|---|---|"]
  for f in r["figures"].values():
    goal = "" if "goal" not in f else f"{'<=' if f['ceiling'] else '>='} {f['goal']:g}"
    lines.append(f"| {f['what']} | {f['median']:.2f} | {f['min']:.2f}–{f['max']:.2f} | {f.get('verdict', '')} "
                 f"| {goal} | {f.get('met', '')} |")
  lines += ["", "| contender | median | min–max | unit |", "|---|---|---|---|"]
  for k, s in r["spreads"].items():
    unit = "MFU" if k.startswith("mfu") else ("GB" if k.endswith("_gb") else ("s" if k.endswith("_s") else (
        "GFLOP/s" if k.endswith("_gflops") else "examples/s")))
    lines.append(f"| {k} | {s['median']:.2f} | {s['min']:.2f}–{s['max']:.2f} | {unit} |")
  if "agreement_with_previous" in r:
    bad = [k for k, ok in r["agreement_with_previous"].items() if not ok]
    lines += ["", "Against the previous run's results: " + (
        "every figure's range overlaps." if not bad else f"the ranges do not overlap for {', '.join(bad)}.")]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--min_seconds", type=float, default=30.0, help="steady-state seconds per training measurement")
  parser.add_argument("--serving_seconds", type=float, default=10.0, help="seconds per serving measurement")
  parser.add_argument("--serving_repeats", type=int, default=5,
                      help="serving measurements of each kind (cheap, so more than --repeats: the min-max of 3 "
                           "misses another run's 3 one time in ten by chance alone)")
  parser.add_argument("--examples", type=int, default=320, help="BBC articles (the fine-tune epoch: 256 of them)")
  parser.add_argument("--headlines", type=int, default=1984, help="headlines per epoch of the short-text runs")
  parser.add_argument("--dynamic_warmup_steps", type=int, default=12,
                      help="warm-up steps of the dynamic-padding runs (a graph per batch length until Keras relaxes "
                           "the shape)")
  parser.add_argument("--groups", default="finetune,cache,short,serving",
                      help="what to measure: finetune (tfft and raw Keras), cache (the cached head phase), short "
                           "(auto padding on headlines; needs finetune, its fixed-padding denominator), serving "
                           "(needs cache: it reads the last cached run's export); all in turn")
  parser.add_argument("--with_spe4", action="store_true",
                      help="add tfft at --steps_per_execution=4 to the finetune contenders")
  parser.add_argument("--with_lora", action=argparse.BooleanOptionalAction, default=False,
                      help="add tfft at --lora_rank=8 (query and value adapters) to the finetune contenders")
  parser.add_argument("--out", default=str(BENCH))
  args = parser.parse_args()
  groups = set(args.groups.split(","))
  for group, needs in (("short", "finetune"), ("serving", "cache")):
    if group in groups and needs not in groups:
      parser.error(f"--groups={args.groups}: {group} needs {needs}; add it")
  out = pathlib.Path(args.out)
  previous_path = out / "results_quick.json"
  previous = json.loads(previous_path.read_text()) if previous_path.exists() else None
  started = time.perf_counter()
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "command": " ".join(["python bench/quick.py", *sys.argv[1:]]), "host": host(), "seq": SEQ,
             "batch": BATCH, "repeats": args.repeats, "min_seconds": args.min_seconds,
             "load_before": os.getloadavg()}
  import tfft  # noqa: F401  (first: it sets TF's kernel options before TensorFlow loads, as in a tfft run)
  del tfft

  m = {}
  with tempfile.TemporaryDirectory(prefix="tfft-bench-quick-") as tmp:
    tmp = pathlib.Path(tmp)
    paths, n_full, _ = run.write_data(tmp, args.examples)
    ckpt = run.minilm_dir()
    articles = [json.loads(line) for line in paths["full"].read_text().splitlines()]
    names = sorted({r["label"] for r in articles})
    contenders, frozen = {}, itertools.count()
    if "finetune" in groups:
      finetune = articles_contender(tmp, paths["full"], n_full)
      raw = KerasContender(paths["full"], ckpt)
      contenders["tfft_finetune"] = lambda: finetune.fit(min_seconds=args.min_seconds)
      # The peak in the same turn as the step it divides: this host's speed drifts by 10% over minutes.
      contenders["matmul_peak_gflops"] = lambda: run.matmul_peak("float32")
      contenders["keras_raw"] = lambda: raw.fit(min_seconds=args.min_seconds)
      if args.with_spe4:
        contenders["tfft_spe4"] = lambda: finetune.fit(steps_per_execution=4, warmup_steps=4,
                                                       min_seconds=args.min_seconds)
      if args.with_lora:
        lora8 = articles_contender(tmp, paths["full"], n_full, lora_rank=8)
        contenders["tfft_lora8"] = lambda: lora8.fit(min_seconds=args.min_seconds)
    if "cache" in groups:
      contenders["frozen_head_cached"] = lambda: run.frozen_head(tmp, paths["full"], f"frozen_{next(frozen)}",
                                                                 cached=True)
    if "short" in groups and "finetune" in groups:
      contenders["short_auto"] = short_auto(args, paths, names, tmp)
    stats.interleave(contenders, args.repeats, into=m)
    add_epoch_starts(m)
    if "finetune" in groups:
      flops = run.train_flops_per_example(ckpt, SEQ)
      results["train_flops_per_example"] = flops
      m["mfu_fp32"] = [v["examples_per_sec"] * flops / 1e9 / peak
                       for v, peak in zip(m["tfft_finetune"], m["matmul_peak_gflops"])]
    if "serving" in groups and "cache" in groups:
      texts = [r["text"] for r in articles]
      serving = run.serving_bench(tmp / "exports" / f"frozen_{args.repeats - 1}" / "1", texts,
                                  tmp / f"frozen_{args.repeats - 1}", repeats=args.serving_repeats,
                                  seconds=args.serving_seconds)
      m["serving_signature"] = serving["served_ex_per_s"]
      m["serving_in_process"] = serving["in_process_ex_per_s"]
      results["serving_latency_ms"] = {"p50": serving["p50_ms"], "p95": serving["p95_ms"]}
  results["measurements"] = m
  results["load_after"] = os.getloadavg()
  results["minutes"] = (time.perf_counter() - started) / 60
  summarize(results, m, previous=previous)
  previous_path.write_text(json.dumps(results, indent=2) + "\n")
  (out / "results_quick.md").write_text(to_markdown(results))
  print((out / "results_quick.md").read_text())


def short_auto(args, paths, names, tmp):
  """The fine-tune step on BBC headlines under --padding=auto, as a contender.

  Its denominator is the fine-tune step on articles: fixed padding makes every batch 32 x 128 whatever the texts,
  so fixed padding on headlines runs that same step and the quick bench spends no turn on it (`make bench`
  measures both, as short_fixed and tfft_finetune).
  """
  headlines = [json.loads(line) for line in paths["headlines"].read_text().splitlines()][:args.headlines + 32]
  short = TfftContender(tmp, [h["text"] for h in headlines], [names.index(h["label"]) for h in headlines],
                        train_n=args.headlines, val_n=32, num_classes=len(names))
  # Dynamic padding traces a graph per batch length until Keras relaxes the shape: its warm-up is longer.
  return lambda: short.fit(padding="auto", warmup_steps=args.dynamic_warmup_steps, min_seconds=args.min_seconds)


if __name__ == "__main__":
  main()
