"""Train's report, model card, warmup file and parity check; the evaluate and export CLIs and their bad input.

All on the session's tiny run (conftest.tiny_run), plus one tiny run the quality gate stops.
"""

import csv
import dataclasses
import functools
import json
import shutil

import numpy as np
import pytest

from tfft.fit import scoring
from tfft.tasks import registry

from conftest import run_tfft, tiny_flags

NAMES = ["animals", "colors", "numbers"]


def _one_error_line(proc, prog, code=2):
  assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{prog}: ")]
  assert len(lines) == 1, proc.stderr[-2000:]
  return lines[0]


def _assert_png(path):
  from PIL import Image

  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000, path
  with Image.open(path) as image:
    image.verify()


def _split_texts(tmp, textdir, name):
  rows = list(csv.DictReader((tmp / "run" / "split_manifest.csv").open()))
  return [(textdir / r["id"]).read_text() for r in rows if r["split"] == name], \
         [NAMES.index(r["label"]) for r in rows if r["split"] == name]


def test_train_reports_baseline_parity_and_plots(tiny_run):
  tmp, proc = tiny_run
  run = tmp / "run"
  m = json.loads((run / "metrics.json").read_text())
  for key in ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "top_2_accuracy", "per_class", "confusion_matrix",
              "split_sizes"):
    assert key in m, key
  assert "TF-IDF" in m["baseline"]["method"] and 0 <= m["baseline"]["accuracy"] <= 1
  assert m["baseline_difference"]["macro_f1"] == pytest.approx(m["macro_f1"] - m["baseline"]["macro_f1"])
  assert m["export_parity"]["examples"] == 12 and m["export_parity"]["max_abs_diff"] <= 1e-4
  assert "baseline: accuracy=" in proc.stdout and "model - baseline: accuracy=" in proc.stdout
  for arm in (m, m["baseline"]):
    for metric in ("accuracy", "macro_f1"):
      low, high = arm["ci"][metric]
      assert 0 <= low <= arm[metric] <= high <= 1, (metric, arm["ci"])
  for metric in ("accuracy", "macro_f1"):
    paired = m["baseline_comparison"][metric]
    assert paired["difference"] == pytest.approx(m["baseline_difference"][metric])
    assert paired["n"] == 12 and paired["verdict"] in ("better", "no clear difference", "worse")
    assert f"model - baseline: {metric}={paired['difference']:+.4f}" in proc.stdout
    assert proc.stdout.count(f"): {paired['verdict']}") >= 1
  assert "95% CI: accuracy" in proc.stdout
  assert "parity:   serving_default matches on 12 test examples" in proc.stdout
  for png in ("confusion_matrix.png", "training_curves.png"):
    _assert_png(run / png)
  assert "weighted avg" in (run / "classification_report.txt").read_text()
  assert next(csv.reader((run / "misclassified.csv").open()))[:4] == ["id", "input", "true_label", "predicted_label"]
  history = list(csv.DictReader((run / "history_finetune.csv").open()))
  assert float(history[0]["learning_rate"]) > 0  # logged per epoch for the curves' LR axis
  assert (run / "logs" / "finetune").is_dir()  # TensorBoard stays


def test_model_card_and_metadata_in_the_export(tiny_run):
  tmp, _ = tiny_run
  extra = tmp / "exports" / "tiny" / "1" / "assets.extra"
  m = json.loads((tmp / "run" / "metrics.json").read_text())
  card = (extra / "model_card.md").read_text()
  for section in ("## Data", "## Backbone", "## Phases and freezing", "## Hyperparameters", "## Test metrics",
                  "## Signature `serving_default`", "## Preprocessing contract"):
    assert section in card, section
  assert "train 36, val 12, test 12" in card and "Weights: local checkpoint" in card
  assert "| head | backbone frozen, head trains | 2 / 2 |" in card  # stretched by --head_min_steps=10
  assert f"| accuracy | {m['accuracy']:.4f} | {m['baseline']['accuracy']:.4f} |" in card
  assert f"95% CI: accuracy {m['ci']['accuracy'][0]:.3f} to " in card
  assert f"): {m['baseline_comparison']['macro_f1']['verdict']}\n" in card
  assert "| input | `text` | string | [None] |" in card and "| output | `probabilities` | float32 | [None, 3] |" in card
  assert "16 tokens" in card and "up to 2 windows" in card
  meta = json.loads((extra / "tfft.json").read_text())
  assert meta["task"] == "text" and meta["input"] == "text" and meta["model_dir"] == str((tmp / "run").resolve())


