"""Calibrated probabilities: one temperature fitted on the validation logits, the expected calibration error before
and after it on the test split, a reliability diagram, and the model with the temperature folded in for the export."""

import pathlib
from typing import Dict

import numpy as np
from scipy import optimize, special

from tfft.report.plots import _save

RELIABILITY_PNG = "reliability_diagram.png"
ECE_BINS = 15


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
  """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
  log_p = special.log_softmax(np.asarray(logits, np.float64) / temperature, axis=-1)
  return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
  """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al., 2017), searched over log T.

  Dividing every logit by one T > 0 keeps each argmax, so accuracy is unchanged. When the validation split has no
  misclassified example, the NLL falls as T goes to 0 and says nothing about calibration, so T stays 1 rather than
  make every served probability 1.0.
  """
  labels, logits = np.asarray(labels), np.asarray(logits)
  if not len(labels) or (logits.argmax(-1) == labels).all():
    return 1.0
  found = optimize.minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=(-3.0, 3.0),
                                   method="bounded", options={"xatol": 1e-6})
  return float(np.exp(found.x))


def bins(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS):
  """Per equal-width confidence bin: (count, mean confidence, accuracy) of the top-1 predictions."""
  confidence, predicted = probabilities.max(axis=-1), probabilities.argmax(axis=-1)
  edges = np.linspace(0.0, 1.0, n_bins + 1)
  which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
  rows = []
  for b in range(n_bins):
    inside = which == b
    rows.append((int(inside.sum()), float(confidence[inside].mean()) if inside.any() else 0.0,
                 float((predicted[inside] == labels[inside]).mean()) if inside.any() else 0.0))
  return rows


def ece(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
  """Expected calibration error: the count-weighted mean |accuracy - confidence| over equal-width bins."""
  total = len(labels)
  return float(sum(n * abs(acc - conf) for n, conf, acc in bins(probabilities, labels, n_bins)) / total) if total else 0.0


def report(test_logits: np.ndarray, test_labels: np.ndarray, temperature: float, run_dir_path: pathlib.Path) -> Dict:
  """ECE and NLL on the test split before and after the temperature, and the reliability diagram of both."""
  test_labels = np.asarray(test_labels)
  before = special.softmax(np.asarray(test_logits, np.float64), axis=-1)
  after = special.softmax(np.asarray(test_logits, np.float64) / temperature, axis=-1)
  out = {"ece_before": ece(before, test_labels), "ece_after": ece(after, test_labels),
         "nll_before": nll(test_logits, test_labels), "nll_after": nll(test_logits, test_labels, temperature),
         "bins": ECE_BINS, "reliability_diagram": RELIABILITY_PNG}
  plot_reliability(run_dir_path / RELIABILITY_PNG, {"raw softmax": before, f"temperature {temperature:.3g}": after},
                   test_labels)
  return out


def plot_reliability(path: pathlib.Path, probabilities: Dict[str, np.ndarray], labels: np.ndarray):
  """Accuracy against confidence per bin, one line per set of probabilities, beside the diagonal."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(5.5, 5))
  ax = fig.add_subplot()
  ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
  for name, p in probabilities.items():
    rows = [(conf, acc) for n, conf, acc in bins(p, labels) if n]
    ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=f"{name} (ECE {ece(p, labels):.3f})")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_xlabel("confidence (top-1 probability)")
  ax.set_ylabel("accuracy")
  ax.set_title(f"Reliability on the test split ({len(labels)} examples, {ECE_BINS} bins)")
  ax.legend(loc="upper left")
  _save(fig, path)


def with_temperature(model, temperature: float):
  """`model` with its logits divided by `temperature`: a functional model over the same layers (no new weights),
  which the export runs as plain TensorFlow ops."""
  import keras  # pylint: disable=g-import-not-at-top
  scaled = keras.layers.Rescaling(1.0 / temperature, dtype="float32", name="temperature")(model.outputs[0])
  return keras.Model(model.inputs if not isinstance(model.input, dict) else model.input, scaled,
                     name=f"{model.name}_calibrated")
