"""--task=multilabel: a set of labels per text or image."""

from tfft.config import Config
from tfft.tasks.api import TaskSpec

# The built-in dataset this package reads (tfft.tasks.multilabel.data).
SOURCES = {"wnut16_types": "text"}

# Scalars the multi-label report holds that --min_metric can gate on (higher is better, in [0, 1]).
GATES = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "mean_average_precision")


def check(config: Config) -> None:  # pylint: disable=unused-argument
  """Every rule of a multi-label run is generic (tfft.config_checks) or the registry's."""


SPEC = TaskSpec(
    name="multilabel", modalities=("text", "image"), datasets=("wnut16_types",), sources=SOURCES,
    monitors=("val_loss", "val_binary_accuracy"), gates=GATES, losses=("auto",),
    options=("label_separator", "label_columns"), defaults={}, check=check, module="tfft.tasks.multilabel.task")
