"""--task=tag end to end on a tiny BERT: CoNLL flagfile -> both phases -> entity metrics beside the CRF -> export
-> reload in a clean TF + TF Text process, matching the in-process model; tfft.predict prints the entities."""

import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import CLASS_WORDS, FILLER, run_tfft

# Colours are COL entities (two in a row: one entity), animals ANI; "cat-dog" is one word of three pieces.
TEXTS = ["the red cat and a dog", "red blue fox , the horse !", "a cat-dog is very red",
         " ".join(["the", "red", "blue", "cat", "and", "a", "dog", "of", "one", "two"] * 3)]  # 30 words: 3 windows


def _sentence(rng, n):
  words, tags = [], []
  while len(words) < n:
    kind = rng.random()
    if kind < 0.25:
      colours = [rng.choice(CLASS_WORDS["colors"]) for _ in range(rng.choice([1, 1, 2]))]
      words += colours
      tags += ["B-COL"] + ["I-COL"] * (len(colours) - 1)
    elif kind < 0.45:
      words.append(rng.choice(CLASS_WORDS["animals"] + ["cat-dog"]))
      tags.append("B-ANI")
    else:
      words.append(rng.choice(FILLER + CLASS_WORDS["numbers"] + [",", "!"]))
      tags.append("O")
  return words, tags


@pytest.fixture(scope="module")
def tag_run(tiny_bert_preset, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("tag")
  rng = random.Random(0)
  blocks = []
  for i in range(60):
    words, tags = _sentence(rng, 24 if i % 10 == 0 else rng.randint(4, 9))
    blocks.append("\n".join(f"{w}\t{t}" for w, t in zip(words, tags)))
  (tmp / "train.conll").write_text("\n\n".join(blocks) + "\n")
  flags = {"task": "tag", "dataset": f"conll:{tmp / 'train.conll'}", "backbone": tiny_bert_preset,
           "sequence_length": 16, "batch_size": 8, "head_epochs": 1, "head_min_steps": 0, "head_learning_rate": 1e-2, "epochs": 3,
           "learning_rate": 3e-3, "val_fraction": 0.2, "test_fraction": 0.2, "model_dir": tmp / "run",
           "export_dir": tmp / "exports", "name": "tagger", "seed": 1}
  (tmp / "tag.cfg").write_text("".join(f"--{k}={v}\n" for k, v in flags.items()))
  proc = run_tfft("train", [f"--flagfile={tmp / 'tag.cfg'}"], timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp, proc


# The op set of stock TF Serving: TensorFlow and TF Text, nothing of Keras, keras-hub or tfft.
_SERVE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text
    loaded = tf.saved_model.load(sys.argv[1])
    texts = json.loads(sys.argv[2])
    out = loaded.signatures["serving_default"](text=tf.constant(texts))
    words = tf.ragged.constant([t.split(" ") for t in texts]).to_tensor("")
    by_words = loaded.signatures["serving_words"](words=words)
    print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                      "tokens": [[t.decode() for t in row] for row in out["tokens"].numpy()],
                      "starts": out["starts"].numpy().tolist(), "ends": out["ends"].numpy().tolist(),
                      "tags": [[t.decode() for t in row] for row in out["tags"].numpy()],
                      "num_tokens": out["num_tokens"].numpy().tolist(),
                      "word_probabilities": by_words["probabilities"].numpy().tolist(),
                      "leaked": sorted(m for m in ("keras_hub", "tfft") if m in sys.modules)}))
