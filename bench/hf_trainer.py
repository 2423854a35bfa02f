"""Contender (c): HF transformers Trainer (PyTorch, CPU) on the same checkpoint, data and settings.

Runs in .venv-bench (bench/requirements-hf.txt), never in tfft's venv. Prints one JSON line with the
steady-state training throughput: the Trainer's optimizer steps (state.global_step) x batch / their wall time, after
--warmup_steps, for --min_seconds (then it stops the training), as bench/stats.py counts the Keras contenders.

Usage: python bench/hf_trainer.py DATA.jsonl CHECKPOINT_DIR [--bf16] --batch_size=32 --seq=128 [--min_seconds=30]
"""

import argparse
import json
import tempfile
import time


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("data")
  parser.add_argument("checkpoint")
  parser.add_argument("--bf16", action="store_true")
  parser.add_argument("--epochs", type=int, default=100, help="at most; training stops after --min_seconds")
  parser.add_argument("--warmup_steps", type=int, default=2)
  parser.add_argument("--min_seconds", type=float, default=30)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--seq", type=int, default=128)
  args = parser.parse_args()

  import torch
  from transformers import (AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainerCallback,
                            TrainingArguments)

  rows = [json.loads(line) for line in open(args.data)]
  names = sorted({r["label"] for r in rows})
  tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
  encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=args.seq, padding="max_length")
  dataset = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
              "token_type_ids": encoded["token_type_ids"][i], "labels": names.index(r["label"])}
             for i, r in enumerate(rows)]
  model = AutoModelForSequenceClassification.from_pretrained(args.checkpoint, num_labels=len(names))
  clock = {"steps": 0, "seconds": 0.0, "last": None}

  class Clock(TrainerCallback):
    """Counts optimizer steps and their wall time after the warm-up, epoch by epoch, and stops after
    --min_seconds."""

    def on_epoch_begin(self, args_, state, control, **k):
      clock["last"] = (time.perf_counter(), state.global_step)

    def on_step_end(self, args_, state, control, **k):
      now, (last_time, last_step) = time.perf_counter(), clock["last"]
      clock["last"] = (now, state.global_step)
      if last_step >= args.warmup_steps:
        clock["steps"] += state.global_step - last_step
        clock["seconds"] += now - last_time
      if clock["seconds"] >= args.min_seconds:
        control.should_training_stop = True

  with tempfile.TemporaryDirectory() as out:
    training_args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        learning_rate=5e-5, weight_decay=0.01, use_cpu=True, bf16=args.bf16, logging_strategy="no",
        save_strategy="no", eval_strategy="no", report_to=[], dataloader_num_workers=0, disable_tqdm=True)
    Trainer(model=model, args=training_args, train_dataset=dataset, callbacks=[Clock()]).train()
  print(json.dumps({"examples_per_sec": clock["steps"] * args.batch_size / clock["seconds"], "steps": clock["steps"],
                    "seconds": round(clock["seconds"], 2), "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
  main()
