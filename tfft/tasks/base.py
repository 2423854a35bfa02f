"""The Task protocol: what differs between kinds of run, behind one stateless contract the train job calls.

A run is one `--task` (what the model predicts) on one dataset modality (what it reads). The two halves:

- The **Task** (this protocol; one class per input kind, registered in tfft.tasks.TASKS[--task][modality]) owns
  the inputs: loading the examples, the backbone and model, tokenizing or decoding, batching, scoring in-process,
  the export's signature and its preprocessing contract.
- Its **Target** (`task.target`, tfft.tasks.targets) owns the outputs: how string labels are encoded (`encode`,
  then `fit` on the train split, e.g. regression's standardisation) and stratified (`Targets.strata`), the rows the
  model trains on, the loss and compiled metrics, the monitor, the served outputs (`outputs` in the export graph,
  `served` in-process, `parity_output` the one the parity check compares), the test report and baseline, the gate
  metric names, the model card's lines, the train summary, and what tfft.evaluate and tfft.predict print. Targets
  import no TensorFlow, so the export-side commands pick theirs from the export's tfft.json ("target").

What a run learns from its data (class names, a target's mean and std) travels as a frozen
tfft.tasks.targets.Targets: labels.txt holds `Targets.names` (class names; regression's output name), the export
bakes `Targets.info` into its graph, and nothing is kept as state on a Task or Target.

A task is built complete from the config (`Task(config)`: the backbone is resolved and, for text, the tokenizer
loaded) and never changes afterwards. The job calls, in this order:

1. `load_examples()`: the examples `--dataset` names (string labels), with `--classes` applied.
2. `encode(examples, names=None)` -> Targets (the target's `encode` with the examples' ids for errors); the split
   stratifies on `Targets.strata` and keeps `examples.groups` together when the examples have them; then
   `target.fit(targets, split["train"])`.
3. `build_model(targets.width, strategy)` -> `Built`: the model, built under `strategy.scope()`; its output layer
   gives float32 logits of width `targets.width` (the target turns them into served outputs).
4. `prepare(examples, targets, split)` -> `Prepared`: everything resolved from the data, frozen: the batched
   datasets of (features, target rows), what training batches (examples or windows), the padding, steps per epoch.
5. `cache_top_k()`: which phases may train on cached frozen-layer outputs.
6. After training: if `target.tunes_on_validation`, `target.tune(targets, val_logits, val_values)` -> Targets
   (e.g. multi-label thresholds chosen on val; the export and the test scoring use what it returns); then
   `predict_logits(model, prepared, indices)`, `run_data(prepared)` for the report, `contract()`
   for the model card, `save_artifacts(built, run_dir)`, and `export(model, prepared, ...)` which serves
   `target.outputs(prepared.targets)` of the logits and writes tfft.json's "target".

A new task adds a Target (a new kind of output: multi-label, tags) and/or a Task class (a new kind of input:
pairs of texts, token sequences), registers them in tfft.tasks.TASKS and tfft.tasks.targets.TARGETS, and adds its
name with its modalities to tfft.config.TASKS; options only it reads are declared with `option(..., tasks=(NAME,))`
so that they are an error on any other task.
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
    targets: the run's encoded, fitted labels (tfft.tasks.targets.Targets).
    split: split name -> indices of its examples.
    unit_labels: the target value (Targets.values) of every unit that training and validation batch: the examples
      themselves, or with --train_windows their windows.
    unit_split: split name -> indices of its units.
    padding: the padding the batches use, with --padding=auto resolved ("fixed" for images).
    steps_per_epoch: training batches per epoch.
    make: make(split_name, shuffle=False, seed=0, epochs=None, padding=None) -> a batched tf.data.Dataset of
      (features, target rows) over the split's units; `epochs=(first, stop)` chains those epochs, each shuffled
      with seed + epoch, so a resumed phase sees the same order as an uninterrupted one.
    unit_rows: the target rows (what the loss reads) of every unit, in unit order.
  """
  examples: Any
  targets: Any
  split: Mapping[str, np.ndarray]
  unit_labels: np.ndarray
  unit_split: Mapping[str, np.ndarray]
  padding: str
  steps_per_epoch: int
  make: Callable
  unit_rows: np.ndarray

  @property
  def class_names(self) -> Sequence[str]:
    """labels.txt: the class names in output order (regression: its output name)."""
    return self.targets.names

  @property
  def labels(self) -> np.ndarray:
    """The target value of every example: its class index, or its number."""
    return self.targets.values

  @property
  def split_sizes(self) -> Dict[str, int]:
    return {name: int(len(indices)) for name, indices in self.split.items()}


class Task(Protocol):
  """The methods every task has; see the module docstring for the order the job calls them in."""
  kind: str  # "text" or "image": what the export takes (strings, or image bytes)
  config: Config
  spec: Any  # the resolved --backbone; the model card reads its `source` and `local` where it has them
  target: Any  # tfft.tasks.targets: what the model predicts

  def load_examples(self): ...

  def encode(self, examples, *, names: Optional[Sequence[str]] = None): ...

  def build_model(self, num_classes: int, strategy, *, precision: Optional[str] = None,
                  weights: Optional[str] = None) -> Built: ...

  def prepare(self, examples, targets, split: Mapping[str, np.ndarray]) -> Prepared: ...

  def cache_top_k(self) -> Union[int, None, bool]: ...

  def predict_logits(self, model, prepared: Prepared, indices: np.ndarray) -> np.ndarray: ...

  def run_data(self, prepared: Prepared): ...

  def contract(self) -> List[str]: ...

  def save_artifacts(self, built: Built, run_dir) -> None: ...

  def export(self, model, prepared: Prepared, *, export_base, finalize=None, metadata=None): ...