def test_warmup_file_holds_validation_examples_the_signature_takes(tiny_run, tiny_textdir):
  import tensorflow as tf
  from tensorflow_serving.apis import prediction_log_pb2

  from tfft.serving import loaded

  tmp, _ = tiny_run
  export = tmp / "exports" / "tiny" / "1"
  model = scoring.load(str(export))
  records = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(str(export / "assets.extra" / "tf_serving_warmup_requests"))]
  val_texts, _ = _split_texts(tmp, tiny_textdir, "val")
  assert len(records) == 10 and len(val_texts) == 12
  for record, text in zip(records, val_texts):
    request = record.predict_log.request
    assert request.model_spec.name == "tiny" and request.model_spec.signature_name == "serving_default"
    assert list(request.inputs) == [model.input_name]
    tensor = request.inputs[model.input_name]
    assert tf.dtypes.as_dtype(tensor.dtype) == tf.string and [d.size for d in tensor.tensor_shape.dim] == [1]
    values = tf.make_ndarray(tensor)
    assert values.tolist() == [text.encode()]
    assert model.probabilities(values.tolist()).shape == (1, 3)


def test_parity_check_catches_a_skewed_export(tiny_run, tiny_bert_preset, tiny_textdir, tmp_path):
  import keras

  from tfft import rundir
  from tfft.data import windows
  from tfft.model import heads
  from tfft.report import metrics, run_report
  from tfft.fit import publish
  from tfft.serving import savedmodel
  from tfft.model import text_backbones
  from tfft.errors import RunFailed

  tmp, _ = tiny_run
  config = rundir.load_run(str(tmp / "run")).config
  config = dataclasses.replace(config, run=dataclasses.replace(config.run, name="skew"))
  spec = text_backbones.resolve(str(tiny_bert_preset))
  model = heads.build_text_classifier(text_backbones.load_backbone(spec), num_classes=3, pooling="mean")
  model.load_weights(str(tmp / "run" / "checkpoints" / "after_finetune.weights.h5"))
  preprocessor = text_backbones.load_preprocessor(spec, 16)
  test_texts, y_test = _split_texts(tmp, tiny_textdir, "test")
  probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(windows.predict_logits(model, preprocessor, test_texts, 2)))
  n = len(test_texts)
  data = run_report.RunData("text", test_texts, [str(i) for i in range(n)], np.array(y_test),
                           {"train": np.arange(0), "val": np.arange(n), "test": np.arange(n)}, NAMES)
  check = functools.partial(publish.export_checked, config=config, data=data, model_dir=tmp_path,
                            probabilities=probabilities, metrics=metrics.classification_metrics(y_test, probabilities, NAMES),
                            phases=[], backbone=spec, contract=[], target=registry.target("classify"))
  export_base = tmp_path / "exports"
  export = lambda pre: functools.partial(savedmodel.export_text_classifier, model, pre, NAMES, export_base=export_base,
                                         eval_windows=2)

  # The skew: the export tokenizes to 5 tokens where training used 16, so it reads other windows of each text.
  with pytest.raises(RunFailed, match="preprocessing skew") as failure:
    check(export(text_backbones.load_preprocessor(spec, 5)))
  assert "no export written" in str(failure.value)
  assert list(export_base.iterdir()) == []  # neither a version nor the temporary directory is left

  # The same export without the skew passes, so the check does not simply fail every export.
  assert check(export(preprocessor)).name == "1"


