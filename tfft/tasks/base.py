"""The Task protocol: what differs between kinds of run, behind one stateless contract the train job calls.

A task is built complete from the config (`Task(config)`: the backbone is resolved and, for text, the tokenizer
loaded) and never changes afterwards: it does not rewrite its config and keeps no half-built state. The job calls,
in this order:

1. `load_examples()`: the examples `--dataset` names (string labels), with `--classes` applied.
2. `build_model(num_classes, strategy)` -> `Built`: the classifier, built under `strategy.scope()`.
3. `prepare(examples, labels, split, class_names)` -> `Prepared`: everything resolved from the data, frozen:
   the batched datasets, what training batches (examples or windows), the padding chosen, steps per epoch.
4. `cache_top_k()`: which phases may train on cached frozen-layer outputs.
5. After training: `predict_logits(model, prepared, indices)`, `run_data(prepared)` for the report, `contract()`
   for the model card, `save_artifacts(built, run_dir)`, and `export(model, prepared, ...)`.

New kinds of task (pairs, regression, multi-label, tagging, decoders) implement the same methods.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Union

import numpy as np

from tfft.config import Config


@dataclasses.dataclass(frozen=True)
class Built:
  """A model as a task builds it.

  Attributes:
    model: the classifier (a functional keras.Model from raw features to float32 logits).
    backbone: the backbone inside it, whose layers the freezing policies set.
    blocks: the backbone's blocks in order, which top_k:N counts (None if it exposes none).
  """
  model: Any
  backbone: Any
  blocks: Optional[Sequence[Any]]


@dataclasses.dataclass(frozen=True)
class Prepared:
  """What a task resolved from the data of one run.

  Attributes:
    examples: the loaded examples (tfft.data.text.Examples or tfft.data.images.ImageExamples).
    class_names: class names in output order (labels.txt).
    labels: class index of every example.
    split: split name -> indices of its examples.
    unit_labels: class index of every unit that training and validation batch: the examples themselves, or
      with --train_windows their windows.
    unit_split: split name -> indices of its units.
    padding: the padding the batches use, with --padding=auto resolved ("fixed" for images).
    steps_per_epoch: training batches per epoch.
    make: make(split_name, shuffle=False, seed=0, epochs=None, padding=None) -> a batched tf.data.Dataset of
      (features, one-hot labels) over the split's units; `epochs=(first, stop)` chains those epochs, each shuffled
      with seed + epoch, so a resumed phase sees the same order as an uninterrupted one.
  """
  examples: Any
  class_names: Sequence[str]
  labels: np.ndarray
  split: Mapping[str, np.ndarray]
  unit_labels: np.ndarray
  unit_split: Mapping[str, np.ndarray]
  padding: str
  steps_per_epoch: int
  make: Callable

  @property
  def split_sizes(self) -> Dict[str, int]:
    return {name: int(len(indices)) for name, indices in self.split.items()}


class Task(Protocol):
  """The methods every task has; see the module docstring for the order the job calls them in."""
  kind: str  # "text" or "image": what the export takes (strings, or image bytes)
  config: Config
  spec: Any  # the resolved --backbone; the model card reads its `source` and `local` where it has them

  def load_examples(self): ...

  def build_model(self, num_classes: int, strategy, *, precision: Optional[str] = None,
                  weights: Optional[str] = None) -> Built: ...

  def prepare(self, examples, labels: np.ndarray, split: Mapping[str, np.ndarray],
              class_names: Sequence[str]) -> Prepared: ...

  def cache_top_k(self) -> Union[int, None, bool]: ...

  def predict_logits(self, model, prepared: Prepared, indices: np.ndarray) -> np.ndarray: ...

  def run_data(self, prepared: Prepared): ...

  def contract(self) -> List[str]: ...

  def save_artifacts(self, built: Built, run_dir) -> None: ...

  def export(self, model, prepared: Prepared, *, export_base, finalize=None, metadata=None): ...
