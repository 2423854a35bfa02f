"""Tasks: what differs between kinds of run, behind one contract (tfft.tasks.base); build_task picks one."""

from tfft import config as config_lib
from tfft.config import Config
from tfft.tasks.image_classifier import ImageClassifier
from tfft.tasks.text_classifier import TextClassifier

# Modality of the dataset (tfft.config.modality) -> the task for it.
TASKS = {"text": TextClassifier, "image": ImageClassifier}


def build_task(config: Config):
  """The task for the config's dataset, built complete.

  Raises:
    UserError: for a backbone that does not suit the dataset, or a size or weights path that cannot work.
  """
  return TASKS[config_lib.modality(config.data)](config)
