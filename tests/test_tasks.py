"""--task=regress and --task=pairs end to end on tiny data: flagfile -> train -> export -> reload in a clean TF + TF
Text process, matching the in-process model; the regression metrics and the bad inputs of these tasks."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfft.fit import scoring
from tfft.tasks import registry

from conftest import CLASS_WORDS, FILLER, image_flags, make_image, run_tfft, tiny_flags, write_image

WORDS = sorted(CLASS_WORDS)


def _score_rows(n: int = 60):
  """Texts whose label is (# color words) - (# animal words) plus a fraction: a number a tiny model can learn."""
  rng = np.random.default_rng(0)
  rows = []
  for i in range(n):
    colors, animals = int(rng.integers(0, 4)), int(rng.integers(0, 4))
    tokens = (list(rng.choice(CLASS_WORDS["colors"], colors)) + list(rng.choice(CLASS_WORDS["animals"], animals))
              + list(rng.choice(FILLER, 2)))
    rng.shuffle(tokens)
    rows.append((" ".join(tokens), colors - animals + 0.25 * (i % 3)))
  return rows


def _pair_rows(n: int = 72):
  """(a, b, same|different): two short texts of one class's words, or of two classes' words."""
  rng = np.random.default_rng(1)
  rows = []
  for i in range(n):
    first = WORDS[i % 3]
    second = first if i % 2 == 0 else WORDS[(i % 3 + 1 + (i // 2) % 2) % 3]  # offset 1 or 2: another class
    a = " ".join(rng.choice(CLASS_WORDS[first], 3))
    b = " ".join(rng.choice(CLASS_WORDS[second], 3))
    rows.append((a, b, "same" if first == second else "different"))
  return rows


def _write_csv(path, header, rows):
  import csv
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def _train(tmp, flags):
  flagfile = tmp / "run.cfg"
  flagfile.write_text("\n".join(flags) + "\n")
  proc = run_tfft("train", [f"--flagfile={flagfile}"], timeout=1800)  # a loaded machine slows these runs a lot
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def regress_run(tiny_bert_preset, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("regress")
  data = _write_csv(tmp / "scores.csv", ["text", "score"], _score_rows())
  proc = _train(tmp, tiny_flags(tiny_bert_preset, data, tmp, dataset=f"csv:{data}", label_column="score",
                                task="regress", loss="huber", name="reg", epochs=3))
  return tmp, proc


@pytest.fixture(scope="module")
def pairs_run(tiny_bert_preset, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("pairs")
  data = _write_csv(tmp / "pairs.csv", ["first", "second", "label"], _pair_rows())
  proc = _train(tmp, tiny_flags(tiny_bert_preset, data, tmp, dataset=f"csv:{data}", task="pairs",
                                pair_columns="first,second", name="pairs", epochs=2))
  return tmp, proc


# Runs with the op set of stock TF Serving: TensorFlow plus TF Text, nothing of Keras, keras-hub or tfft.
_SERVE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tokenizer ops, as TF Serving links them
    sig = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    out = sig(**{name: tf.constant(values) for name, values in json.loads(sys.argv[2]).items()})
    leaked = sorted(m for m in ("keras_hub", "tfft") if m in sys.modules)
    inputs = {name: [spec.dtype.name, spec.shape.as_list()] for name, spec in sig.structured_input_signature[1].items()}
    print(json.dumps({"outputs": {k: v.numpy().tolist() for k, v in out.items() if v.dtype != tf.string},
                      "inputs": inputs, "leaked": leaked}))
""")


def _serve(export, feed):
  proc = subprocess.run([sys.executable, "-c", _SERVE, str(export), json.dumps(feed)], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["leaked"] == []
  return served


def _in_process_task(run_dir):
  """The run's task and its trained model, rebuilt in this process from flags.cfg and the final weights."""
  import tensorflow as tf

  from tfft import rundir
  from tfft.tasks import registry as tasks

  run = rundir.load_run(str(run_dir))
  task = tasks.build_task(run.config)
  built = task.build_model(len(run.class_names), tf.distribute.get_strategy(), precision="float32", weights="none")
  built.model.load_weights(str(run_dir / "checkpoints" / "after_finetune.weights.h5"))
  return task, built.model


def test_regression_run_reports_exports_scores_in_data_units(regress_run):
  from tfft.data import windows

  tmp, proc = regress_run
  run, export = tmp / "run", tmp / "exports" / "reg" / "1"
  assert (run / "labels.txt").read_text() == "score\n"
  for name in ("predicted_vs_true.png", "largest_errors.csv", "training_curves.png", "split_manifest.csv"):
    assert (run / name).is_file(), name
  metrics = json.loads((run / "metrics.json").read_text())
  for name in ("rmse", "mae", "r2", "pearson", "spearman"):
    assert np.isfinite(metrics[name]) and np.isfinite(metrics["baseline"][name]), name
  assert metrics["baseline"]["method"].startswith("TF-IDF") and "ridge" in metrics["baseline"]["method"]
  assert metrics["pearson"] > 0.3, metrics  # the label is a count of words the model sees
  assert metrics["export_parity"]["output"] == "score"
  meta = json.loads((export / "assets.extra" / "tfft.json").read_text())
  assert meta["target"] == "regress"
  card = (export / "assets.extra" / "model_card.md").read_text()
  assert "regression model" in card and "| rmse |" in card and "`score` (float32 [N])" in card
  assert f"rmse={metrics['rmse']:.4f}" in proc.stdout and "baseline: rmse=" in proc.stdout
  assert "best val_loss=" in proc.stdout

  texts = ["red blue green", "cat dog horse fox", "the very purple fox"]
  served = _serve(export, {"text": texts})
  assert served["inputs"] == {"text": ["string", [None]]}
  task, model = _in_process_task(run)
  logits = windows.predict_logits(model, task.preprocessor, texts, 1)
  std, mean = metrics["standardisation"]["std"], metrics["standardisation"]["mean"]
  np.testing.assert_allclose(np.array(served["outputs"]["score"]), logits[:, 0] * std + mean, atol=1e-5)
  assert abs(std - 1.0) > 0.1 or abs(mean) > 0.1  # the restoring is not the identity on this data

  evaluated = run_tfft("evaluate", [f"--model={export}", f"--report_dir={tmp / 'eval'}"])
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  again = json.loads((tmp / "eval" / "metrics.json").read_text())
  assert abs(again["rmse"] - metrics["rmse"]) < 1e-4 and "rmse" in evaluated.stdout
  assert (tmp / "eval" / "predicted_vs_true.png").is_file()


def test_pairs_run_exports_two_string_inputs(pairs_run):
  from tfft.tasks.pairs import data as pairs

  tmp, proc = pairs_run
  run, export = tmp / "run", tmp / "exports" / "pairs" / "1"
  assert (run / "labels.txt").read_text().split() == ["different", "same"]
  metrics = json.loads((run / "metrics.json").read_text())
  assert "elementwise product" in metrics["baseline"]["method"]
  assert metrics["export_parity"]["examples"] == metrics["num_examples"]
  card = (export / "assets.extra" / "model_card.md").read_text()
  assert "[CLS] text_a [SEP] text_b [SEP]" in card
  assert "test:     accuracy=" in proc.stdout

  a = ["red blue green", "cat dog fox", "one two three"]
  b = ["yellow purple orange", "one two six", "one two three four five six " * 4]  # the last is truncated
  served = _serve(export, {"text_a": a, "text_b": b})
  assert served["inputs"] == {"text_a": ["string", [None]], "text_b": ["string", [None]]}
  task, model = _in_process_task(run)
  logits = pairs.predict_logits(model, task.preprocessor, list(zip(a, b)))
  logits = logits / metrics.get("calibration", {}).get("temperature", 1.0)  # the export serves softmax(logits / T)
  expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(np.array(served["outputs"]["probabilities"]), expected, atol=1e-5)

  # Packing: [CLS] a [SEP] b [SEP], segment ids 0 then 1, and a long pair shares its 16 tokens fairly.
  packed = pairs.tokenize(task.preprocessor, [("red blue", "cat"), ("red " * 20, "cat " * 20)])
  vocab = task.preprocessor.tokenizer.get_vocabulary()
  first = [vocab[i] for i, m in zip(packed["token_ids"][0], packed["padding_mask"][0]) if m]
  assert first == ["[CLS]", "red", "blue", "[SEP]", "cat", "[SEP]"]
  assert packed["segment_ids"][0][:6].tolist() == [0, 0, 0, 0, 1, 1]
  long = [vocab[i] for i in packed["token_ids"][1]]
  assert long.count("red") == 7 and long.count("cat") == 6 and long[-1] == "[SEP]", long  # 13 = 7 + 6

  predicted = run_tfft("predict", [f"--model={export}", "red blue green\tyellow purple orange"])
  assert predicted.returncode == 0, predicted.stderr[-2000:]
  assert "same" in predicted.stdout and "different" in predicted.stdout


def test_image_regression_run_matches_its_export(tmp_path):
  """Images: the stripes' brightness is the number; tiny_cnn at 16x16, one epoch per phase."""
  rows = []
  for i in range(36):
    image = make_image(("2", "10", "dots")[i % 3], i)
    level = 0.4 + 0.6 * (i % 6) / 5
    image[..., :3] = (image[..., :3] * level).astype(np.uint8)
    write_image(tmp_path / f"{i:02d}.png", image, "PNG", "RGB")
    rows.append((f"{i:02d}.png", f"{10 * level:.2f}"))
  table = _write_csv(tmp_path / "images.csv", ["path", "brightness"], rows)
  proc = run_tfft("train", image_flags(tmp_path, tmp_path, dataset=f"csv:{table}", image_column="path",
                                       label_column="brightness", task="regress"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert "pixels" in metrics["baseline"]["method"] and np.isfinite(metrics["rmse"])
  export = tmp_path / "exports" / "img" / "1"
  from tfft.serving import loaded
  model = scoring.load(str(export))
  assert model.target == "regress"
  rows = model.predict([str(tmp_path / "00.png"), str(tmp_path / "05.png")])
  assert all(np.isfinite(row["score"]) for row in rows)


def test_regression_metrics_match_hand_computed_values():
  from tfft.report import metrics

  y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 5.0])
  m = metrics.regression_metrics(y, p)
  # errors 0, 1, -1, 1: MSE 3/4; mean of y 2.5, total sum of squares 5, residual 3 -> R2 0.4.
  assert m["rmse"] == pytest.approx(np.sqrt(0.75)) and m["mae"] == pytest.approx(0.75)
  assert m["r2"] == pytest.approx(0.4)
  # Pearson: deviations (-1.5,-.5,.5,1.5) and (-1.75,.25,-.75,2.25): products sum to 5.5, squares to 5 and 8.75.
  assert m["pearson"] == pytest.approx(5.5 / np.sqrt(5 * 8.75))
  # Spearman: ranks (1,2,3,4) and (1,3,2,4): 1 - 6 * 2 / (4 * 15).
  assert m["spearman"] == pytest.approx(0.8)
  constant = metrics.regression_metrics(y, np.full(4, 2.5))
  assert constant["pearson"] is None and constant["r2"] == pytest.approx(0.0)


def test_regression_targets_standardise_on_train_and_stratify_on_quantiles():
  from tfft.tasks.regress.target import RegressTarget

  t = RegressTarget()
  encoded = t.encode([str(v) for v in range(10)], where="--dataset=x")
  assert sorted(set(encoded.strata)) == ["q0", "q1", "q2"]  # 10 values: at most 10 // 3 bins
  fitted = t.fit(encoded, np.array([0, 1, 2, 3]))
  assert fitted.info == pytest.approx({"mean": 1.5, "std": np.std([0, 1, 2, 3])})
  rows = t.rows(fitted, fitted.values)
  assert rows.shape == (10, 1) and rows[0, 0] == pytest.approx(-1.5 / np.std([0, 1, 2, 3]))
  np.testing.assert_allclose(t.served(rows, fitted), fitted.values, atol=1e-5)


def test_bbc_pairs_keep_each_article_in_one_split():
  from tfft.tasks.pairs import data as pairs

  texts = [f"Headline {i}\n\nBody of article {i}." for i in range(6)]
  made, labels, ids, groups = pairs.bbc_pairs(texts, ["a", "a", "a", "b", "b", "b"], [f"{i}.txt" for i in range(6)])
  assert len(made) == 8 and labels.count("match") == 4  # one article of each class is left out
  assert made[0] == ("Headline 0", "Body of article 0.") and made[1] == ("Headline 1", "Body of article 0.")
  assert ids[1] == "0.txt|headline:1.txt"
  articles = {}
  for example_id, group in zip(ids, groups):
    for article in example_id.replace("headline:", "").split("|"):
      articles.setdefault(article, set()).add(group)
  assert all(len(g) == 1 for g in articles.values())  # an article is in one group, so in one split
