"""An exported SavedModel read back as TF Serving runs it: where it is, its labels and task, and predictions through
its serving_default signature (tfft.load)."""

import json
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfft.errors import UserError
from tfft.rundir import LABELS, read_labels, STATE
from tfft.serving import versions

# In assets.extra/: {"task": "text"|"image" (the modality), "input": NAME, "model_dir": ..., ...}; an export of another
# --task than classify also has "target" (tfft.tasks.api.Target) and, for pairs, "inputs": [NAME_A, NAME_B].
META = "tfft.json"


def locate(value: str, flag: str = "model") -> Tuple[pathlib.Path, Optional[pathlib.Path]]:
  """Finds the export a `--model` value names, without loading TensorFlow.

  Accepts an export version dir (EXPORT_DIR/NAME/VERSION), a model base dir (EXPORT_DIR/NAME: its highest version,
  as TF Serving picks) or a run dir (the export its run wrote).

  Returns:
    (export version dir, the run dir when `value` is one, else None).

  Raises:
    UserError: if the path holds none of these.
  """
  path = pathlib.Path(value).expanduser()
  if not path.exists():
    raise UserError(f"--{flag}={value}: no such file or directory; pass an export dir (EXPORT_DIR/NAME/VERSION), "
                    "a model base dir or a run dir")
  if (path / "saved_model.pb").is_file():
    return path, None
  if (path / STATE).is_file():
    export = json.loads((path / STATE).read_text()).get("export_path")
    if not export or not (pathlib.Path(export) / "saved_model.pb").is_file():
      raise UserError(f"--{flag}={value} is a run dir without an export ({export or 'the run did not finish'}); "
                      f"export it with python -m tfft.export --model_dir={value}, or pass the export dir")
    return pathlib.Path(export), path
  if versions.published(path):
    return path / str(versions.published(path)[-1]), None
  raise UserError(f"--{flag}={value} is not a SavedModel (no saved_model.pb): pass an export dir "
                  "(EXPORT_DIR/NAME/VERSION), a model base dir or a run dir")


def read_meta(export: pathlib.Path) -> Dict:
  """tfft.json from the export's assets.extra/, or {} for an export without it."""
  path = export / "assets.extra" / META
  return json.loads(path.read_text()) if path.is_file() else {}


def read_class_names(export: pathlib.Path) -> List[str]:
  """The export's labels.txt: class names in the order of its probabilities.

  Raises:
    UserError: if the export has none.
  """
  path = export / "assets.extra" / LABELS
  if not path.is_file():
    raise UserError(f"{export} has no assets.extra/{LABELS}; it was not exported by tfft (re-export it with "
                    "python -m tfft.export --model_dir=RUN_DIR)")
  return read_labels(path)


def as_bytes(task: str, inputs: Sequence[str]) -> List[bytes]:
  """What the signature is fed, as TF Serving's REST API hands it over: UTF-8 text (a pair of them for a pair
  model), or an image file's bytes.

  Raises:
    UserError: for an image path that cannot be read.
  """
  if task == "text":
    return [tuple(t.encode("utf-8") for t in text) if isinstance(text, (tuple, list)) else text.encode("utf-8")
            for text in inputs]
  out = []
  for path in inputs:
    if isinstance(path, bytes):  # an image held in memory, already encoded
      out.append(path)
      continue
    try:
      out.append(pathlib.Path(path).read_bytes())
    except OSError as e:
      raise UserError(f"{path}: cannot read this image ({e.strerror}); check the path") from None
  return out


def _concatenate(arrays: Sequence[np.ndarray]) -> np.ndarray:
  """Batches of one output back to back; outputs padded per batch (a tagger's [N, W, ...], W the batch's longest
  sentence) are padded to the widest batch first, with what the export pads with: "", -1, or 0."""
  width = max(a.shape[1] for a in arrays) if arrays[0].ndim > 1 else None
  if width is None or all(a.shape[1] == width for a in arrays):
    return np.concatenate(arrays)
  fill = b"" if arrays[0].dtype.kind in "SOU" else -1 if arrays[0].dtype.kind in "iu" else 0
  padded = [np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=fill)
            if a.shape[1] < width else a for a in arrays]
  return np.concatenate(padded)