""")


def test_run_reports_entities_beside_the_crf(tag_run):
  tmp, proc = tag_run
  run = tmp / "run"
  names = (run / "labels.txt").read_text().split()
  assert names == ["B-ANI", "B-COL", "I-COL", "O"]
  metrics = json.loads((run / "metrics.json").read_text())
  assert metrics["baseline"]["method"].startswith("CRF")
  assert set(metrics["per_type"]) == {"ANI", "COL"}
  assert metrics["entity_f1"] > 0.5, metrics["entity_f1"]  # word lists: learnable in a few steps
  assert metrics["export_parity"]["max_abs_diff"] <= 1e-4
  assert (run / "tag_report.txt").is_file() and (run / "tagging_errors.csv").is_file()
  assert "entity_f1=" in proc.stdout and "baseline: " in proc.stdout
  card = (tmp / "exports" / "tagger" / "1" / "assets.extra" / "model_card.md").read_text()
  assert "token tagger" in card and "`serving_words`" in card


def test_export_round_trip_matches_the_in_process_model(tag_run, tiny_bert_preset):
  from tfft.data import tag_pieces
  from tfft.tasks.tag import model as tagger
  from tfft.model import text_backbones
  from tfft.tasks.tag.target import softmax

  tmp, _ = tag_run
  proc = subprocess.run([sys.executable, "-c", _SERVE, str(tmp / "exports" / "tagger" / "1"), json.dumps(TEXTS)],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["leaked"] == []

  spec = text_backbones.resolve(str(tiny_bert_preset))
  model = tagger.build_token_tagger(text_backbones.load_backbone(spec), num_tags=4)
  model.load_weights(str(tmp / "run" / "checkpoints" / "after_finetune.weights.h5"))
  preprocessor = text_backbones.load_preprocessor(spec, 16)
  raw = tag_pieces.predict_word_logits(model, preprocessor, TEXTS, outside_index=3, raw=True)
  words = tag_pieces.predict_word_logits(model, preprocessor, [t.split(" ") for t in TEXTS], outside_index=3)
  for i, text in enumerate(TEXTS):
    n = served["num_tokens"][i]
    np.testing.assert_allclose(np.array(served["probabilities"][i][:n]), softmax(raw[i]), atol=1e-5)
    np.testing.assert_allclose(np.array(served["word_probabilities"][i][:len(words[i])]), softmax(words[i]),
                               atol=1e-5)
    # Each token's character span is where it stands in the raw sentence.
    assert [text[s:e] for s, e in zip(served["starts"][i][:n], served["ends"][i][:n])] == served["tokens"][i][:n]
  assert served["tokens"][1][:5] == ["red", "blue", "fox", ",", "the"]
  # The 30-word sentence is read as 3 windows of 14 pieces; reading only the first window would give other tags.
  assert served["num_tokens"][3] == 30
  assert served["tags"][0][:3] == ["O", "B-COL", "B-ANI"], served["tags"][0]


def test_predict_prints_the_entities(tag_run):
  tmp, _ = tag_run
  proc = run_tfft("predict", [f"--model={tmp / 'exports' / 'tagger'}", "the red cat , a blue dog"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = proc.stdout.strip().splitlines()[-1]
  assert "COL: red [4, 7)" in line and "ANI: cat [8, 11)" in line, proc.stdout
  proc = run_tfft("predict", [f"--model={tmp / 'exports' / 'tagger'}", "--format=json", "the red cat"])
  row = json.loads(proc.stdout)[0]
  assert {"type": "COL", "start": 4, "end": 7, "tokens": ["red"]} in row["entities"]
  assert [t["token"] for t in row["tokens"]] == ["the", "red", "cat"]


def test_evaluate_scores_the_export_as_training_did(tag_run):
  tmp, _ = tag_run
  proc = run_tfft("evaluate", [f"--model={tmp / 'exports' / 'tagger' / '1'}", f"--report_dir={tmp / 'eval'}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  evaluated = json.loads((tmp / "eval" / "metrics.json").read_text())
  trained = json.loads((tmp / "run" / "metrics.json").read_text())
  assert evaluated["num_examples"] == trained["num_examples"] == 12 and evaluated["split"] == "test"
  for name in ("entity_f1", "entity_precision", "entity_recall", "token_accuracy"):
    assert evaluated[name] == pytest.approx(trained[name], abs=1e-9), name
  assert "all entities" in proc.stdout
