"""Tasks: what differs between kinds of run, behind one contract (tfft.tasks.base); build_task picks one."""

from tfft import config as config_lib
from tfft.config import Config
from tfft.tasks.image_classifier import ImageClassifier
from tfft.tasks.multilabel import ImageMultiLabel, TextMultiLabel
from tfft.tasks.text_classifier import TextClassifier
from tfft.tasks.text_generator import TextGenerator
from tfft.tasks.text_pairs import TextPairClassifier
from tfft.tasks.token_tagger import TokenTagger

# --task -> modality of the dataset (tfft.config.modality) -> the Task class. Each class takes its target
# (tfft.tasks.targets.TARGETS) from --task; tfft.config.TASKS lists the same tasks and modalities for validation.
TASKS = {
    "classify": {"text": TextClassifier, "image": ImageClassifier},
    "regress": {"text": TextClassifier, "image": ImageClassifier},
    "pairs": {"text": TextPairClassifier},
    "multilabel": {"text": TextMultiLabel, "image": ImageMultiLabel},
    "tag": {"text": TokenTagger},
    "generate": {"text": TextGenerator},
}


def build_task(config: Config):
  """The task for the config's --task and dataset, built complete.

  Raises:
    UserError: for a backbone that does not suit the dataset, or a size or weights path that cannot work.
  """
  return TASKS[config.data.task][config_lib.modality(config.data)](config)
