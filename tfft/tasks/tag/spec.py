"""--task=tag: a BIO tag per word."""

from tfft.config import Config
from tfft.tasks.api import TaskSpec

# Scalars the tagging report holds that --min_metric can gate on (higher is better, in [0, 1]).
GATES = ("entity_f1", "entity_precision", "entity_recall", "macro_entity_f1", "token_accuracy")


def check(config: Config) -> None:  # pylint: disable=unused-argument
  """Every rule of a tagging run is generic (tfft.config_checks) or the registry's."""


SPEC = TaskSpec(
    name="tag", modalities=("text",), datasets=("wnut16", "conll"),
    sources={}, monitors=("val_accuracy", "val_loss"),
    gates=GATES, losses=("auto",), options=("tag_scheme",), defaults={}, check=check, module="tfft.tasks.tag.task")
