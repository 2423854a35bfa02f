"""Multi-label: a set of labels per example (maybe empty). A sigmoid per label, binary cross-entropy, a decision
threshold per label chosen on the validation split after training, baked into the export."""

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfft import files
from tfft.data import split as split_lib
from tfft.errors import UserError
from tfft.report import baseline as baseline_lib
from tfft.report import metrics as metrics_lib
from tfft.report import run_report, summary
from tfft.report.summary import shorten
from tfft.tasks.api import Targets
from tfft.tasks.multilabel import data as multilabel
from tfft.tasks.multilabel import metrics as multilabel_metrics
from tfft.tasks.multilabel.data import JOIN
from tfft.tasks.multilabel.export import multilabel_outputs
from tfft.tasks.multilabel.spec import GATES, SPEC
from tfft.tasks.target_base import TargetBase

# Labels of one example inside tfft (the manifest's label column, Examples.labels): joined by this, whatever
# --label_separator the file used.
PER_LABEL_CSV = "per_label.csv"
REPORT_TXT = "multilabel_report.txt"


def canonical(labels: Sequence[str]) -> str:
  return JOIN.join(labels)


def sigmoid(logits: np.ndarray) -> np.ndarray:
  return (1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))).astype(np.float32)


class MultiLabelTarget(TargetBase):
  """A label set per example; micro/macro/samples F1, subset accuracy, Hamming loss, mAP; one-vs-rest baseline."""
  name = "multilabel"
  gates = GATES
  parity_output = "probabilities"
  curve_metric = "binary_accuracy"
  monitors = SPEC.monitors
  stratified = "by iterative stratification over the labels"
  tunes_on_validation = True  # the per-label thresholds (tune)

  def encode(self, labels: Sequence[str], *, where: str, names: Optional[Sequence[str]] = None,
             ids: Optional[Sequence[str]] = None):
    """[N, L] 0/1 rows over the label names (natural order, or `names`: labels.txt of a run).

    Raises:
      UserError: naming a label that `names` does not hold.
    """
    sets = [tuple(label for label in str(value).split(JOIN) if label) for value in labels]
    names = tuple(names) if names is not None else multilabel.label_names_of(sets)
    unknown = sorted({label for labels_ in sets for label in labels_} - set(names))
    if unknown:
      raise UserError(f"{where}: labels {', '.join(map(repr, unknown[:5]))} are not among the model's labels "
                      f"({', '.join(names)})")
    if len(names) < 1:
      raise UserError(f"{where}: no example has a label; --task=multilabel needs at least one label")
    return Targets(names, multilabel.indicators_of(sets, names), tuple(canonical(s) for s in sets))

  own_split = True  # iterative stratification over the label sets

  def split(self, targets, data, *, seed: int, groups=None):
    """The train/val/test indices: iterative stratification (tfft.data.split.label_set_split)."""
    return split_lib.label_set_split(targets.values, val_fraction=data.val_fraction,
                                       test_fraction=data.test_fraction, seed=seed, groups=groups)

  def fit(self, targets, train: np.ndarray):  # pylint: disable=unused-argument
    return targets

  def tune(self, targets, val_logits: np.ndarray, val_values: np.ndarray):
    """Chooses each label's threshold on the validation split; the test report and the export use them."""
    thresholds = multilabel_metrics.choose_thresholds(np.asarray(val_values), sigmoid(val_logits))
    return dataclasses.replace(targets, info={**targets.info, "thresholds": [float(t) for t in thresholds]})

  def rows(self, targets, values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32)



  def loss(self, train):  # pylint: disable=unused-argument
    import keras  # pylint: disable=g-import-not-at-top
    return keras.losses.BinaryCrossentropy(from_logits=True)

  def keras_metrics(self):
    import keras  # pylint: disable=g-import-not-at-top
    return [keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=0.0)]  # on logits: p >= 0.5

  def served(self, logits: np.ndarray, targets) -> np.ndarray:  # pylint: disable=unused-argument
    return sigmoid(logits)

  def outputs(self, targets):
    thresholds = targets.info.get("thresholds")
    if thresholds is None:
      raise ValueError("the thresholds are chosen on validation (calibrate) before the export")
    return multilabel_outputs(targets.names, thresholds)

  def output_lines(self) -> List[str]:
    return ["- Outputs: `probabilities` (float32 [N, L], a sigmoid per label in `labels.txt` order), `predicted` "
            "(bool [N, L], probability >= the label's threshold), `labels` (string [N, L]: the predicted label "
            "names, most probable first, padded with \"\") and `num_labels` (int32 [N]). The thresholds were "
            "chosen on the validation split (tfft.json holds them)."]

  def describe(self, targets, modality: str) -> List[str]:
    thresholds = targets.info.get("thresholds") or [None] * targets.width
    return [f"A {targets.width}-label {modality} multi-label model fine-tuned with tfft.",
            f"- Labels ({targets.width}, in output order, with their validation-chosen thresholds): "
            + ", ".join(f"`{n}`" + (f" ({t:.3f})" if t is not None else "") for n, t in zip(targets.names, thresholds))]

  def _metrics(self, values, probabilities, targets) -> Dict:
    thresholds = targets.info.get("thresholds") or [multilabel_metrics.DEFAULT_THRESHOLD] * targets.width
    return multilabel_metrics.multilabel_metrics(values, probabilities, thresholds, targets.names)

  def score(self, values, served, targets) -> Dict:
    """tfft.evaluate's metrics of the export's probabilities (with the thresholds the export holds)."""
    return self._metrics(values, served, targets)

  def report(self, data, served: np.ndarray, *, config, rescore=None) -> Dict:
    """The test metrics beside the one-vs-rest baseline (its thresholds chosen on the same validation split)."""
    test, targets = data.split["test"], data.targets
    metrics = self._metrics(data.labels[test], served, targets)
    metrics["split_sizes"] = {name: int(len(indices)) for name, indices in data.split.items()}
    if rescore is not None:
      metrics.update({k: v for k, v in rescore.items() if k.startswith("baseline")})
      return metrics
    if config.report.baseline != "none":
      inputs = {name: data.take(name) for name in ("train", "val", "test")}
      kind = "text"
      if data.task == "image":
        inputs = {name: baseline_lib.image_features(run_report._pixels(x)) for name, x in inputs.items()}  # pylint: disable=protected-access
        kind = "image"
      method, probabilities, thresholds = multilabel_metrics.baseline(
          inputs["train"], data.labels[data.split["train"]], inputs["val"], data.labels[data.split["val"]],
          inputs["test"], kind=kind)
      base = multilabel_metrics.multilabel_metrics(data.labels[test], probabilities, thresholds, targets.names)
      metrics["baseline"] = {"method": method, **{k: base[k] for k in self.scalars(base)},
                             "per_label": base["per_label"]}
      metrics["baseline_difference"] = {k: metrics[k] - base[k] for k in self.scalars(base)}
    return metrics

  def write_report(self, report_dir, metrics: Dict, *, values, served, inputs, ids):  # pylint: disable=unused-argument
    import csv  # pylint: disable=g-import-not-at-top
    files.write_json(report_dir / metrics_lib.METRICS_JSON, metrics)
    files.write_atomically(report_dir / REPORT_TXT, multilabel_metrics.format_multilabel_table(metrics) + "\n")
    with files.atomic_path(report_dir / PER_LABEL_CSV) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["label", "precision", "recall", "f1", "average_precision", "threshold", "support"])
      for name, row in metrics["per_label"].items():
        writer.writerow([name, f"{row['precision']:.6f}", f"{row['recall']:.6f}", f"{row['f1']:.6f}",
                         "" if row["average_precision"] is None else f"{row['average_precision']:.6f}",
                         f"{row['threshold']:.6f}", row["support"]])

  def table(self, metrics: Dict) -> List[str]:
    return [multilabel_metrics.format_multilabel_table(metrics)]

  def summary_lines(self, metrics: Dict) -> List[str]:
    line = lambda m: "  ".join(f"{k}={m[k]:.4f}" for k in GATES + ("hamming_loss",) if m.get(k) is not None)
    lines = [f"test:     {line(metrics)}"]
    if "baseline" in metrics:
      lines.append(f"baseline: {line(metrics['baseline'])}  ({metrics['baseline']['method']})")
      d = metrics["baseline_difference"]
      lines.append("model - baseline: " + "  ".join(f"{k}={d[k]:+.4f}" for k in GATES if k in d))
    return lines + summary.parity_lines(metrics)

  def card_lines(self, metrics: Dict) -> List[str]:
    lines = ["", "Per label (thresholds chosen on the validation split):", "", "```",
             *self.table(metrics)[0].splitlines(), "```"]
    if "baseline" in metrics:
      lines += ["", f"Baseline: {metrics['baseline']['method']}, fitted on the same train split (lower "
                "hamming_loss is better; higher everything else)."]
    return lines

  def scalars(self, metrics: Dict) -> Dict[str, float]:
    return {k: metrics[k] for k in GATES + ("hamming_loss",) if metrics.get(k) is not None}

  def predictions(self, outputs: Dict[str, np.ndarray], names: Sequence[str], *, top_k: int) -> List[Dict]:  # pylint: disable=unused-argument
    rows = []
    for i, probabilities in enumerate(outputs["probabilities"]):
      labels = [x.decode() if isinstance(x, bytes) else str(x) for x in outputs["labels"][i]]
      rows.append({"labels": [label for label in labels if label],
                   "probabilities": {name: float(p) for name, p in zip(names, probabilities)}})
    return rows

  def format_rows(self, rows: Sequence[Dict], *, width: int = 48) -> str:
    lines = [f"{'input':<{width}}  labels (probability)"]
    for row in rows:
      found = ", ".join(f"{name} ({row['probabilities'][name]:.3f})" for name in row["labels"]) or "(none)"
      lines.append(f"{shorten(row['input'], width):<{width}}  {found}")
    return "\n".join(lines)
