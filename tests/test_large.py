"""The real shipped MiniLM on a small BBC News subset: fine-tuning must lift accuracy far above chance."""

import json

import pytest

from conftest import run_tfft

pytestmark = pytest.mark.large


def test_minilm_fine_tunes_on_bbc_news(tmp_path):
  args = [
      "--dataset=bbc_news", "--backbone=minilm-l6", "--examples_per_class=30", "--sequence_length=64",
      "--batch_size=16", "--head_epochs=5", "--head_learning_rate=3e-3", "--freeze=top_k:2", "--epochs=1",
      "--learning_rate=1e-4", "--seed=0", f"--model_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'exports'}",
      "--name=bbc",
  ]
  proc = run_tfft("train", args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["split_sizes"] == {"train": 105, "val": 15, "test": 30}
  # Five balanced classes: chance is 0.2. A mean-pooled pretrained MiniLM separates BBC topics well even from
  # 21 examples per class and 64 tokens; a broken backbone load or pooling stays near chance.
  assert metrics["accuracy"] >= 0.8, metrics
  assert "pooling" not in proc.stderr or "mean pooling" in proc.stderr
  assert (tmp_path / "exports" / "bbc" / "1" / "saved_model.pb").exists()
