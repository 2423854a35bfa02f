"""Headline generation from BBC News with SmolLM2-135M-Instruct: the lead baseline, the base model, and LoRA.

Prompt: an instruction and the article body; response: its headline (the file's first line). A seeded random draw
of train and test articles; ROUGE-1/2/L (rouge-score, stemmed F1) on the test articles for the lead baseline (the
body's first sentence), the base model and the model after LoRA fine-tuning, each greedy; perplexity of the test
headlines before and after. Then the generating SavedModel is exported and reloaded in this process, and its texts
are compared with the in-process ones.

  KERAS_HOME=... nice -n 19 python bench/smollm2_headlines.py --train=48 --test=16 --sequence_length=256
"""

import argparse
import json
import pathlib
import time

import numpy as np


def load_bbc(seed: int, train: int, test: int):
  from tfft.data import text as text_data
  root = text_data.locate_bbc_news()
  files = sorted(p for d in sorted(root.iterdir()) if d.is_dir() for p in sorted(d.iterdir()))
  order = np.random.default_rng(seed).permutation(len(files))
  pairs = []
  for i in order[:train + test]:
    lines = files[i].read_text(encoding="utf-8", errors="replace").strip().splitlines()
    headline, body = lines[0].strip(), "\n".join(lines[1:]).strip()
    pairs.append((body, headline))
  return pairs[:train], pairs[train:]


INSTRUCTION = "Write the headline of this news article.\n\n"


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--train", type=int, default=48)
  parser.add_argument("--test", type=int, default=16)
  parser.add_argument("--sequence_length", type=int, default=256)
  parser.add_argument("--max_new_tokens", type=int, default=24)
  parser.add_argument("--lora_rank", type=int, default=8)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--batch_size", type=int, default=4)
  parser.add_argument("--learning_rate", type=float, default=1e-3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="/tmp/smollm2_headlines")
  args = parser.parse_args()

  import keras
  import tensorflow as tf

  from tfft.tasks.generate import data as instructions
  from tfft.model import causal_lm, chat, text_backbones
  from tfft.tasks.generate import metrics as rouge
  from tfft.tasks.generate import export as generation

  keras.utils.set_random_seed(args.seed)
  train, test = load_bbc(args.seed, args.train, args.test)
  spec = text_backbones.resolve("smollm2-135m")
  backbone = text_backbones.load_backbone(spec)
  tokenizer = text_backbones.load_preprocessor(spec, args.sequence_length).tokenizer
  fmt = chat.chat_format(tokenizer.chat_template, where="--backbone=smollm2-135m")
  prompts = lambda rows: [INSTRUCTION + body for body, _ in rows]
  refs = [h for _, h in test]
  results = {"args": vars(args), "lead": rouge.rouge([rouge.lead(b) for b, _ in test], refs)}
  print("lead", results["lead"], flush=True)

  model = causal_lm.build_causal_lm(backbone, lora_rank=args.lora_rank)
  causal_lm.compile_causal_lm(model, learning_rate=args.learning_rate, weight_decay=0.0, clipnorm=1.0)
  test_arrays = instructions.pack(tokenizer, fmt, prompts(test), refs, sequence_length=args.sequence_length)
  test_ds = instructions.make_dataset(test_arrays, np.arange(len(test)), batch_size=args.batch_size)
  generate = generation.generate_fn(model, tokenizer, fmt, sequence_length=args.sequence_length,
                                    max_new_tokens=args.max_new_tokens)
  start = time.perf_counter()
  base_texts, base_counts = generation.generate_texts(generate, prompts(test), batch_size=args.batch_size)
  results["base"] = {**rouge.rouge(base_texts, refs), "perplexity": float(np.exp(causal_lm.response_nll(
      model, test_ds))), "generate_seconds": time.perf_counter() - start, "tokens": int(sum(base_counts))}
  print("base", results["base"], base_texts[:3], flush=True)

  arrays = instructions.pack(tokenizer, fmt, prompts(train), [h for _, h in train],
                             sequence_length=args.sequence_length)
  ds = instructions.make_dataset(arrays, np.arange(len(train)), batch_size=args.batch_size, shuffle=True,
                                 seed=args.seed)
  start = time.perf_counter()
  history = model.fit(ds, epochs=args.epochs, verbose=2)
  train_seconds = time.perf_counter() - start
  tokens = int(arrays["padding_mask"].sum()) * args.epochs
  start = time.perf_counter()
  tuned_texts, tuned_counts = generation.generate_texts(generate, prompts(test), batch_size=args.batch_size)
  results["lora"] = {**rouge.rouge(tuned_texts, refs), "perplexity": float(np.exp(causal_lm.response_nll(
      model, test_ds))), "train_seconds": train_seconds, "train_tokens_per_second": tokens / train_seconds,
      "loss": [float(v) for v in history.history["loss"]], "generate_seconds": time.perf_counter() - start,
      "tokens": int(sum(tuned_counts)), "lora_parameters": causal_lm.lora_parameter_count(backbone)}
  print("lora", results["lora"], tuned_texts[:3], flush=True)

  merged = causal_lm.build_causal_lm(causal_lm.merged_backbone(backbone), lora_rank=0)
  out = pathlib.Path(args.out)
  export = generation.export_generator(merged, tokenizer, fmt, export_base=out / "exports",
                                       sequence_length=args.sequence_length, max_new_tokens=args.max_new_tokens)
  served = tf.saved_model.load(str(export)).signatures["serving_default"]
  start = time.perf_counter()
  served_texts = []
  for i in range(0, len(test), args.batch_size):
    served_texts += [t.decode("utf-8", "replace") for t in
                     served(prompt=tf.constant(prompts(test)[i:i + args.batch_size]))["text"].numpy()]
  results["export"] = {"path": str(export), "same_texts": served_texts == tuned_texts,
                       "generate_seconds": time.perf_counter() - start}
  results["examples"] = [{"reference": r, "lead": rouge.lead(b), "base": bt, "lora": tt}
                         for (b, r), bt, tt in zip(test, base_texts, tuned_texts)]
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.json").write_text(json.dumps(results, indent=2))
  print(json.dumps({k: v for k, v in results.items() if k != "examples"}, indent=2))


if __name__ == "__main__":
  main()
