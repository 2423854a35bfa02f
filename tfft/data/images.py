"""Image classification sources: a folder per class, a csv of image paths, the built-in digits, Fashion-MNIST's IDX
files, and tfds."""

import concurrent.futures
import dataclasses
import gzip
import pathlib
import re
from typing import List, Optional, Sequence

import numpy as np
from absl import logging

from tfft.config import DataConfig, split_dataset_spec
from tfft.data.split import select_classes
from tfft.data.text import class_folder_files, load_table, natural_key, sorted_class_names
from tfft.errors import UserError


@dataclasses.dataclass(frozen=True)
class ImageExamples:
  """Images with their string labels: files decoded in tf.data (`paths`), or uint8 pixels held in memory.

  `ids` say where each came from (relative path, csv row, or source index); `skipped` counts files that did not
  decode and were left out under --on_bad_file=skip.
  """
  labels: List[str]
  ids: List[str]
  source: str
  paths: Optional[List[str]] = None
  pixels: Optional[np.ndarray] = None  # uint8 [N, H, W, 3]
  skipped: int = 0

  def __len__(self):
    return len(self.labels)

  def take(self, indices: Sequence[int]) -> "ImageExamples":
    return dataclasses.replace(
        self, labels=[self.labels[i] for i in indices], ids=[self.ids[i] for i in indices],
        paths=None if self.paths is None else [self.paths[i] for i in indices],
        pixels=None if self.pixels is None else self.pixels[np.asarray(indices, dtype=np.int64)])


