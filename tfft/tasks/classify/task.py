"""--task=classify: a pooled head over a text or image backbone, softmax over the classes."""

from tfft.config import Config, modality
from tfft.tasks.pooled import examples as pooled_examples
from tfft.tasks.pooled.class_target import ClassTarget
from tfft.tasks.pooled.image import ImageClassifier
from tfft.tasks.pooled.text import TextClassifier

# Classification exports leave tfft.json's "target" out: every reader defaults to it.
TARGET = ClassTarget("classify", writes_target_key=False)


def build(config: Config):
  """The run's Task: texts or images, by the dataset's modality."""
  return (ImageClassifier if modality(config.data) == "image" else TextClassifier)(config, TARGET)


def load_served_examples(data, modality: str):
  """tfft.evaluate's (inputs, labels, ids) of a dataset, as the export takes them."""
  return pooled_examples.load_served_examples(data, modality)
