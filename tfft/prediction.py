"""The predict job: read texts or image paths, run them through the export's serving_default, format the top k."""

import glob
import json
import pathlib
import sys
from typing import Dict, List, Optional, Sequence, TextIO

import numpy as np

from tfft import served
from tfft.errors import UserError


def read_inputs(args: Sequence[str], *, input_file: Optional[str] = None, stdin: TextIO = sys.stdin) -> List[str]:
  """The inputs: arguments, then --input_file's lines; stdin's lines when neither is given or an argument is `-`.

  Raises:
    UserError: for a missing input file, or no input at all.
  """
  values = []
  for arg in args:
    values.extend(line for line in stdin.read().splitlines() if line.strip()) if arg == "-" else values.append(arg)
  if input_file:
    path = pathlib.Path(input_file).expanduser()
    if not path.is_file():
      raise UserError(f"--input_file={input_file}: no such file; it should hold one input per line")
    values.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
  elif not args:
    values.extend(line for line in stdin.read().splitlines() if line.strip())
  if not values:
    raise UserError("no inputs: pass texts or image paths as arguments, --input_file=FILE (one per line), or lines "
                    "on stdin")
  return values


def expand_images(values: Sequence[str]) -> List[str]:
  """Image paths with globs expanded, in order.

  Raises:
    UserError: for a path that does not exist or a glob that matches nothing.
  """
  paths = []
  for value in values:
    matches = sorted(glob.glob(str(pathlib.Path(value).expanduser()), recursive=True))
    files = [m for m in matches if pathlib.Path(m).is_file()]
    if not files:
      raise UserError(f"{value}: no such image file (and no file matches it as a glob); pass image paths or globs")
    paths.extend(files)
  return paths


def predict(model: str, values: Sequence[str], *, top_k: int = 3, batch_size: int = 32) -> List[Dict]:
  """Runs inputs through the export's serving_default.

  Args:
    model: an export dir, model base dir or run dir (see served.locate).
    values: texts for a text model; image paths or globs for an image model.
    top_k: classes to keep per input.
    batch_size: inputs per signature call.

  Returns:
    Per input: {"input": value, "predictions": [{"class_name", "class_id", "probability"}, …]} best first.
  """
  export, _ = served.locate(model)
  task = served.read_meta(export).get("task")
  served.read_class_names(export)  # fail before loading TensorFlow
  if task == "image":
    values = expand_images(values)
  served_model = served.ServedModel(export)
  if served_model.task == "image" and task != "image":
    values = expand_images(values)
  probabilities = served_model.predict(served.as_bytes(served_model.task, values), batch_size=batch_size)
  names = served_model.class_names
  order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
  return [{"input": value, "predictions": [{"class_name": names[j], "class_id": int(j),
                                            "probability": float(probabilities[i, j])} for j in order[i]]}
          for i, value in enumerate(values)]


def format_table(rows: Sequence[Dict], *, width: int = 48) -> str:
  """One block per input: the input (shortened), then its top classes with probabilities."""
  name_width = max([10] + [len(p["class_name"]) for row in rows for p in row["predictions"]])
  lines = [f"{'input':<{width}}  {'class':<{name_width}}  probability"]
  for row in rows:
    text = " ".join(row["input"].split())
    text = text if len(text) <= width else text[:width - 1] + "…"
    for rank, p in enumerate(row["predictions"]):
      lines.append(f"{text if rank == 0 else '':<{width}}  {p['class_name']:<{name_width}}  {p['probability']:.4f}")
  return "\n".join(lines)


def format_json(rows: Sequence[Dict]) -> str:
  return json.dumps(list(rows), indent=2, ensure_ascii=False)
