"""Shared tiny real objects: a 2-layer BERT keras-hub preset written to tmp, and a small 3-class text folder."""

import os
import pathlib
import random
import subprocess
import sys

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]

# The slowest files, slowest first. `make test` runs the suite in 2 pytest-xdist workers that take whole files in
# collection order; started first, these overlap the many short files instead of finishing the run alone.
# (test_cli_errors.py, once among the slowest, takes well under a minute with run_tfft's fork server.)
SLOW_FILES_FIRST = ("test_large.py", "test_resume.py", "test_methods.py", "test_generate_cli.py",
                    "test_multi_worker.py", "test_tasks.py", "test_report.py", "test_decoder_classifier.py",
                    "test_serving.py", "test_search.py", "test_tag_cli.py", "test_train_cli.py",
                    "test_multilabel_cli.py", "test_curve.py", "test_threshold.py", "test_image_train_cli.py",
                    "test_windows.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order

# Each class has its own words, so a tiny model can learn the task in a few steps.
CLASS_WORDS = {
    "animals": ["cat", "dog", "fox", "horse", "mouse", "bird"],
    "colors": ["red", "blue", "green", "yellow", "purple", "orange"],
    "numbers": ["one", "two", "three", "four", "five", "six"],
}
FILLER = ["the", "a", "and", "of", "is", "very"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + FILLER + sorted(
    w for words in CLASS_WORDS.values() for w in words)


def make_texts(n_per_class: int, seed: int = 0):
  """Deterministic short texts: (text, label) pairs, n_per_class of each class."""
  rng = random.Random(seed)
  out = []
  for label, words in CLASS_WORDS.items():
    for _ in range(n_per_class):
      tokens = [rng.choice(words) for _ in range(4)] + [rng.choice(FILLER) for _ in range(2)]
      rng.shuffle(tokens)
      out.append((" ".join(tokens), label))
  return out


@pytest.fixture(scope="session")
def tiny_bert_preset(tmp_path_factory) -> pathlib.Path:
  """A randomly initialised 2-layer BERT and its WordPiece tokenizer, saved as a keras-hub preset dir."""
  import keras
  import keras_hub

  keras.utils.set_random_seed(0)
  path = tmp_path_factory.mktemp("tiny_bert")
  backbone = keras_hub.models.BertBackbone(
      vocabulary_size=len(VOCAB), num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
      max_sequence_length=32)
  tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
  backbone.save_to_preset(str(path))
  tokenizer.save_to_preset(str(path))
  return path


@pytest.fixture(scope="session")
def tiny_textdir(tmp_path_factory) -> pathlib.Path:
  """ROOT/<class>/<n>.txt with 20 texts per class."""
  root = tmp_path_factory.mktemp("textdir")
  for i, (text, label) in enumerate(make_texts(20)):
    (root / label).mkdir(exist_ok=True)
    (root / label / f"{i:03d}.txt").write_text(text)
  return root


def tiny_flags(preset, data, tmp_path, **overrides):
  """Flag lines for a fast tiny run: both phases, one or two epochs each."""
  flags = {
      "dataset": f"textdir:{data}", "backbone": str(preset), "sequence_length": 16, "batch_size": 8,
      "head_epochs": 1, "head_min_steps": 0, "head_learning_rate": 1e-2, "epochs": 2, "learning_rate": 3e-3,
      "pooling": "mean",
      "val_fraction": 0.2, "test_fraction": 0.2, "model_dir": tmp_path / "run", "export_dir": tmp_path / "exports",
      "name": "tiny", "seed": 1,
  }
  flags.update(overrides)
  return [f"--{k}={v}" for k, v in flags.items()]


_server = None


def run_tfft(module: str, args, *, cwd=None, timeout=600, fresh=False):
  """Runs `python -m tfft.<module> ARGS` and returns the CompletedProcess (text mode).

  The command runs in a process forked from this worker's fork server (tests/cli_server.py), which has imported
  TensorFlow once, unless `fresh` (a new interpreter, TensorFlow's C++ start-up lines and all) or the environment
  is no longer the one the server started with (a test's monkeypatch.setenv): then in a new interpreter.
  """
  global _server
  if not fresh:
    import cli_server  # pylint: disable=g-import-not-at-top
    if _server is None:
      _server = cli_server.Client()
    # The server imported REPO's tfft with the environment it started with.
    if _server.env == cli_server.same_env(os.environ) and pathlib.Path(cwd or REPO) == REPO:
      return _server.run(module, args, cwd=cwd or REPO, timeout=timeout)
  return subprocess.run([sys.executable, "-m", f"tfft.{module}", *map(str, args)], capture_output=True, text=True,
                        cwd=cwd or REPO, timeout=timeout)


def pytest_sessionfinish(session, exitstatus):
  if _server is not None:
    _server.close()


@pytest.fixture(scope="session")
def tiny_run(tiny_bert_preset, tiny_textdir, tmp_path_factory):
  """One finished tiny train run shared by the CLI, report and serving tests: (tmp dir, CompletedProcess).

  TMP/tiny.cfg is its flagfile, TMP/run its run dir, TMP/exports/tiny/1 its export; batches 2-3 of each phase
  are traced with the profiler; its head phase is stretched to 2 epochs (--head_min_steps=10 at 5 steps per
  epoch). Tests that export again
  write elsewhere, so this export stays version 1.
  """
  tmp = tmp_path_factory.mktemp("cli")
  flagfile = tmp / "tiny.cfg"
  flagfile.write_text("\n".join(tiny_flags(tiny_bert_preset, tiny_textdir, tmp, eval_windows=2,
                                            profile_batches="2,3", head_min_steps=10)) + "\n")
  # A new interpreter: tests/test_train_cli.py checks that TensorFlow's C++ start-up lines are filtered out.
  proc = run_tfft("train", [f"--flagfile={flagfile}"], fresh=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp, proc


# Images: three classes told apart by their stripes, so grayscale files carry the class too. The names check that
# class order is natural ("2" before "10") in labels.txt and every class index.
IMAGE_CLASSES = ("2", "10", "dots")
# (suffix, Pillow format, mode): every supported format, grayscale, RGB and RGBA where the format can hold it.
IMAGE_KINDS = (("jpg", "JPEG", "L"), ("jpg", "JPEG", "RGB"), ("png", "PNG", "L"), ("png", "PNG", "RGB"),
               ("png", "PNG", "RGBA"), ("gif", "GIF", "L"), ("gif", "GIF", "RGB"), ("bmp", "BMP", "L"),
               ("bmp", "BMP", "RGB"), ("bmp", "BMP", "RGBA"))


def make_image(label: str, index: int, size: int = 16):
  """A size x size RGBA uint8 array: horizontal stripes ("2"), vertical stripes ("10") or a checkerboard."""
  import numpy as np

  rng = np.random.default_rng(index)
  yy, xx = np.mgrid[:size, :size]
  pattern = {"2": yy // 2 % 2, "10": xx // 2 % 2, "dots": (yy // 2 + xx // 2) % 2}[label]
  grey = np.where(pattern == 1, 220, 30) + rng.integers(-20, 20, (size, size))
  tint = rng.uniform(0.7, 1.0, 3)
  rgb = np.clip(grey[..., None] * tint, 0, 255)
  alpha = np.full((size, size, 1), 255)
  return np.concatenate([rgb, alpha], -1).astype(np.uint8)


def write_image(path, array, fmt: str, mode: str):
  from PIL import Image

  Image.fromarray(array, "RGBA").convert(mode).save(path, format=fmt)


@pytest.fixture(scope="session")
def tiny_imagedir(tmp_path_factory) -> pathlib.Path:
  """ROOT/<class>/<n>.<ext>: 12 16x16 images per class, cycling through every format and colour mode."""
  root = tmp_path_factory.mktemp("imagedir")
  for label in IMAGE_CLASSES:
    (root / label).mkdir()
    for i in range(12):
      suffix, fmt, mode = IMAGE_KINDS[i % len(IMAGE_KINDS)]
      write_image(root / label / f"{i:02d}_{mode}.{suffix}", make_image(label, i), fmt, mode)
  return root


@pytest.fixture(scope="session")
def tiny_cnn_weights(tmp_path_factory) -> pathlib.Path:
  """A .weights.h5 of the built-in tiny_cnn backbone with seeded random weights, written as a user would."""
  import keras

  from tfft.model import image_backbones

  keras.utils.set_random_seed(7)
  backbone = image_backbones.load_backbone(image_backbones.resolve("tiny_cnn"), image_size=16, weights="none")
  path = tmp_path_factory.mktemp("weights") / "tiny_cnn.weights.h5"
  backbone.save_weights(str(path))
  return path


def image_flags(data, tmp_path, **overrides):
  """Flag lines for a fast tiny image run on tiny_cnn at 16x16: both phases, one epoch each."""
  flags = {
      "dataset": f"imagedir:{data}", "backbone": "tiny_cnn", "backbone_weights": "none", "image_size": 16,
      "batch_size": 8, "head_epochs": 1, "head_min_steps": 0, "head_learning_rate": 1e-2, "epochs": 1,
      "learning_rate": 1e-3,
      "val_fraction": 0.2, "test_fraction": 0.2, "model_dir": tmp_path / "run", "export_dir": tmp_path / "exports",
      "name": "img", "seed": 1,
  }
  flags.update(overrides)
  return [f"--{k}={v}" for k, v in flags.items()]