def _decodes(path: str) -> Optional[str]:
  """None if TF's decoder (the one training and serving use) reads the file as an image, else the reason."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return None
  except (tf.errors.OpError, OSError) as e:
    message = (e.message if hasattr(e, "message") else str(e)).splitlines()[0]
    return re.sub(r"\{\{function_node [^}]*\}\}", "", message).strip()[:120]  # TF's op-location prefix


def check_files(paths: Sequence[str], labels: Sequence[str], ids: Sequence[str], *, flag_value: str,
                on_bad_file: str, source: str) -> ImageExamples:
  """Decodes every file once, up front, so a bad one is reported by path instead of failing an epoch halfway.

  Raises:
    UserError: under --on_bad_file=fail for the first bad file; or when no file at all decodes.
  """
  # TF's decode ops release the GIL, so threads overlap the reads and decodes.
  with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
    problems = list(pool.map(_decodes, paths))
  bad = [i for i, problem in enumerate(problems) if problem]
  for i in bad:
    logging.warning("skipping %s: not a decodable image (%s)", paths[i], problems[i])
  if bad and on_bad_file == "fail":
    raise UserError(f"--dataset={flag_value}: {paths[bad[0]]} is not a decodable image ({problems[bad[0]]}); "
                    f"{len(bad)} bad file(s) in all; remove them, or pass --on_bad_file=skip")
  keep = [i for i, problem in enumerate(problems) if not problem]
  if not keep:
    raise UserError(f"--dataset={flag_value}: no decodable images in {source} (jpg, png, gif or bmp)")
  return ImageExamples([labels[i] for i in keep], [ids[i] for i in keep], source,
                       paths=[paths[i] for i in keep], skipped=len(bad))


def load_imagedir(root: pathlib.Path, data: DataConfig) -> ImageExamples:
  """Lists ROOT/<class>/<file> (any depth below the class folder) and checks every file decodes.

  Raises:
    UserError: for a missing root, a file in its place, no class folders, an empty class folder, or no images.
  """
  flag_value = data.dataset
  if not root.is_dir():
    what = "is a file" if root.exists() else "does not exist"
    raise UserError(f"--dataset={flag_value}: {root} {what}; point it at a folder with one subfolder of images "
                    "per class")
  found = class_folder_files(root, flag_value, noun="images", add="images")
  labels, files, ids = (list(column) for column in zip(*found))
  examples = check_files([str(f) for f in files], labels, ids, flag_value=flag_value, on_bad_file=data.on_bad_file,
                         source=str(root))
  empty = sorted(set(labels) - set(examples.labels), key=natural_key)
  if empty:
    raise UserError(f"--dataset={flag_value}: class folder {root / empty[0]} holds no decodable image; add images "
                    "or remove it")
  return examples


def load_image_table(path: pathlib.Path, data: DataConfig) -> ImageExamples:
  """Reads image paths (relative to the table's folder, or absolute) and labels from a .csv, .tsv or .jsonl.

  Paths must stay inside the table's folder (symlinks resolved) unless --allow_external_paths.

  Raises:
    UserError: as tfft.data.text.load_table, for an empty path, a path outside the table's folder, or when no
      image decodes.
  """
  table = load_table(path, data.dataset, text_column=data.image_column, label_column=data.label_column,
                     text_flag="image_column")
  paths = []
  root = path.parent.resolve()
  for value, row in zip(table.texts, table.ids):
    if not value.strip():
      raise UserError(f"--dataset={data.dataset}: {row} has no path in column {data.image_column!r}; fill it in")
    image = pathlib.Path(value.strip()).expanduser()
    image = image if image.is_absolute() else path.parent / image
    # A table from elsewhere must not make training read (and the report quote) files outside its folder.
    if not data.allow_external_paths and not image.resolve().is_relative_to(root):
      raise UserError(f"--dataset={data.dataset}: {row} names {value.strip()!r}, outside the table's folder {root}; "
                      "move the images under it, or pass --allow_external_paths if the table is yours")
    paths.append(str(image))
  # A missing file is a bad file too: check_files reports it by path.
  return check_files(paths, table.labels, table.ids, flag_value=data.dataset, on_bad_file=data.on_bad_file,
                     source=str(path))


def load_digits() -> ImageExamples:
  """scikit-learn's 8x8 digits (1797 images, shipped with sklearn), as grey uint8 RGB; 0..16 maps to 0..255."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  pixels = np.repeat(grey[..., None], 3, axis=-1)
  return ImageExamples([str(t) for t in digits.target], [f"digits:{i}" for i in range(len(grey))],
                       "sklearn.datasets.load_digits", pixels=pixels)


# Where Debian's dataset-fashion-mnist package installs the IDX files (gzipped, as the dataset publishes them).
FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
# Label i's name, from the dataset's README; "/" and spaces left out, so a name is also a plain file name.
FASHION_MNIST_CLASSES = ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle_boot")


def read_idx(path: pathlib.Path) -> np.ndarray:
  """An IDX file (gzipped or not) of unsigned bytes as a numpy array of its shape.

  The format: two zero bytes, a type code (0x08 for uint8), the number of dimensions, each dimension as a
  big-endian uint32, then the data in C order.

  Raises:
    UserError: for a file that is not an IDX file of unsigned bytes, or is cut short.
  """
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise UserError(f"--dataset=fashion_mnist: cannot read {path} ({e}); reinstall it: "
                    "apt-get install --reinstall dataset-fashion-mnist") from None
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
    raise UserError(f"--dataset=fashion_mnist: {path} is not an IDX file of unsigned bytes; reinstall it: "
                    "apt-get install --reinstall dataset-fashion-mnist")
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  start = 4 + 4 * ndim
  if len(data) != start + int(np.prod(shape)):
    raise UserError(f"--dataset=fashion_mnist: {path} holds {len(data) - start} bytes of data, its header says "
                    f"{shape}; reinstall it: apt-get install --reinstall dataset-fashion-mnist")
  return np.frombuffer(data, np.uint8, offset=start).reshape(shape)


def load_fashion_mnist(root: pathlib.Path = FASHION_MNIST_DIR) -> ImageExamples:
  """Fashion-MNIST's 60,000 training and 10,000 test images (28x28 grey, 10 classes) as one pool of grey uint8
  RGB, training images first; tfft splits the pool itself. Ids are train:I and t10k:I.

  Raises:
    UserError: when the files are missing (with the apt-get command that installs them) or malformed.
  """
  missing = [name for pair in FASHION_MNIST_FILES.values() for name in pair if not (root / name).is_file()]
  if missing:
    raise UserError(f"--dataset=fashion_mnist: {root / missing[0]} not found; install the data with "
                    "apt-get install dataset-fashion-mnist (Debian/Ubuntu), or pass --dataset=imagedir:PATH")
  grey, labels, ids = [], [], []
  for part, (images_file, labels_file) in FASHION_MNIST_FILES.items():
    images, targets = read_idx(root / images_file), read_idx(root / labels_file)
    if images.ndim != 3 or targets.ndim != 1 or len(images) != len(targets) or targets.max() >= 10:
      raise UserError(f"--dataset=fashion_mnist: {root / images_file} and {labels_file} do not pair up as images "
                      "and labels 0-9; reinstall them: apt-get install --reinstall dataset-fashion-mnist")
    grey.append(images)
    labels += [FASHION_MNIST_CLASSES[t] for t in targets]
    ids += [f"{part}:{i}" for i in range(len(targets))]
  pixels = np.repeat(np.concatenate(grey)[..., None], 3, axis=-1)
  return ImageExamples(labels, ids, str(root), pixels=pixels)


def load_tfds(name: str, data: DataConfig) -> ImageExamples:
  """Reads a prepared TFDS image classification dataset (its supervised keys) into memory.

  Images of one size are kept as they are; grayscale becomes RGB. Class names come from the label feature.

  Raises:
    UserError: for an unknown dataset, one not prepared in --tfds_data_dir, or images of varying size.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  where = data.tfds_data_dir or "TFDS's default data dir"
  try:
    ds, info = tfds.load(name, split=data.tfds_split, data_dir=data.tfds_data_dir or None, as_supervised=True,
                         with_info=True, download=False)
  except Exception as e:  # pylint: disable=broad-except
    message = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise UserError(f"--dataset={data.dataset} (--tfds_split={data.tfds_split}): cannot read it from {where} "
                    f"({message}); prepare it on a connected machine (tfds build {name}) and point "
                    "--tfds_data_dir at the copy") from None
  label_feature = info.supervised_keys[1] if info.supervised_keys else "label"
  names = getattr(info.features[label_feature], "names", None)
  images, labels = [], []
  for image, label in tfds.as_numpy(ds):
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
      raise UserError(f"--dataset={data.dataset}: examples are not images (shape {image.shape})")
    images.append(image[..., :3] if image.shape[-1] >= 3 else np.repeat(image, 3, axis=-1))
    labels.append(names[int(label)] if names else str(label))
  if not images:
    raise UserError(f"--dataset={data.dataset}: --tfds_split={data.tfds_split} holds no examples")
  if len({im.shape for im in images}) > 1:
    raise UserError(f"--dataset={data.dataset}: its images differ in size; export them to a folder per class and "
                    "use --dataset=imagedir:PATH")
  return ImageExamples(labels, [f"{data.tfds_split}:{i}" for i in range(len(labels))], f"tfds:{name}",
                       pixels=np.stack(images).astype(np.uint8))


def load_examples(data: DataConfig, *, numeric_labels: bool = False) -> ImageExamples:
  """Loads the images `--dataset` names, keeps --classes and --examples_per_class, checks there are 2+ classes
  (with numeric_labels, images whose labels are numbers: no class check).

  Raises:
    UserError: for a bad source, a missing class, or fewer than two classes.
  """
  kind, path = split_dataset_spec(data.dataset)
  if kind == "digits":
    examples = load_digits()
  elif kind == "fashion_mnist":
    examples = load_fashion_mnist()
  elif kind == "tfds":
    examples = load_tfds(path, data)
  elif kind == "imagedir":
    examples = load_imagedir(pathlib.Path(path).expanduser(), data)
  else:
    examples = load_image_table(pathlib.Path(path).expanduser(), data)
  if data.classes:
    examples = examples.take(select_classes(examples.labels, data.classes, flag_value=data.dataset))
  if data.max_examples:
    examples = examples.take(list(range(min(data.max_examples, len(examples)))))
  if data.examples_per_class:
    seen, keep = {}, []
    for i, label in enumerate(examples.labels):
      seen[label] = seen.get(label, 0) + 1
      if seen[label] <= data.examples_per_class:
        keep.append(i)
    examples = examples.take(keep)
  if numeric_labels:
    return examples  # the labels are numbers; the regression target reads them
  classes = sorted_class_names(examples.labels)
  if len(classes) < 2:
    raise UserError(f"--dataset={data.dataset}: found only class {classes[0]!r}; a classifier needs at least two "
                    "classes")
  return examples


def served_inputs(examples: ImageExamples) -> List:
  """What a serving signature is fed for each image: its file path (read as bytes later), or, for images held in
  memory (digits, tfds), the pixels encoded as PNG, which decodes back to exactly the same pixels."""
  if examples.paths is not None:
    return list(examples.paths)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return [tf.io.encode_png(p).numpy() for p in examples.pixels]
