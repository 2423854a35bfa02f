"""The report's figures with matplotlib's Agg canvas: the confusion matrix and the training curves."""

import csv
import pathlib
from typing import Dict, List, Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from tfft import files

# Figure objects on an Agg canvas, not pyplot: no global backend switch and no GUI in a training job.


def _save(fig: Figure, path: pathlib.Path):
  FigureCanvasAgg(fig)
  with files.atomic_path(path) as tmp:  # the temporary name keeps the .png suffix savefig reads
    fig.savefig(tmp, dpi=100, bbox_inches="tight")


def plot_confusion_matrix(path: pathlib.Path, matrix: np.ndarray, class_names: Sequence[str]):
  """Draws the confusion matrix normalised per true class, each cell labelled with its share and count."""
  matrix = np.asarray(matrix)
  totals = matrix.sum(axis=1, keepdims=True)
  share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
  n = len(class_names)
  size = max(4.0, 0.7 * n + 2.5)
  fig = Figure(figsize=(size + 1.2, size))
  ax = fig.add_subplot()
  image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
  ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right")
  ax.set_yticks(range(n), labels=list(class_names))
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(f"Confusion matrix ({int(matrix.sum())} examples), normalised per true class")
  if n <= 30:  # beyond that the numbers no longer fit in the cells
    for i in range(n):
      for j in range(n):
        ax.text(j, i, f"{share[i, j]:.2f}\n({matrix[i, j]})", ha="center", va="center", fontsize=8,
                color="white" if share[i, j] > 0.5 else "black")
  _save(fig, path)


def read_history(path: pathlib.Path) -> Dict[str, List[float]]:
  """Reads a CSVLogger file into columns; a resumed phase's repeated epochs keep their last row."""
  rows = {}
  with path.open(newline="") as f:
    for row in csv.DictReader(f):
      rows[int(row["epoch"])] = row
  columns: Dict[str, List[float]] = {}
  for epoch in sorted(rows):
    for key, value in rows[epoch].items():
      if key != "epoch":
        columns.setdefault(key, []).append(float(value) if value not in ("", None) else float("nan"))
  return columns


def plot_training_curves(path: pathlib.Path, histories: Sequence[Tuple[str, Dict[str, List[float]]]], *,
                         metric: str = "accuracy"):
  """Draws loss, `metric` and the learning rate per epoch for train and val, across the phases in order.

  Args:
    path: the PNG to write.
    histories: (phase name, columns as read_history returns them) per phase, in the order they ran.
    metric: the compiled metric to draw beside the loss.
  """
  fig = Figure(figsize=(8, 9))
  axes = fig.subplots(3, 1, sharex=True)
  start = 0
  for index, (phase, columns) in enumerate(histories):
    epochs = len(columns.get("loss", []))
    x = np.arange(start + 1, start + epochs + 1)
    for ax, key in ((axes[0], "loss"), (axes[1], metric)):
      for prefix, style in (("", "-o"), ("val_", "--s")):
        if key in columns or prefix + key in columns:
          values = columns.get(prefix + key)
          if values:
            ax.plot(x, values, style, color=f"C{index}", markersize=3,
                    label=f"{phase} {'val' if prefix else 'train'}")
    if "learning_rate" in columns:
      axes[2].plot(x, columns["learning_rate"], "-o", color=f"C{index}", markersize=3, label=phase)
    if index:
      for ax in axes:
        ax.axvline(start + 0.5, color="gray", linestyle=":")
      axes[0].annotate(f"{phase} starts", (start + 0.5, 1.0), xycoords=("data", "axes fraction"),
                       ha="left", va="top", fontsize=8, color="gray")
    start += epochs
  axes[0].set_ylabel("loss")
  axes[1].set_ylabel(metric)
  axes[2].set_ylabel("learning rate")
  axes[2].set_xlabel("epoch (across phases)")
  axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
  axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
  for ax in axes:
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  axes[0].set_title("Training curves: train and val per epoch, phase boundary dotted")
  _save(fig, path)


def plot_learning_curve(path: pathlib.Path, per_class: Sequence[float],
                        arms: Dict[str, Sequence[Tuple[float, float, float]]]):
  """Draws test accuracy against training examples per class (log axis): each arm's mean over seeds, with its
  min-max band.

  Args:
    path: the .png to write.
    per_class: the x of each point, training examples per class.
    arms: arm name -> per point (mean, min, max).
  """
  fig = Figure(figsize=(6.4, 4.2))
  ax = fig.add_subplot()
  order = np.argsort(per_class)
  x = np.asarray(per_class, dtype=float)[order]
  for name, values in arms.items():
    v = np.asarray(values, dtype=float)[order]
    line, = ax.plot(x, v[:, 0], marker="o", label=name)
    ax.fill_between(x, v[:, 1], v[:, 2], color=line.get_color(), alpha=0.2, linewidth=0)
  ax.set_xscale("log")
  # One labelled tick per measured size, in plain numbers; no minor labels (they overlap on a short log axis).
  ax.set_xticks(x, [f"{v:g}" for v in x])
  ax.xaxis.set_minor_formatter(NullFormatter())
  ax.set_xlabel("training examples per class")
  ax.set_ylabel("test accuracy")
  ax.set_title("Learning curve: mean over seeds, band from min to max")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  _save(fig, path)


def plot_predicted_vs_true(path: pathlib.Path, y_true: np.ndarray, y_pred: np.ndarray, *, title: str = ""):
  """Draws each test example's prediction against its true value, with the diagonal where they would be equal."""
  fig = Figure(figsize=(5.5, 5.5))
  ax = fig.add_subplot()
  ax.scatter(y_true, y_pred, s=8, alpha=0.5)
  both = np.concatenate([np.asarray(y_true, float), np.asarray(y_pred, float)])
  low, high = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
  ax.plot([low, high], [low, high], ":", color="gray", label="predicted = true")
  ax.set_xlabel("true")
  ax.set_ylabel("predicted")
  ax.set_title(f"Test split: predicted vs true\n{title}", fontsize=8)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  _save(fig, path)
