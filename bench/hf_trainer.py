"""Contender (c): HF transformers Trainer (PyTorch, CPU) on the same checkpoint, data and settings.

Runs in .venv-bench (bench/requirements-hf.txt), never in tfft's venv. Prints one JSON line with the
steady-state training throughput (the last epoch).

Usage: python bench/hf_trainer.py DATA.jsonl CHECKPOINT_DIR [--bf16] --epochs=2 --batch_size=32 --seq=128
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
  parser.add_argument("--epochs", type=int, default=2)
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
  seconds = []

  class Timer(TrainerCallback):
    def on_epoch_begin(self, *a, **k):
      self.start = time.perf_counter()

    def on_epoch_end(self, *a, **k):
      seconds.append(time.perf_counter() - self.start)

  with tempfile.TemporaryDirectory() as out:
    training_args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        learning_rate=5e-5, weight_decay=0.01, use_cpu=True, bf16=args.bf16, logging_strategy="no",
        save_strategy="no", eval_strategy="no", report_to=[], dataloader_num_workers=0, disable_tqdm=True)
    Trainer(model=model, args=training_args, train_dataset=dataset, callbacks=[Timer()]).train()
  print(json.dumps({"examples_per_sec": len(rows) / seconds[-1], "epoch_seconds": seconds, "examples": len(rows),
                    "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
  main()
