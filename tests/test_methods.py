"""Fine-tuning methods on the tiny BERT: LoRA (adapters only, merged export, exact resume), layer-wise LR decay
(the step each block takes under Adam), gradual unfreezing (trainable counts per stage, exact resume), class
weights and focal loss, and temperature calibration."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import REPO, run_tfft, tiny_flags

COMPARED = ("loss", "val_loss", "learning_rate", "accuracy", "val_accuracy")


def _history(path):
  with open(path, newline="") as f:
    return [{k: r[k] for k in COMPARED} for r in csv.DictReader(f)]


def _kill_at(args, point, marker, timeout=1200):  # generous: a loaded machine is slow
  """Runs train until the test hook holds it at `point`, then kills it (SIGKILL)."""
  marker.unlink(missing_ok=True)
  env = {**os.environ, "TFFT_TEST_PAUSE_AT": point, "TFFT_TEST_PAUSE_MARKER": str(marker)}
  proc = subprocess.Popen([sys.executable, "-m", "tfft.train", *map(str, args)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + timeout
  while not marker.exists():
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      pytest.fail(f"never reached {point}: {proc.communicate()[1][-3000:]}")
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.communicate(timeout=timeout)
  return proc.returncode


def _reference_and_resumed(preset, data, tmp, point, **flags):
  """An uninterrupted run and one killed at `point` then re-run, with the same flags."""
  make = lambda name: tiny_flags(preset, data, tmp / name, baseline="none", warmup="false", **flags)
  reference = run_tfft("train", make("reference"), timeout=1500)
  assert reference.returncode == 0, reference.stderr[-3000:]
  assert _kill_at(make("resumed"), point, tmp / "paused") == -9
  resumed = run_tfft("train", make("resumed"), timeout=1500)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  return reference, resumed


# LoRA ------------------------------------------------------------------------------------------------------------

LORA = {"lora_rank": 2, "lora_alpha": 4, "learning_rate": 1e-2}


@pytest.fixture(scope="module")
def lora_runs(tiny_bert_preset, tiny_textdir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("lora")
  reference, resumed = _reference_and_resumed(tiny_bert_preset, tiny_textdir, tmp, "batch:finetune:1:1", **LORA)
  return tmp, reference, resumed


def test_lora_trains_only_the_adapters_and_the_head(lora_runs):
  tmp, reference, _ = lora_runs
  run = tmp / "reference" / "run"
  phases = json.loads((run / "run_state.json").read_text())["phases"]
  head = phases["head"]["trainable_params"]
  # The tiny BERT: 2 blocks; query and value are EinsumDense kernels (16, 2 heads, 8): A (16, 2, r), B (r, 8).
  adapters = 2 * 2 * (16 * 2 * LORA["lora_rank"] + LORA["lora_rank"] * 8)
  assert phases["finetune"]["trainable_params"] == head + adapters
  assert f"phase finetune  trainable={head + adapters:,}" in reference.stdout
  assert "lora:     rank 2, alpha 4 on query, value" in reference.stdout, reference.stdout
  import h5py
  with h5py.File(run / "adapter.lora.h5", "r") as f:  # keras-hub's adapter file: the rank and 4 layers' A and B
    assert int(f["lora/vars/rank"][()]) == 2
    b = [f[f"lora/{i}/vars/lora_kernel_b"][()] for i in f["lora"] if i != "vars"]
  assert len(b) == 4 and all(np.abs(x).max() > 0 for x in b)  # B starts at zero: the adapters trained


def test_lora_export_is_merged_and_equals_the_unmerged_model(lora_runs, tiny_bert_preset):
  tmp, _, _ = lora_runs
  run, export = tmp / "reference" / "run", tmp / "reference" / "exports" / "tiny" / "1"
  metrics = json.loads((run / "metrics.json").read_text())
  assert metrics["export_parity"]["max_abs_diff"] <= 1e-5
  texts = ["cat dog the fox", "red blue and green", "one two three very", "a horse of six"]
  # The unmerged model here, from the run's checkpoint (the adapters apart from the base kernels).
  import keras
  import tensorflow as tf
  from tfft import rundir
  from tfft.tasks import registry as tasks
  from tfft.model import lora
  cfg = rundir.load_run(str(run)).config
  task = tasks.build_task(cfg)
  built = task.build_model(3, tf.distribute.get_strategy())
  lora.enable_lora(built.backbone, rank=2, alpha=4, targets=(), backbone_flag="tiny", strategy=tf.distribute.get_strategy())
  from tfft.model import weights as weights_io
  weights_io.load_weights(built.model, run / "checkpoints" / "after_finetune.weights.h5")
  assert all(np.abs(layer.lora_kernel_b.numpy()).max() > 0 for layer in lora.lora_layers(built.model))
  temperature = metrics.get("calibration", {}).get("temperature", 1.0)  # the export serves softmax(logits / T)
  ours = keras.ops.convert_to_numpy(keras.ops.softmax(
      built.model.predict(task.preprocessor(tf.constant(texts)), verbose=0) / temperature))
  # The export in a clean TensorFlow process: no LoRA variable, the same probabilities.
  script = textwrap.dedent(f"""
      import json, tensorflow as tf, tensorflow_text
      m = tf.saved_model.load({str(export)!r})
      names = [v.name for v in m.variables]
      p = m.signatures["serving_default"](text=tf.constant({texts!r}))["probabilities"].numpy()
      print(json.dumps({{"lora": [n for n in names if "lora" in n], "p": p.tolist()}}))
  """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["lora"] == []
  np.testing.assert_allclose(np.array(served["p"]), ours, atol=1e-5)


def test_a_resumed_lora_run_equals_an_uninterrupted_one(lora_runs):
  tmp, _, resumed = lora_runs
  assert "phase finetune: resuming after epoch 1 of 2" in resumed.stderr
  for phase in ("head", "finetune"):
    assert (_history(tmp / "resumed" / "run" / f"history_{phase}.csv")
            == _history(tmp / "reference" / "run" / f"history_{phase}.csv")), phase
  ref = json.loads((tmp / "reference" / "run" / "metrics.json").read_text())
  got = json.loads((tmp / "resumed" / "run" / "metrics.json").read_text())
  assert got["per_class"] == ref["per_class"] and got["accuracy"] == ref["accuracy"]


# Layer-wise LR decay ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_layer_decay_scales_each_blocks_step_under_adam(tiny_bert_preset, optimizer):
  """Adam's first step moves each weight by LR x its factor (m/sqrt(v) = sign(g)), so max |dw| per variable reads
  the factor back: head 1, the top block 0.5, the lower 0.25, embeddings 0.125."""
  import dataclasses
  import keras
  import tensorflow as tf
  from tfft import config as config_lib
  from tfft.fit import phases
  from tfft.model import freezing, heads, text_backbones

  keras.utils.set_random_seed(0)
  spec = text_backbones.resolve(str(tiny_bert_preset))
  backbone = text_backbones.load_backbone(spec)
  model = heads.build_text_classifier(backbone, num_classes=3, pooling="mean", dropout=0.0)
  freezing.apply_freeze(model, backbone, config_lib.Freeze("none"))
  blocks = text_backbones.transformer_blocks(backbone)
  factors = freezing.layer_decay_multipliers(backbone, blocks, 0.5)
  train = dataclasses.replace(config_lib.TrainConfig(), optimizer=optimizer, clipnorm=0.0, weight_decay=0.0)
  lr = 1e-3
  model.compile(optimizer=phases.build_optimizer(train, lr, factors),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True))
  # One text of distinct tokens: an embedding row gathered twice gets a sparse gradient with duplicates, whose
  # Adam step is not sign(g). Its segment ids are all 0, so the segment embedding is left out below.
  ids = tf.constant([[2, 10, 20, 25, 3]], "int32")
  x = {"token_ids": ids, "padding_mask": ids > 0, "segment_ids": tf.zeros_like(ids)}
  y = tf.one_hot([1], 3)
  before = [v.numpy().copy() for v in model.trainable_variables]
  model.train_on_batch(x, y)
  expected = {"logits": 1.0, "transformer_layer_1": 0.5, "transformer_layer_0": 0.25, "embeddings": 0.125}
  seen = set()
  for variable, old in zip(model.trainable_variables, before):
    step = float(np.abs(variable.numpy() - old).max())
    # No gradient reached it (the unused pooler; the attention key's bias, to which softmax is invariant).
    if step < 1e-3 * lr or "segment_embedding" in variable.path:
      continue
    where = next((k for k in expected if k in variable.path), None)
    assert where is not None, variable.path
    seen.add(where)
    assert step == pytest.approx(lr * expected[where], rel=0.05), variable.path  # eps: |g| ~ 1e-6
  assert seen == set(expected)


# Gradual unfreezing -----------------------------------------------------------------------------------------------

GRADUAL = {"unfreeze": "gradual", "unfreeze_every": 2, "epochs": 5, "early_stopping_patience": 0}
STAGES = ("unfreeze_1", "unfreeze_2", "unfreeze_3")  # top block, both blocks, everything: 2 + 2 + 1 epochs


@pytest.fixture(scope="module")
def gradual_runs(tiny_bert_preset, tiny_textdir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("gradual")
  # Killed in the second epoch of the second stage: it resumes from that stage's first committed epoch.
  reference, resumed = _reference_and_resumed(tiny_bert_preset, tiny_textdir, tmp, "batch:unfreeze_2:1:1",
                                              **GRADUAL)
  return tmp, reference, resumed


def test_gradual_unfreezing_trains_one_more_block_per_stage(gradual_runs, tiny_bert_preset):
  import keras_hub
  from tfft.model import freezing
  tmp, reference, _ = gradual_runs
  state = json.loads((tmp / "reference" / "run" / "run_state.json").read_text())["phases"]
  assert [state[s]["epochs_run"] for s in STAGES] == [2, 2, 1]
  assert [state[s]["freeze"] for s in STAGES] == ["top_k:1", "top_k:2", "none"]
  backbone = keras_hub.models.Backbone.from_preset(str(tiny_bert_preset))
  block = freezing.count_params(backbone.get_layer("transformer_layer_1").weights)
  head = state["head"]["trainable_params"]
  rest = freezing.count_params(backbone.weights) - 2 * block - freezing.count_params(
      backbone.get_layer("pooled_dense").weights)  # embeddings and their norm; the unused pooler stays frozen
  assert [state[s]["trainable_params"] for s in STAGES] == [head + block, head + 2 * block, head + 2 * block + rest]
  assert "unfreeze: gradual, one more block from the top every 2 epoch(s)" in reference.stdout
  # One schedule over the stages: the LR keeps decaying across the stage boundaries (linear, warmup in stage 1).
  lrs = [float(r["learning_rate"]) for s in STAGES for r in _history(tmp / "reference" / "run" / f"history_{s}.csv")]
  assert lrs[1:] == sorted(lrs[1:], reverse=True) and len(set(lrs)) == len(lrs), lrs


def test_a_gradual_run_resumed_mid_stage_equals_an_uninterrupted_one(gradual_runs):
  tmp, _, resumed = gradual_runs
  assert "phase unfreeze_1 finished in an earlier run" in resumed.stderr
  assert "phase unfreeze_2: resuming after epoch 1 of 2" in resumed.stderr
  for phase in ("head",) + STAGES:
    assert (_history(tmp / "resumed" / "run" / f"history_{phase}.csv")
            == _history(tmp / "reference" / "run" / f"history_{phase}.csv")), phase
  ref = json.loads((tmp / "reference" / "run" / "metrics.json").read_text())
  got = json.loads((tmp / "resumed" / "run" / "metrics.json").read_text())
  assert got["per_class"] == ref["per_class"] and got["accuracy"] == ref["accuracy"]


# Class weights and focal loss -------------------------------------------------------------------------------------

def test_class_weights_balanced_and_from_a_file(tmp_path):
  from sklearn.utils.class_weight import compute_class_weight
  from tfft.errors import UserError
  from tfft.fit import recipe
  labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
  names = ("a", "b", "c")
  ours = recipe.class_weights("balanced", labels, names)
  np.testing.assert_allclose([ours[i] for i in range(3)], compute_class_weight("balanced", classes=np.arange(3),
                                                                               y=labels))
  path = tmp_path / "w.json"
  path.write_text('{"c": 4.0}')
  assert recipe.class_weights(str(path), labels, names) == {0: 1.0, 1: 1.0, 2: 4.0}
  path.write_text('{"d": 4.0}')
  with pytest.raises(UserError, match=r"names 'd', not a class of this dataset; its classes are a, b, c"):
    recipe.class_weights(str(path), labels, names)
  assert recipe.class_weights("none", labels, names) is None


@pytest.mark.parametrize("loss", ["crossentropy", "focal"])
def test_class_weights_change_the_loss_as_computed_by_hand(loss):
  import dataclasses
  import keras
  from tfft import config as config_lib
  from tfft.tasks import registry
  train = dataclasses.replace(config_lib.TrainConfig(), loss=loss, focal_gamma=2.0)
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
  model.compile(optimizer=keras.optimizers.SGD(0.0), loss=registry.target("classify").loss(train))
  x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
  y = np.eye(3, dtype="float32")[[0, 1, 2, 2, 1, 0]]
  weights = {0: 1.0, 1: 2.0, 2: 0.5}
  got = float(model.train_on_batch(x, y, class_weight=weights))
  z = model.predict(x, verbose=0).astype("float64")
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  p_true = (p * y).sum(-1)
  per_example = -np.log(p_true) * ((1 - p_true) ** 2 if loss == "focal" else 1.0)
  w = np.array([weights[c] for c in y.argmax(-1)])
  assert got == pytest.approx(float((w * per_example).sum() / len(w)), rel=1e-5)
  assert got != pytest.approx(float(per_example.mean()), rel=1e-3)  # the weights did change it


# Calibration ------------------------------------------------------------------------------------------------------

def test_temperature_scaling_lowers_nll_on_an_overconfident_model_and_keeps_argmax(tmp_path):
  from tfft.report import calibration
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 600)
  # Logits that are right 70% of the time but 10x too sharp: confident far beyond the accuracy.
  correct = rng.random(600) < 0.7
  predicted = np.where(correct, labels, (labels + rng.integers(1, 3, 600)) % 3)
  logits = rng.normal(0, 0.3, (600, 3))
  logits[np.arange(600), predicted] += 1.2
  logits *= 10.0
  val, test = slice(0, 300), slice(300, 600)
  t = calibration.fit_temperature(logits[val], labels[val])
  assert t > 3.0
  assert calibration.nll(logits[test], labels[test], t) < 0.6 * calibration.nll(logits[test], labels[test])
  out = calibration.report(logits[test], labels[test], t, tmp_path)
  assert out["ece_after"] < 0.5 * out["ece_before"]
  assert (tmp_path / calibration.RELIABILITY_PNG).stat().st_size > 1000
  assert ((logits / t).argmax(-1) == logits.argmax(-1)).all()
  # No validation error: nothing to calibrate on, and T stays 1 (the NLL would drive it to 0, probabilities to 1.0).
  assert calibration.fit_temperature(logits[val], logits[val].argmax(-1)) == 1.0


def test_methods_under_a_mirrored_strategy_with_the_calibrated_export(tiny_bert_preset, tiny_textdir, tmp_path):
  """Layer decay, focal loss and class weights in one run on 2 replicas (on the top block, as tests/test_distribute.py:
  under MirroredStrategy, training the embeddings fails in TensorFlow on the bool padding mask, with or without
  these methods); the served probabilities are the calibrated ones."""
  from test_distribute import _MAIN
  weights = tmp_path / "weights.json"
  weights.write_text('{"animals": 2.0}')
  args = tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path, strategy="mirrored", freeze="top_k:1", layer_decay=0.8,
                    loss="focal", class_weight=weights, baseline="none", warmup="false")
  proc = subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, cwd=REPO, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  for line in ("layer decay: 0.8", "loss:     focal", "class weights: from ",
               "animals 2, colors 1, numbers 1", "calibration: temperature"):
    assert line in proc.stdout, (line, proc.stdout)
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  c = metrics["calibration"]
  assert c["temperature"] > 0 and metrics["export_parity"]["max_abs_diff"] <= 1e-5
  assert (tmp_path / "run" / "reliability_diagram.png").exists()
  card = (tmp_path / "exports" / "tiny" / "1" / "assets.extra" / "model_card.md").read_text()
  assert "## Fine-tuning methods" in card and "Calibration: the export divides the logits by a temperature" in card


# LR finder --------------------------------------------------------------------------------------------------------

def test_smoothing_and_the_suggested_learning_rate():
  from tfft.fit import lr_range as lr_find
  np.testing.assert_allclose(lr_find.smooth(np.array([2.0, 2.0, 2.0])), [2.0, 2.0, 2.0])  # bias-corrected
  lrs = np.logspace(-6, 0, 7)
  assert lr_find.suggest(lrs, np.array([3.0, 2.5, 2.0, 1.0, 0.5, 2.0, 9.0])) == pytest.approx(1e-3)


def test_lr_find_cli_writes_the_curve_and_a_flag_line(tiny_bert_preset, tiny_textdir, tmp_path):
  out = tmp_path / "lr_find"
  proc = run_tfft("lr_find", tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path) + [
      f"--lr_find_dir={out}", "--lr_find_steps=12", "--lr_min=1e-5", "--lr_max=10"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert lines[-1].startswith("--learning_rate=") and float(lines[-1].split("=")[1]) > 0, proc.stdout
  with open(out / "lr_find.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  lrs = [float(r["learning_rate"]) for r in rows]
  assert 5 <= len(rows) <= 12 and lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-5, rel=1e-3)
  assert (out / "lr_find.png").stat().st_size > 1000
  assert not (tmp_path / "run").exists()  # the range test writes no run dir
