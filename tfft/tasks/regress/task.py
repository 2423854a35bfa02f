"""--task=regress: a pooled head over a text or image backbone, one standardised output."""

from tfft.config import Config, modality
from tfft.tasks.pooled import examples as pooled_examples
from tfft.tasks.pooled.image import ImageClassifier
from tfft.tasks.pooled.text import TextClassifier
from tfft.tasks.regress.target import RegressTarget

TARGET = RegressTarget()


def build(config: Config):
  """The run's Task: texts or images, by the dataset's modality."""
  return (ImageClassifier if modality(config.data) == "image" else TextClassifier)(config, TARGET, numeric_labels=True)


def load_served_examples(data, modality: str):
  """tfft.evaluate's (inputs, labels, ids) of a dataset, as the export takes them."""
  return pooled_examples.load_served_examples(data, modality, numeric_labels=True)
