"""What the classification kinds (classify, pairs) share in their specs: gates, monitors, losses, options, checks;
TensorFlow-free."""

from tfft.config import Config
from tfft.errors import UserError
from tfft.report import threshold as threshold_lib
from tfft.report.scalars import CLASSIFICATION_SCALARS

# Every scalar a classification report holds: --min_metric can gate on any of them.
CLASSIFICATION_GATES = CLASSIFICATION_SCALARS
CLASSIFICATION_MONITORS = ("val_accuracy", "val_loss")  # auto: the first
CLASSIFICATION_LOSSES = ("auto", "crossentropy", "focal")
# The options a classifier of single texts or pairs reads that no other kind does.
CLASSIFICATION_OPTIONS = ("examples_per_class", "train_examples_per_class", "classes", "label_smoothing", "loss",
                          "focal_gamma", "class_weight", "calibrate", "threshold", "positive_class")


def check_decision(config: Config) -> None:
  """--threshold parses, and --positive_class comes with it."""
  rep = config.report
  threshold_lib.parse_rule(rep.threshold)
  if rep.positive_class and rep.threshold == threshold_lib.ARGMAX:
    raise UserError(f"--positive_class={rep.positive_class!r}: acts only with --threshold (a probability, f1 or "
                    "precision@R)")
