"""The TF Serving kit beside an export: the warmup requests file and a models.config for several models."""

import pathlib
from typing import List, Sequence

from tfft.errors import UserError
from tfft.files import atomic_path, write_atomically
from tfft.serving import versions

WARMUP = "tf_serving_warmup_requests"
MODELS_CONFIG = "models.config"
_HEADER = "# Written by python -m tfft.export --models_config; rewritten on the next call.\n"


def write_warmup(export: pathlib.Path, values: Sequence, *, input_name: str, model_name: str,
                 max_records: int = 10, input_names: Sequence[str] = ()) -> pathlib.Path:
  """Writes assets.extra/tf_serving_warmup_requests: one PredictionLog per example, batch of one.

  TF Serving replays these before it marks the version available, so the first real request does not pay for
  graph tracing and kernel set-up.

  Args:
    export: the export version dir (or its temporary directory).
    values: real examples as the signature takes them (UTF-8 text or encoded image bytes).
    input_name: the serving_default input they feed.
    input_names: for a signature with several inputs (pairs of texts), their names; each value is then a tuple
      with one item per input.
    model_name: the model's name under TF Serving.
    max_records: how many examples to write; TF Serving reads at most 1000.

  Returns:
    The file's path.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2  # pylint: disable=g-import-not-at-top

  path = export / "assets.extra" / WARMUP
  path.parent.mkdir(exist_ok=True)
  with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
    for value in list(values)[:max_records]:
      request = predict_pb2.PredictRequest(
          model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
      if len(input_names) > 1:
        for name, item in zip(input_names, value):
          request.inputs[name].CopyFrom(tf.make_tensor_proto([item], dtype=tf.string))
      else:
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto([value], dtype=tf.string))
      log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path


def write_models_config(base: pathlib.Path, *, serving_base: str = "/models") -> List[str]:
  """Writes BASE/models.config: a model_config_list entry for every model under BASE that has a version.

  Args:
    base: the export base dir, holding NAME/VERSION/saved_model.pb.
    serving_base: where BASE is mounted inside the TF Serving container.

  Returns:
    The model names written.

  Raises:
    UserError: if BASE holds no model, or its models.config was not written by tfft.
  """
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.config import model_server_config_pb2  # pylint: disable=g-import-not-at-top

  if not base.is_dir():
    raise UserError(f"--models_config={base}: no such directory; pass the export base dir (--export_dir)")
  names = sorted(p.name for p in base.iterdir() if p.is_dir() and versions.published(p))
  if not names:
    raise UserError(f"--models_config={base} holds no model (NAME/VERSION/saved_model.pb); export one first")
  path = base / MODELS_CONFIG
  if path.exists() and not path.read_text().startswith(_HEADER):
    raise UserError(f"--models_config={base}: {path} exists and was not written by tfft; move it away first")
  config = model_server_config_pb2.ModelServerConfig()
  for name in names:
    entry = config.model_config_list.config.add()
    entry.name = name
    entry.base_path = f"{serving_base.rstrip('/')}/{name}"
    entry.model_platform = "tensorflow"
  write_atomically(path, _HEADER + text_format.MessageToString(config))
  return names
