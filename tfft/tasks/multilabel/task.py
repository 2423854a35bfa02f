"""--task=multilabel: the pooled text and image tasks reading a label set per example (tfft.tasks.multilabel.target)."""

from tfft.config import Config, modality
from tfft.data import images as image_data
from tfft.tasks.multilabel import data as multilabel
from tfft.tasks.multilabel.spec import SOURCES
from tfft.tasks.multilabel.target import MultiLabelTarget
from tfft.tasks.pooled.image import ImageClassifier
from tfft.tasks.pooled.text import TextClassifier

TARGET = MultiLabelTarget()


class TextMultiLabel(TextClassifier):
  """The text task (backbone, windows, export on raw strings) reading label sets."""

  def load_examples(self):
    """Raises: UserError for a bad source, column or label set (tfft.tasks.multilabel.data.load_text_examples)."""
    return multilabel.load_text_examples(self.config.data)


class ImageMultiLabel(ImageClassifier):
  """The image task (backbone, decoding, export on image bytes) reading label sets from --label_column."""

  def load_examples(self):
    """Raises: UserError for a bad source, or an example whose label column holds no label."""
    return multilabel.join_image_labels(super().load_examples(), separator=self.config.data.label_separator,
                                        flag=f"--dataset={self.config.data.dataset}")


def build(config: Config):
  """The run's Task: texts or images, by the dataset's modality."""
  return (ImageMultiLabel if modality(config.data, SOURCES) == "image" else TextMultiLabel)(config, TARGET)


def load_served_examples(data, modality_: str):
  """tfft.evaluate's (inputs, labels, ids), each label the example's set joined as the split manifest holds it."""
  if modality_ == "image":
    examples = multilabel.join_image_labels(image_data.load_examples(data), separator=data.label_separator,
                                            flag=f"--dataset={data.dataset}")
    return image_data.served_inputs(examples), examples.labels, examples.ids
  examples = multilabel.load_text_examples(data)
  return examples.texts, examples.labels, examples.ids
