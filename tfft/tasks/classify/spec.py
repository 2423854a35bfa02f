"""--task=classify: one class per text or image."""

from tfft.config import Config
from tfft.tasks.api import TaskSpec
from tfft.tasks.pooled.gates import (CLASSIFICATION_GATES, CLASSIFICATION_LOSSES, CLASSIFICATION_MONITORS,
                                     CLASSIFICATION_OPTIONS, check_decision)


def check(config: Config) -> None:
  """--threshold and --positive_class; every other rule of a classifier is generic (tfft.config_checks) or the
  registry's."""
  check_decision(config)


SPEC = TaskSpec(
    name="classify", modalities=("text", "image"), datasets=("bbc_news", "rotten_tomatoes", "digits", "fashion_mnist"),
    sources={}, monitors=CLASSIFICATION_MONITORS, gates=CLASSIFICATION_GATES, losses=CLASSIFICATION_LOSSES,
    options=CLASSIFICATION_OPTIONS, defaults={}, check=check, module="tfft.tasks.classify.task")
