"""One class per example: the target of classify and pairs (softmax, cross-entropy, classification metrics)."""

from typing import Dict, List, Optional, Sequence

import numpy as np

from tfft.config_checks import check_min_metric
from tfft.data import split as split_lib
from tfft.data.text import sorted_class_names
from tfft.report import metrics as metrics_lib
from tfft.report import threshold as threshold_lib
from tfft.report import run_report, summary
from tfft.report.significance import format_verdict, METRICS
from tfft.report.summary import shorten
from tfft.serving import parity as parity_lib
from tfft.tasks.api import Targets
from tfft.tasks.pooled.gates import CLASSIFICATION_MONITORS
from tfft.tasks import target_base
from tfft.tasks.target_base import TargetBase


class ClassTarget(TargetBase):
  """One class per example: softmax over classes, cross-entropy, classification metrics, TF-IDF + LinearSVC."""
  parity_output = "probabilities"  # the served output the parity check compares
  curve_metric = "accuracy"  # the compiled metric the training curves draw beside the loss
  monitors = CLASSIFICATION_MONITORS
  stratified = "per class"  # how the split is stratified, for the model card
  calibrates = True

  def __init__(self, name: str, *, writes_target_key: bool = True):
    """`name`: the --task this target serves; writes_target_key=False keeps tfft.json's "target" out of its exports
    (the readers' default)."""
    self.name = name
    self.writes_target_key = writes_target_key

  def log_line(self, targets: Targets) -> str:
    return f"{targets.width} classes"

  def check_parity(self, exported, data, in_process: np.ndarray, *, batch_size: int, atol: float) -> Dict:
    """The served probabilities against the in-process ones on the parity sample of the test split, with both
    models' accuracy and macro-F1 on it."""
    positions, served = self.served_on_test(exported, data, batch_size=batch_size)
    result = parity_lib.check_parity(served, np.asarray(in_process)[positions],
                                     data.labels[data.split["test"]][positions], data.class_names, atol=atol)
    return {**result, "of": len(data.split["test"]), "sample": target_base.PARITY_SAMPLE}

  def encode(self, labels: Sequence[str], *, where: str, names: Optional[Sequence[str]] = None,
             ids: Optional[Sequence[str]] = None) -> Targets:  # pylint: disable=unused-argument
    """Class indices in natural order of the class names (or in `names`' order: labels.txt of a run).

    Raises:
      UserError: naming labels that `names` does not hold.
    """
    names = tuple(names) if names is not None else tuple(sorted_class_names(labels))
    return Targets(names, split_lib.label_indices(labels, names, where=where), tuple(labels))

  def fit(self, targets: Targets, train: np.ndarray) -> Targets:  # pylint: disable=unused-argument
    return targets

  def rows(self, targets: Targets, values: np.ndarray) -> np.ndarray:
    """What the model trains on: one-hot rows (so that label smoothing applies)."""
    return np.eye(targets.width, dtype="float32")[np.asarray(values)]

  def check_gates(self, gates, targets: Targets):
    check_min_metric(gates, targets.width)


  def loss(self, train):
    """--loss on logits: cross-entropy, or Keras' focal cross-entropy with --focal_gamma. Its alpha is 1: a scalar
    that only rescales the loss; weighing classes is --class_weight's job."""
    import keras  # pylint: disable=g-import-not-at-top
    if train.loss == "focal":
      return keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=train.focal_gamma, from_logits=True,
                                                       label_smoothing=train.label_smoothing)
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=train.label_smoothing)

  def keras_metrics(self):
    import keras  # pylint: disable=g-import-not-at-top
    return [keras.metrics.CategoricalAccuracy(name="accuracy")]

  def served(self, logits: np.ndarray, targets: Targets) -> np.ndarray:  # pylint: disable=unused-argument
    """In-process, what the export serves as `parity_output`: the softmax probabilities."""
    import keras  # pylint: disable=g-import-not-at-top
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))

  def outputs(self, targets: Targets):
    """The export graph's logits -> served outputs: float32 probabilities, int64 class_id, string class_name."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    names = tf.constant(list(targets.names))
    threshold = targets.info.get("threshold")  # --threshold on two classes: p(positive) >= it predicts positive

    def outputs(logits):
      probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
      if threshold is None:
        class_id = tf.argmax(probabilities, axis=-1)
      else:
        positive = int(targets.info["positive"])
        class_id = tf.where(probabilities[:, positive] >= tf.constant(threshold, tf.float32),
                            tf.constant(positive, tf.int64), tf.constant(1 - positive, tf.int64))
      return {"probabilities": probabilities, "class_id": class_id, "class_name": tf.gather(names, class_id)}

    return outputs

  def output_lines(self) -> List[str]:
    return ["- Outputs: `probabilities` (float32 [N, C], in `labels.txt` order), `class_id` (int64 [N]) and "
            "`class_name` (string [N])."]

  def describe(self, targets: Targets, modality: str) -> List[str]:
    """The model card's opening line and its line on the labels."""
    return [f"A {targets.width}-class {modality} classifier fine-tuned with tfft.",
            f"- Classes ({targets.width}, in output order): " + ", ".join(f"`{c}`" for c in targets.names)]

  def report(self, data, served: np.ndarray, *, config, rescore=None) -> Dict:
    """The test metrics beside the baseline (tfft.report.run_report.classification_report)."""
    return run_report.classification_report(data, served, config=config, rescore=rescore)

  def write_report(self, report_dir, metrics: Dict, *, values, served, inputs, ids):
    metrics_lib.write_report(report_dir, metrics, y_true=values, probabilities=served, inputs=inputs, ids=ids)

  def score(self, values, served, targets: Targets) -> Dict:
    """tfft.evaluate's metrics of the export's outputs, with bootstrap intervals."""
    predicted = _decisions(served, targets.info)
    metrics = metrics_lib.classification_metrics(values, served, targets.names, predicted=predicted)
    metrics["ci"] = run_report.intervals(np.asarray(values), served.argmax(axis=-1) if predicted is None
                                         else predicted, targets.width)
    if predicted is not None:
      metrics["decision"] = {k: targets.info[k] for k in ("threshold", "positive", "threshold_rule")}
    return metrics

  def table(self, metrics: Dict) -> List[str]:
    """What tfft.evaluate prints, and train's log, below the run line."""
    lines = [metrics_lib.format_table(metrics), *summary.interval_lines(metrics)]
    if "decision" in metrics:
      d = metrics["decision"]
      lines.append(f"decision: `{metrics['class_names'][d['positive']]}` when its probability >= "
                   f"{d['threshold']:.4g} (the export's --threshold={d['threshold_rule']})")
    return lines

  def summary_lines(self, metrics: Dict) -> List[str]:
    """Train's summary lines on the test split: the model's scores, intervals, baseline and verdicts."""
    m = metrics
    return [f"test:     accuracy={m['accuracy']:.4f}  macro_f1={m['macro_f1']:.4f}  weighted_f1={m['weighted_f1']:.4f}",
            *summary.interval_lines(m, indent=10), *summary.threshold_lines(m), *summary.baseline_lines(m)]

  def card_lines(self, metrics: Dict) -> List[str]:
    """The model card's lines under its metric table: intervals, the baseline and the paired verdicts."""
    lines = []
    for line in summary.interval_lines(metrics):
      lines += ["", line]
    if "baseline" in metrics:
      lines += ["", f"Baseline: {metrics['baseline']['method']}, fitted on the same train split."]
      if "baseline_comparison" in metrics:
        lines += ["", "Paired on the same test examples (verdict `better` or `worse` only when the whole interval "
                  "of the difference is on one side of 0):", ""]
        lines += [f"- {format_verdict(metrics['baseline_comparison'][name])}" for name in METRICS]
    if "threshold" in metrics:
      t = metrics["threshold"]
      lines += ["", f"Decision threshold: {threshold_lib.describe({**t, **t['validation']}, metrics['class_names'])}. "
                f"The served `class_id` and `class_name` use it (`probabilities` are unchanged); on the test split "
                f"it gives accuracy {t['test']['accuracy']:.4f}, macro F1 {t['test']['macro_f1']:.4f}, and "
                f"precision {t['test']['precision']:.4f}, recall {t['test']['recall']:.4f} of "
                f"`{t['positive_class']}` (the table above is at argmax)."]
    if "calibration" in metrics:
      c = metrics["calibration"]
      lines += ["", f"Calibration: the export divides the logits by a temperature of {c['temperature']:.4g}, "
                f"fitted on the validation split (lowest NLL); on the test split the expected calibration error "
                f"goes from {c['ece_before']:.4f} to {c['ece_after']:.4f} ({c['bins']} bins) and the NLL from "
                f"{c['nll_before']:.4f} to {c['nll_after']:.4f}; the predicted class is unchanged."]
    return lines

  def scalars(self, metrics: Dict) -> Dict[str, float]:
    return metrics_lib.scalar_metrics(metrics)

  def predictions(self, outputs: Dict[str, np.ndarray], names: Sequence[str], *, top_k: int) -> List[Dict]:
    """Per input, tfft.predict's view of the served outputs: the top classes, best first."""
    probabilities = outputs["probabilities"]
    order = np.argsort(-probabilities, axis=1, kind="stable")
    if "class_id" in outputs:  # the export's decision (a --threshold) comes first, then the others by probability
      decided = np.asarray(outputs["class_id"])[:, None]
      order = np.concatenate([decided, order[order != decided].reshape(len(order), -1)], axis=1)
    order = order[:, :top_k]
    return [{"predictions": [{"class_name": names[j], "class_id": int(j), "probability": float(probabilities[i, j])}
                             for j in order[i]]} for i in range(len(probabilities))]

  def format_rows(self, rows: Sequence[Dict], *, width: int = 48) -> str:
    """tfft.predict's table: one block per input, its top classes with probabilities."""
    name_width = max([10] + [len(p["class_name"]) for row in rows for p in row["predictions"]])
    lines = [f"{'input':<{width}}  {'class':<{name_width}}  probability"]
    for row in rows:
      text = shorten(row["input"], width)
      for rank, p in enumerate(row["predictions"]):
        lines.append(f"{text if rank == 0 else '':<{width}}  {p['class_name']:<{name_width}}  {p['probability']:.4f}")
    return "\n".join(lines)


def _decisions(probabilities: np.ndarray, info: Dict) -> Optional[np.ndarray]:
  """The predicted classes at a --threshold in `info` (tfft.json's), or None for argmax."""
  if info.get("threshold") is None:
    return None
  return threshold_lib.decide(probabilities, float(info["threshold"]), int(info["positive"]))
