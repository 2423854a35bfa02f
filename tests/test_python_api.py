"""The Python API, used as a Keras user would, without absl: tfft.Config -> tfft.train -> tfft.load, and the building
blocks of a hand-written two-phase fit."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, make_texts


def test_import_tfft_loads_neither_tensorflow_nor_the_flags():
  code = ("import sys, tfft; tfft.Config(); tfft.Freeze('all'); "
          "print(sorted(m for m in ('tensorflow', 'keras', 'tfft.flags', 'absl.flags') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]"


def test_no_library_module_imports_the_flags():
  """Library code takes arguments: only tfft/flags.py and the command modules import absl's flags."""
  import ast

  commands = {"flags.py", "train.py", "evaluate.py", "predict.py", "export.py", "curve.py", "lr_find.py", "search.py"}
  offenders = []
  for path in (REPO / "tfft").rglob("*.py"):
    if path.parent.name == "tfft" and path.name in commands:
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [])
      offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n in ("tfft.flags", "absl.flags")]
  assert offenders == []


def test_train_then_load_and_predict(tiny_bert_preset, tiny_textdir, tmp_path):
  import tfft

  config = tfft.Config(
      data=tfft.DataConfig(dataset=f"textdir:{tiny_textdir}", val_fraction=0.2, test_fraction=0.2),
      model=tfft.ModelConfig(backbone=str(tiny_bert_preset), sequence_length=16, pooling="mean"),
      train=tfft.TrainConfig(batch_size=8, head_epochs=1, head_min_steps=0, head_learning_rate=1e-2, epochs=1, learning_rate=3e-3,
                             freeze=tfft.Freeze("top_k", 1), seed=1),
      run=tfft.RunConfig(model_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "exports"), name="api"))
  result = tfft.train(config)
  assert isinstance(result, tfft.RunResult)
  assert result.split_sizes == {"train": 36, "val": 12, "test": 12}
  assert [p.name for p in result.phases] == ["head", "finetune"]
  assert result.export_path == str(tmp_path / "exports" / "api" / "1")
  assert 0.0 <= result.metrics["accuracy"] <= 1.0 and "baseline" in result.metrics

  model = tfft.load(result.export_path)
  assert isinstance(model, tfft.ExportedModel) and model.class_names == ["animals", "colors", "numbers"]
  rows = model.predict(["cat dog horse", "red blue"], top_k=2)
  assert [row["input"] for row in rows] == ["cat dog horse", "red blue"]
  for row in rows:
    assert len(row["predictions"]) == 2 and row["predictions"][0]["class_name"] in model.class_names
    assert row["predictions"][0]["probability"] >= row["predictions"][1]["probability"]
  with pytest.raises(tfft.UserError, match="no such file or directory"):
    tfft.load(str(tmp_path / "nowhere"))


def test_building_blocks_make_a_hand_written_two_phase_fit(tiny_bert_preset, tmp_path):
  import keras

  import tfft

  backbone, preprocessor = tfft.load_text_backbone(str(tiny_bert_preset), sequence_length=16)
  model = tfft.build_text_classifier(backbone, num_classes=3, pooling="mean")
  texts, labels = zip(*make_texts(8))
  names = sorted(set(labels))
  x = preprocessor(list(texts))
  y = keras.utils.to_categorical([names.index(label) for label in labels], 3)
  sizes = []
  for policy in (tfft.Freeze("all"), tfft.Freeze("top_k", 1)):
    tfft.apply_freeze(model, backbone, policy)  # top_k counts the backbone's transformer_layers
    schedule = tfft.build_schedule("linear", peak=1e-2, total_steps=6, warmup_steps=2, steps_per_epoch=3)
    model.compile(optimizer=tfft.build_optimizer(tfft.TrainConfig(), schedule),  # re-compiled after each change
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    best = tfft.BestCheckpoint(str(tmp_path / "checkpoints" / f"best_{policy.kind}.weights.h5"), "val_loss", "min")
    model.fit(x, y, batch_size=8, epochs=2, validation_data=(x, y), verbose=0, callbacks=[best, tfft.StopOnNaN()])
    assert best.path.is_file() and best.best is not None
    sizes.append(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
  assert sizes[0] == 16 * 3 + 3  # the head alone
  assert sizes[1] > sizes[0]  # the head and the top block

  y_nan = np.full_like(y, np.nan)
  with pytest.raises(tfft.RunFailed, match="training diverged: the loss became NaN or infinite at epoch 1, batch 1"):
    model.fit(x, y_nan, batch_size=8, epochs=1, verbose=0, callbacks=[tfft.StopOnNaN()])


def test_tfft_train_stays_the_api_after_the_command_module_is_imported():
  code = ("import tfft, tfft.train, tfft.evaluate; "
          "from tfft.train import run; "
          "print(callable(tfft.train), tfft.train.PROG, callable(run))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["True", "tfft.train", "True"]