def test_evaluate_scores_the_export_on_the_runs_test_split(tiny_run, tmp_path):
  tmp, _ = tiny_run
  report = tmp_path / "report"
  proc = run_tfft("evaluate", [f"--model={tmp / 'exports' / 'tiny' / '1'}", f"--report_dir={report}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  evaluated = json.loads((report / "metrics.json").read_text())
  trained = json.loads((tmp / "run" / "metrics.json").read_text())
  assert evaluated["num_examples"] == 12 and evaluated["split"] == "test"
  for key in ("accuracy", "macro_f1", "top_2_accuracy", "confusion_matrix", "per_class"):
    assert evaluated[key] == trained[key], key
  assert evaluated["ci"] == trained["ci"]  # the same predictions and the same bootstrap draws
  assert f"95% CI: accuracy {evaluated['ci']['accuracy'][0]:.3f} to" in proc.stdout
  _assert_png(report / "confusion_matrix.png")
  assert (report / "classification_report.txt").is_file() and (report / "misclassified.csv").is_file()
  assert f"report:   {report}" in proc.stdout


def test_export_cli_reexports_the_run_and_writes_models_config(tiny_run, tmp_path):
  from google.protobuf import text_format
  from tensorflow_serving.config import model_server_config_pb2

  from tfft.serving import loaded

  tmp, _ = tiny_run
  base = tmp_path / "exports"
  proc = run_tfft("export", [f"--model_dir={tmp / 'run'}", f"--export_dir={base}", "--name=again",
                             f"--models_config={base}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  version = base / "again" / "1"
  for name in ("model_card.md", "tf_serving_warmup_requests", "labels.txt", "tfft.json"):
    assert (version / "assets.extra" / name).is_file(), name
  config = text_format.Parse((base / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
  assert [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config] == [
      ("again", "/models/again", "tensorflow")]
  texts = [t.encode() for t in ("cat dog horse", "red blue green yellow", "one two six")]
  np.testing.assert_allclose(scoring.load(str(version)).probabilities(texts),
                             scoring.load(str(tmp / "exports" / "tiny" / "1")).probabilities(texts), atol=1e-6)


# Bad input: one line naming the thing and the fix, exit 2, nothing written.

def test_evaluate_rejects_a_path_that_is_not_a_saved_model(tmp_path):
  line = _one_error_line(run_tfft("evaluate", [f"--model={tmp_path}"]), "tfft.evaluate")
  assert f"--model={tmp_path} is not a SavedModel" in line and "EXPORT_DIR/NAME/VERSION" in line


def test_evaluate_rejects_labels_the_model_does_not_know(tiny_run, tiny_textdir, tmp_path):
  tmp, _ = tiny_run
  data = tmp_path / "data"
  shutil.copytree(tiny_textdir, data)
  (data / "shapes").mkdir()
  (data / "shapes" / "0.txt").write_text("circle square")
  report = tmp_path / "report"
  proc = run_tfft("evaluate", [f"--model={tmp / 'exports' / 'tiny' / '1'}", f"--dataset=textdir:{data}",
                               "--split=all", f"--report_dir={report}"])
  line = _one_error_line(proc, "tfft.evaluate")
  assert "'shapes'" in line and "labels.txt (animals, colors, numbers)" in line
  assert not report.exists()


def test_evaluate_without_the_split_manifest(tiny_run, tmp_path):
  tmp, _ = tiny_run
  run = tmp_path / "run_without_manifest"
  run.mkdir()
  for name in ("flags.cfg", "labels.txt"):
    shutil.copy(tmp / "run" / name, run / name)
  proc = run_tfft("evaluate", [f"--model={tmp / 'exports' / 'tiny' / '1'}", f"--model_dir={run}", "--split=test"])
  line = _one_error_line(proc, "tfft.evaluate")
  assert "--split=test needs the run's split manifest" in line and "--split=all" in line
  assert sorted(p.name for p in run.iterdir()) == ["flags.cfg", "labels.txt"]


def test_quality_gate_blocks_the_export_and_keeps_the_run(tiny_bert_preset, tiny_textdir, tmp_path):
  # A head trained for one epoch at a negligible LR stays at chance (1/3 on three classes), far below the gate.
  flags = tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path, head_epochs=1, epochs=0, freeze="all",
                     head_learning_rate=1e-7, baseline="none", min_metric="accuracy:0.99")
  proc = run_tfft("train", flags)
  line = _one_error_line(proc, "tfft.train", code=1)
  assert "quality gate unmet on the test split: accuracy=" in line and "< 0.99" in line and "no export written" in line
  assert not (tmp_path / "exports").exists()
  run = tmp_path / "run"
  for name in ("checkpoints/after_head.weights.h5", "metrics.json", "confusion_matrix.png", "training_curves.png"):
    assert (run / name).is_file(), name
  assert json.loads((run / "metrics.json").read_text())["accuracy"] < 0.99
  assert not json.loads((run / "run_state.json").read_text())["finished"]


def test_parity_sample_takes_the_longest_inputs_and_a_fixed_draw_of_the_rest():
  from tfft.tasks import target_base

  short = [f"t{i}" for i in range(12)]
  assert target_base.parity_positions(short, 12).tolist() == list(range(12))  # a small test split: all of it
  texts = [("x" * (i % 97)) + f"-{i}" for i in range(3000)]
  picked = target_base.parity_positions(texts, 400)
  assert len(picked) == 400 and len(set(picked.tolist())) == 400 and (np.diff(picked) > 0).all()
  longest = np.argsort([-len(t) for t in texts], kind="stable")[:100]
  assert set(longest.tolist()) <= set(picked.tolist())
  assert picked.tolist() == target_base.parity_positions(texts, 400).tolist()  # the same inputs every run
  pairs = [(t, "y") for t in texts]
  assert target_base.parity_positions(pairs, 400).tolist() == picked.tolist()  # pairs: by their summed length
