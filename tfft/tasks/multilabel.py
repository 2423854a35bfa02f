"""Multi-label tasks: the text and image tasks with a label set per example (tfft.tasks.multilabel_target)."""

from tfft.tasks.image_classifier import ImageClassifier
from tfft.tasks.text_classifier import TextClassifier


class TextMultiLabel(TextClassifier):
  """The text task (backbone, windows, export on raw strings) reading label sets."""

  def load_examples(self):
    """Raises: UserError for a bad source, column or label set (tfft.data.multilabel.load_text_examples)."""
    from tfft.data import multilabel  # pylint: disable=g-import-not-at-top
    return multilabel.load_text_examples(self.config.data)


class ImageMultiLabel(ImageClassifier):
  """The image task (backbone, decoding, export on image bytes) reading label sets from --label_column."""

  def load_examples(self):
    """Raises: UserError for a bad source, or an example whose label column holds no label."""
    from tfft.data import multilabel  # pylint: disable=g-import-not-at-top
    return multilabel.join_image_labels(super().load_examples(), separator=self.config.data.label_separator,
                                        flag=f"--dataset={self.config.data.dataset}")
