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


def _kill_at(args, point, marker, timeout=300):
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
  reference = run_tfft("train", make("reference"))
  assert reference.returncode == 0, reference.stderr[-3000:]
  assert _kill_at(make("resumed"), point, tmp / "paused") == -9
  resumed = run_tfft("train", make("resumed"))
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
  from tfft import rundir, tasks
  from tfft.fit import callbacks
  from tfft.model import lora
  cfg = rundir.load_run(str(run)).config
  task = tasks.build_task(cfg)
  built = task.build_model(3, tf.distribute.get_strategy())
  lora.enable_lora(built.backbone, rank=2, alpha=4, targets=(), backbone_flag="tiny", strategy=tf.distribute.get_strategy())
  callbacks.load_weights(built.model, run / "checkpoints" / "after_finetune.weights.h5")
  assert all(np.abs(layer.lora_kernel_b.numpy()).max() > 0 for layer in lora.lora_layers(built.model))
  ours = keras.ops.convert_to_numpy(keras.ops.softmax(built.model.predict(task.preprocessor(tf.constant(texts)),
                                                                          verbose=0)))
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