class ExportedModel:
  """The export's `serving_default`, loaded with TensorFlow and TF Text only, as TF Serving would run it.

  Attributes:
    path: the export version dir.
    class_names: labels.txt.
    task: "text" or "image", from tfft.json (else guessed from the input's name).
    target: what it predicts: tfft.json's "target" (the kind of task; "classify" for exports without it).
    input_names: the signature's inputs, each a [None] tf.string, in the order a pair's texts are given.
    input_name: the first of them (the only one, except for pairs).
    output_names: the signature's outputs.

  Raises:
    UserError: if the SavedModel cannot be loaded or its signature is not tfft's contract.
  """

  def __init__(self, path: pathlib.Path, target):
    """`target`: the Target (tfft.tasks.api) of the kind tfft.json names, which turns outputs into predictions."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import  (registers the tokenizer ops)

    self.path = path
    self.class_names = read_class_names(path)
    meta = read_meta(path)
    try:
      self._loaded = tf.saved_model.load(str(path))
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"{path}: TensorFlow cannot load this SavedModel ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:200]})") from None
    self._fn = self._loaded.signatures.get("serving_default")
    if self._fn is None:
      raise UserError(f"{path} has no serving_default signature; export it with tfft")
    _, inputs = self._fn.structured_input_signature
    self.input_names = list(meta.get("inputs") or sorted(inputs))
    if (sorted(self.input_names) != sorted(inputs) or len(inputs) not in (1, 2)
        or any(spec.dtype != tf.string for spec in inputs.values())):
      raise UserError(f"{path}: serving_default takes {sorted(inputs)}; tfft reads exports whose serving_default "
                      "takes one batch of strings (texts or encoded images), or two (pairs of texts)")
    self.input_name = self.input_names[0]
    self.output_names = sorted(self._fn.structured_outputs)
    self.target = target.name
    self._target = target
    # Exports of the default target (plain classification, no "target" in tfft.json) without a two-class
    # --threshold: its predictions are the ranked probabilities.
    self.ranks_probabilities = "target" not in meta and "threshold" not in meta
    wanted = target.parity_output
    if wanted not in self.output_names:
      raise UserError(f"{path}: serving_default returns {self.output_names}, not {wanted}")
    self.task = meta.get("task") or ("image" if "image" in self.input_name else "text")
    self.signature = {"inputs": {name: (spec.dtype.name, spec.shape.as_list()) for name, spec in inputs.items()},
                      "outputs": {name: (spec.dtype.name, spec.shape.as_list())
                                  for name, spec in self._fn.structured_outputs.items()}}

  def outputs(self, values: Sequence, *, batch_size: int = 32) -> Dict[str, np.ndarray]:
    """Every output of serving_default for inputs as TF Serving hands them over (see as_bytes; a tuple of two per
    input for a pair model), a batch at a time."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    from tfft.data.windows import length_order  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow)

    # Texts go in order of length: the export cuts each batch to its longest text, so batches of similar lengths
    # are cheaper. The outputs come back in the order of `values`.
    if self.task == "text":
      order = length_order(values)
    else:
      order = np.arange(len(values))
    values = [values[i] for i in order]
    parts = []
    for i in range(0, len(values), batch_size):
      batch = list(values[i:i + batch_size])
      if len(self.input_names) == 1:
        feed = {self.input_name: tf.constant(batch, tf.string)}
      else:
        if any(not isinstance(v, (tuple, list)) or len(v) != len(self.input_names) for v in batch):
          raise UserError(f"{self.path} takes pairs of texts ({', '.join(self.input_names)}); give each input as "
                          "two texts")
        feed = {name: tf.constant([v[k] for v in batch], tf.string) for k, name in enumerate(self.input_names)}
      parts.append({name: value.numpy() for name, value in self._fn(**feed).items()})
    if not parts:
      return {}
    restore = np.argsort(order, kind="stable")
    return {name: _concatenate([p[name] for p in parts])[restore] for name in parts[0]}

  def probabilities(self, values: Sequence[bytes], *, batch_size: int = 32) -> np.ndarray:
    """Probabilities [N, C] from serving_default for inputs as TF Serving hands them over (see as_bytes), a batch
    at a time."""
    if not values:
      return np.zeros((0, len(self.class_names)), np.float32)
    probabilities = self.outputs(values, batch_size=batch_size)["probabilities"]
    if probabilities.shape[1] != len(self.class_names):
      raise UserError(f"{self.path}: serving_default gives {probabilities.shape[1]} probabilities per input but "
                      f"labels.txt names {len(self.class_names)} classes; re-export the model")
    return probabilities

  def predict(self, inputs: Sequence, *, top_k: int = 3, batch_size: int = 32) -> List[Dict]:
    """The predictions for each input: texts for a text model (pairs of texts for a pair model), image paths (or
    encoded bytes) for images.

    Returns:
      Per input: {"input": value, **the target's predictions}; for classification "predictions": [{"class_name",
      "class_id", "probability"}, …] (the top `top_k`, best first), for regression "score".

    Raises:
      UserError: for an image path that cannot be read.
    """
    if not inputs:
      return []
    if self.ranks_probabilities:
      outputs = {"probabilities": self.probabilities(as_bytes(self.task, inputs), batch_size=batch_size)}
    else:
      outputs = self.outputs(as_bytes(self.task, inputs), batch_size=batch_size)
    rows = self._target.predictions(outputs, self.class_names, top_k=top_k)
    return [{"input": value, **row} for value, row in zip(inputs, rows)]
