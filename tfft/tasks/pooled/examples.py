"""What tfft.evaluate scores for the pooled kinds of single texts or images: inputs as the export takes them."""

from tfft.config import DataConfig
from tfft.data import images as image_data
from tfft.data import text as text_data


def load_served_examples(data: DataConfig, modality: str, *, numeric_labels: bool = False):
  """The dataset's examples as (inputs, labels, ids): texts, or image file paths (encoded images when in memory)."""
  if modality == "image":
    examples = image_data.load_examples(data, numeric_labels=numeric_labels)
    return image_data.served_inputs(examples), examples.labels, examples.ids
  examples = text_data.load_examples(data, numeric_labels=numeric_labels)
  return examples.texts, examples.labels, examples.ids
