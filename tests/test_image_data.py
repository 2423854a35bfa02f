"""Image sources on tiny real files: every format and colour mode, class order, the bad-file policy, csv, digits,
Fashion-MNIST's IDX files, tfds under mock data, few-shot draws, and the tf.data pipeline's pixels."""

import numpy as np
import pytest

from conftest import IMAGE_CLASSES, IMAGE_KINDS, make_image, write_image
from tfft.config import DataConfig
from tfft.data import images, split
from tfft.errors import UserError


def _load(dataset, **kw):
  return images.load_examples(DataConfig(dataset=dataset, **kw))


def test_imagedir_reads_every_format_and_mode_in_natural_class_order(tiny_imagedir):
  ex = _load(f"imagedir:{tiny_imagedir}")
  assert len(ex) == 36 and ex.skipped == 0
  assert images.sorted_class_names(ex.labels) == ["2", "10", "dots"]
  suffixes = {p.rsplit(".", 1)[1] for p in ex.paths}
  assert suffixes == {"jpg", "png", "gif", "bmp"}
  assert ex.ids[0] == "2/00_L.jpg"


def test_every_format_decodes_to_three_channels_with_its_pixels(tmp_path):
  import tensorflow as tf

  from tfft.data import image_batches

  array = make_image("10", 3)
  for suffix, fmt, mode in IMAGE_KINDS:
    path = tmp_path / f"x_{mode}.{suffix}"
    write_image(path, array, fmt, mode)
    pixels = image_batches.decode(tf.io.read_file(str(path)), 16).numpy()
    assert pixels.shape == (16, 16, 3), (suffix, mode)
    # Lossless formats keep the stripes exactly (grey for L); JPEG and GIF's palette stay close.
    expected = array[..., :3].astype(float)
    if mode == "L":
      expected = np.repeat(np.asarray(expected @ [0.299, 0.587, 0.114])[..., None], 3, -1)
    tolerance = {"png": 1.0, "bmp": 1.0}.get(suffix, 40.0)
    assert np.abs(pixels - expected).mean() < tolerance, (suffix, mode, np.abs(pixels - expected).mean())


def _folder_with_bad_files(tmp_path):
  root = tmp_path / "data"
  for label in ("a", "b"):
    (root / label).mkdir(parents=True)
    for i in range(4):
      write_image(root / label / f"{i}.png", make_image("2" if label == "a" else "10", i), "PNG", "RGB")
  (root / "a" / "notes.txt").write_text("not an image")
  (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)  # a JPEG header, then nothing
  (root / "b" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: never listed
  return root


def test_bad_files_are_skipped_counted_and_logged_by_path(tmp_path, caplog):
  root = _folder_with_bad_files(tmp_path)
  ex = _load(f"imagedir:{root}")
  assert ex.skipped == 2 and len(ex) == 8
  assert not any(p.endswith(("notes.txt", "broken.jpg")) for p in ex.paths)
  logged = caplog.text
  assert str(root / "a" / "notes.txt") in logged and str(root / "b" / "broken.jpg") in logged


def test_bad_file_fails_under_on_bad_file_fail(tmp_path):
  root = _folder_with_bad_files(tmp_path)
  with pytest.raises(UserError, match=r"notes\.txt is not a decodable image.*2 bad file\(s\).*--on_bad_file=skip"):
    _load(f"imagedir:{root}", on_bad_file="fail")


def test_every_file_that_passes_the_check_trains_without_error(tmp_path):
  from tfft.data import image_batches

  ex = _load(f"imagedir:{_folder_with_bad_files(tmp_path)}")
  labels = np.array([0 if label == "a" else 1 for label in ex.labels])
  ds = image_batches.make_dataset(ex, labels, np.arange(len(ex)), num_classes=2, image_size=16, batch_size=3)
  for _ in range(2):  # two epochs, the second from the cache
    batches = [x.numpy() for x, _ in ds]
    assert sum(len(b) for b in batches) == 8 and batches[0].dtype == np.float32


@pytest.mark.parametrize("layout, needle", [
    ("empty_class", "class folder"),
    ("no_images", "no decodable images"),
    ("no_subfolders", "no class subfolders"),
    ("only_bad_class", "holds no decodable image"),
])
def test_folder_problems_name_the_folder(tmp_path, layout, needle):
  root = tmp_path / "data"
  root.mkdir()
  if layout == "no_subfolders":
    write_image(root / "x.png", make_image("2", 0), "PNG", "RGB")
  else:
    for label in ("a", "b"):
      (root / label).mkdir()
    if layout == "empty_class":
      write_image(root / "a" / "x.png", make_image("2", 0), "PNG", "RGB")
    elif layout == "no_images":
      (root / "a" / "x.txt").write_text("text")
      (root / "b" / "y.txt").write_text("text")
    else:
      write_image(root / "a" / "x.png", make_image("2", 0), "PNG", "RGB")
      (root / "b" / "y.png").write_text("not a png")
  with pytest.raises(UserError, match=needle) as e:
    _load(f"imagedir:{root}")
  assert str(root) in str(e.value)


def test_csv_paths_are_relative_to_the_csv(tmp_path, tiny_imagedir):
  rows = ["file,label"] + [f"{tiny_imagedir.name}/{label}/{i:02d}_{IMAGE_KINDS[i][2]}.{IMAGE_KINDS[i][0]},{label}"
                           for label in IMAGE_CLASSES for i in range(4)]
  table = tiny_imagedir.parent / "images.csv"
  table.write_text("\n".join(rows) + "\n")
  ex = _load(f"csv:{table}", image_column="file")
  assert len(ex) == 12 and ex.ids[0] == "row:1" and ex.paths[0] == str(tiny_imagedir / "2" / "00_L.jpg")
  with pytest.raises(UserError, match="--image_column='path' is not a column of images.csv; its columns are: file, "
                                      "label"):
    _load(f"csv:{table}", image_column="path")


def test_digits_classes_and_examples_per_class():
  ex = _load("digits", classes=("0", "1", "2", "3", "4"))
  assert set(ex.labels) == {"0", "1", "2", "3", "4"} and len(ex) == 901
  assert ex.pixels.shape == (901, 8, 8, 3) and ex.pixels.dtype == np.uint8 and ex.pixels.max() == 255
  few = _load("digits", classes=("5", "7"), examples_per_class=4)
  assert few.labels == ["5"] * 4 + ["7"] * 4 or sorted(few.labels) == ["5"] * 4 + ["7"] * 4
  with pytest.raises(UserError, match=r"--classes=1,x: 'x' not in --dataset=digits; its classes are: 0, 1"):
    _load("digits", classes=("1", "x"))


def _write_idx(path, array):
  """An IDX file of uint8, gzipped, as Fashion-MNIST ships them: 0, 0, 0x08, ndim, big-endian dims, data."""
  import gzip
  header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files_train_then_test_with_named_classes(tmp_path):
  rng = np.random.default_rng(0)
  train, test = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 256, (4, 28, 28))
  _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
  _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 9, 9, 5]))
  _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
  _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 4, 6, 7]))
  ex = images.load_fashion_mnist(tmp_path)
  assert ex.pixels.shape == (10, 28, 28, 3) and ex.pixels.dtype == np.uint8
  np.testing.assert_array_equal(ex.pixels[:6, ..., 1], train)
  np.testing.assert_array_equal(ex.pixels[6:, ..., 0], test)
  assert ex.labels[:4] == ["tshirt_top", "trouser", "pullover", "ankle_boot"] and ex.labels[-1] == "sneaker"
  assert ex.ids[0] == "train:0" and ex.ids[6] == "t10k:0"


