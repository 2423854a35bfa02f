"""--task=regress: a number per text or image."""

from tfft.config import Config
from tfft.tasks.api import TaskSpec

GATES = ("r2", "pearson", "spearman")  # higher is better; R2 may be negative
LOSSES = ("auto", "mse", "huber")


def check(config: Config) -> None:  # pylint: disable=unused-argument
  """Every rule of a regression is generic (tfft.config_checks) or the registry's."""


SPEC = TaskSpec(
    name="regress", modalities=("text", "image"),
    datasets=("vader_tweets", "vader_amazon", "vader_nyt", "vader_movies"),
    sources={}, monitors=("val_loss",), gates=GATES,
    losses=LOSSES, options=("loss",), defaults={}, check=check, module="tfft.tasks.regress.task")
