"""tf.distribute on CPU: MirroredStrategy over 2 logical CPU devices runs the whole train job with 2 replicas."""

import json
import subprocess
import sys
import textwrap

from conftest import REPO, tiny_flags

# Logical devices must be configured before TensorFlow initialises its devices, so in a fresh process.
_MAIN = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfft.train import run
    sys.argv = ["tfft.train"] + sys.argv[1:]
    run()
""")


def test_mirrored_strategy_over_two_cpu_devices(tiny_bert_preset, tiny_textdir, tmp_path):
  args = tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path, strategy="mirrored", freeze="top_k:1")
  proc = subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, cwd=REPO,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["num_examples"] == 12
  assert (tmp_path / "exports" / "tiny" / "1" / "saved_model.pb").exists()


def test_mirrored_strategy_fine_tunes_the_whole_backbone(tiny_bert_preset, tiny_textdir, tmp_path):
  # The whole model is fit on token features (nothing cached), so the padding mask itself crosses the replicas.
  args = tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path, strategy="mirrored", freeze="none", head_epochs=0,
                    epochs=1, baseline="none", warmup="false")
  proc = subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, cwd=REPO,
                        timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  assert "phase finetune: 1 epochs at peak LR 0.003, freeze=none" in proc.stderr
  assert len((tmp_path / "run" / "history_finetune.csv").read_text().splitlines()) == 2  # header, one epoch
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["num_examples"] == 12