def test_fashion_mnist_missing_or_broken_files_say_how_to_install(tmp_path, monkeypatch):
  monkeypatch.setattr(images, "FASHION_MNIST_DIR", tmp_path)
  with pytest.raises(UserError, match=r"^--dataset=fashion_mnist: .*train-images-idx3-ubyte.gz not found; install "
                     r"the data with apt-get install dataset-fashion-mnist"):
    images.load_fashion_mnist(tmp_path)
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz"):
    _write_idx(tmp_path / name, np.zeros((2, 28, 28)) if "images" in name else np.zeros(2))
  (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
  with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte.gz \(.*\); reinstall it: apt-get install --reinstall"):
    images.load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not images.FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debians_package_is_70000_balanced_images():
  ex = _load("fashion_mnist", examples_per_class=5)
  assert len(ex) == 50 and sorted(set(ex.labels)) == sorted(images.FASHION_MNIST_CLASSES)


def test_few_shot_draws_per_class_by_seed_and_keeps_val_and_test():
  labels = ["a"] * 30 + ["b"] * 30
  parts = split.stratified_split(labels, val_fraction=0.2, test_fraction=0.2, seed=3)
  train = split.few_shot(parts["train"], labels, 5, seed=3)
  assert len(train) == 10 and set(train) <= set(parts["train"])
  assert sorted(labels[i] for i in train) == ["a"] * 5 + ["b"] * 5
  assert np.array_equal(train, split.few_shot(parts["train"], labels, 5, seed=3))
  assert not np.array_equal(train, split.few_shot(parts["train"], labels, 5, seed=4))


def test_tfds_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=60, policy=tfds.testing.MockPolicy.USE_CODE):
    ex = _load("tfds:mnist", tfds_split="train", tfds_data_dir=str(tmp_path))
  assert len(ex) == 60 and ex.pixels.shape == (60, 28, 28, 3) and ex.pixels.dtype == np.uint8
  assert set(ex.labels) <= {str(i) for i in range(10)} and ex.ids[0] == "train:0"
  assert np.array_equal(ex.pixels[..., 0], ex.pixels[..., 2])  # grayscale became three equal channels


def test_tfds_not_prepared_offline_says_what_to_do(tmp_path):
  with pytest.raises(UserError, match=r"--dataset=tfds:mnist.*cannot read it from .*tfds build mnist"):
    _load("tfds:mnist", tfds_data_dir=str(tmp_path))
