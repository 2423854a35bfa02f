"""--task=multilabel end to end: a text table with label sets and an image table, each flagfile -> both phases ->
metrics beside the one-vs-rest baseline -> export whose thresholds are the ones chosen on validation, reloaded in a
clean TF + TF Text process and matching the in-process model."""

import csv
import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import CLASS_WORDS, FILLER, image_flags, run_tfft, write_image

TEXTS = ["the red cat", "one two dog blue", "a very six", "the and of"]


@pytest.fixture(scope="module")
def text_run(tiny_bert_preset, tmp_path_factory):
  """Each text holds words of one to three classes and is labelled with the set of them."""
  tmp = tmp_path_factory.mktemp("multilabel")
  rng = random.Random(0)
  with (tmp / "d.csv").open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["text", "tags"])
    for _ in range(90):
      labels = rng.sample(sorted(CLASS_WORDS), rng.choice([1, 1, 2, 3]))
      words = [rng.choice(CLASS_WORDS[c]) for c in labels for _ in range(2)] + [rng.choice(FILLER)]
      rng.shuffle(words)
      writer.writerow([" ".join(words), ";".join(labels)])
  flags = {"task": "multilabel", "dataset": f"csv:{tmp / 'd.csv'}", "label_column": "tags", "label_separator": ";",
           "backbone": tiny_bert_preset, "sequence_length": 16, "batch_size": 8, "head_epochs": 1, "head_min_steps": 0,
           "head_learning_rate": 1e-2, "epochs": 3, "learning_rate": 3e-3, "pooling": "mean",
           "val_fraction": 0.2, "test_fraction": 0.2, "model_dir": tmp / "run", "export_dir": tmp / "exports",
           "name": "ml", "seed": 1}
  (tmp / "ml.cfg").write_text("".join(f"--{k}={v}\n" for k, v in flags.items()))
  proc = run_tfft("train", [f"--flagfile={tmp / 'ml.cfg'}"], timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp, proc


_SERVE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text
    out = tf.saved_model.load(sys.argv[1]).signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
    print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                      "predicted": out["predicted"].numpy().tolist(),
                      "labels": [[x.decode() for x in row] for row in out["labels"].numpy()],
                      "leaked": sorted(m for m in ("keras_hub", "tfft") if m in sys.modules)}))
""")


def test_text_run_and_its_export(text_run, tiny_bert_preset):
  from tfft import rundir
  from tfft.data import windows
  from tfft.model import heads, text_backbones
  from tfft.tasks.multilabel import metrics as multilabel_metrics
  from tfft.tasks.multilabel.target import sigmoid

  tmp, proc = text_run
  run, export = tmp / "run", tmp / "exports" / "ml" / "1"
  names = (run / "labels.txt").read_text().split()
  assert names == ["animals", "colors", "numbers"]
  metrics = json.loads((run / "metrics.json").read_text())
  assert metrics["baseline"]["method"].startswith("one-vs-rest TF-IDF")
  assert metrics["micro_f1"] > 0.6, metrics["micro_f1"]
  assert {"samples_f1", "subset_accuracy", "hamming_loss", "mean_average_precision"} <= set(metrics)
  assert (run / "per_label.csv").is_file()
  assert "micro_f1=" in proc.stdout and "baseline: " in proc.stdout

  spec = text_backbones.resolve(str(tiny_bert_preset))
  model = heads.build_text_classifier(text_backbones.load_backbone(spec), num_classes=3, pooling="mean")
  model.load_weights(str(run / "checkpoints" / "after_finetune.weights.h5"))
  preprocessor = text_backbones.load_preprocessor(spec, 16)

  # The export's thresholds are those that maximise each label's F1 on the validation split.
  manifest = list(csv.DictReader((run / rundir.MANIFEST).open()))
  val = [row for row in manifest if row["split"] == "val"]
  texts = {f"row:{i}": row["text"] for i, row in enumerate(csv.DictReader((tmp / "d.csv").open()), 1)}
  y_val = np.array([[name in row["label"].split("|") for name in names] for row in val], float)
  p_val = sigmoid(windows.predict_logits(model, preprocessor, [texts[row["id"]] for row in val], 1))
  chosen = multilabel_metrics.choose_thresholds(y_val, p_val)
  meta = json.loads((export / "assets.extra" / "tfft.json").read_text())
  np.testing.assert_allclose(meta["thresholds"], chosen, atol=1e-6)
  assert [metrics["per_label"][n]["threshold"] for n in names] == pytest.approx(list(chosen), abs=1e-6)

  proc = subprocess.run([sys.executable, "-c", _SERVE, str(export), json.dumps(TEXTS)], capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["leaked"] == []
  expected = sigmoid(windows.predict_logits(model, preprocessor, TEXTS, 1))
  np.testing.assert_allclose(np.array(served["probabilities"]), expected, atol=1e-5)
  assert served["predicted"] == (expected >= np.array(meta["thresholds"])).tolist()
  for row, probabilities in zip(served["labels"], expected):
    over = [names[j] for j in np.argsort(-probabilities, kind="stable") if probabilities[j] >= meta["thresholds"][j]]
    assert [x for x in row if x] == over

  proc = run_tfft("predict", [f"--model={export}", "the red cat"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "labels (probability)" in proc.stdout

  # tfft.evaluate on the same table reads its labels with the run's separator and scores the run's test split.
  proc = run_tfft("evaluate", [f"--model={export}", f"--model_dir={run}", f"--dataset=csv:{tmp / 'd.csv'}",
                               "--label_column=tags", "--label_separator=;", f"--report_dir={tmp / 'eval'}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  evaluated = json.loads((tmp / "eval" / "metrics.json").read_text())
  assert evaluated["micro_f1"] == pytest.approx(metrics["micro_f1"], abs=1e-6)


def test_image_run_on_stripes(tmp_path):
  """Horizontal stripes are "h", vertical "v", a grid both: an image backbone with a sigmoid head."""
  rng = np.random.default_rng(0)
  rows = [("path", "label")]
  for i in range(48):
    kind = ("h", "v", "h|v")[i % 3]
    yy, xx = np.mgrid[:16, :16]
    grey = np.where(("h" in kind) & (yy // 2 % 2 == 1) | ("v" in kind) & (xx // 2 % 2 == 1), 220, 30)
    grey = np.clip(grey + rng.integers(-20, 20, (16, 16)), 0, 255)
    array = np.concatenate([np.repeat(grey[..., None], 3, -1), np.full((16, 16, 1), 255)], -1).astype(np.uint8)
    write_image(tmp_path / f"{i}.png", array, "PNG", "RGB")
    rows.append((f"{i}.png", kind))
  with (tmp_path / "images.csv").open("w", newline="") as f:
    csv.writer(f).writerows(rows)
  flags = image_flags(tmp_path, tmp_path, dataset=f"csv:{tmp_path / 'images.csv'}", image_column="path",
                      task="multilabel", epochs=2)
  proc = run_tfft("train", flags, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["baseline"]["method"].startswith("one-vs-rest logistic regression on 16x16")
  assert metrics["export_parity"]["max_abs_diff"] <= 1e-4
  import tensorflow as tf
  export = tmp_path / "exports" / "img" / "1"
  out = tf.saved_model.load(str(export)).signatures["serving_default"](
      image_bytes=tf.constant([(tmp_path / "2.png").read_bytes()]))
  assert out["probabilities"].shape == (1, 2) and out["labels"].shape == (1, 2)
  meta = json.loads((export / "assets.extra" / "tfft.json").read_text())
  assert len(meta["thresholds"]) == 2 and meta["target"] == "multilabel"
