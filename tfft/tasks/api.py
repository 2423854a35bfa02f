"""The contracts between the core and the kinds of task: TaskSpec (what a kind declares, TensorFlow-free), Task
(its inputs: data, model, batches, export) and Target (its outputs: encoding, loss, metrics, report, served outputs).

A run is one `--task` (a kind, tfft.tasks.registry) on one dataset modality (what it reads). Each kind is one package,
tfft/tasks/KIND/: `spec.py` declares it (name, modalities, built-in datasets, monitors, gates, losses, the options it
reads and its defaults, `check(config)`), `task.py` builds its Task and holds its Target (`TARGET`).

- The **Task** owns the inputs: loading the examples, the backbone and model, tokenizing or decoding, batching,
  scoring in-process, the export's signature and its preprocessing contract.
- Its **Target** (`task.target`) owns the outputs: how string labels are encoded (`encode`, then `fit` on the
  train split, e.g. regression's standardisation) and split, the rows the model trains on, the loss and compiled
  metrics, the monitor, the served outputs (`outputs` in the export graph, `served` in-process, `parity_output` the
  one the parity check compares), the test report and baseline, the gate metric names, the model card's lines, the
  train summary, and what tfft.evaluate and tfft.predict print. Targets import no TensorFlow at module level, so
  the export-side commands pick theirs from the export's tfft.json ("target").

What a run learns from its data (class names, a target's mean and std) travels as a frozen `Targets`: labels.txt
holds `Targets.names`, the export bakes `Targets.info` into its graph, and nothing is kept as state on a Task or
Target.

A task is built complete from the config and never changes afterwards. The job calls, in this order:

1. `load_examples()`: the examples `--dataset` names (string labels), with `--classes` applied.
2. `encode(examples, names=None)` -> Targets; `target.split(...)` (or the stratified split on `Targets.strata`,
   keeping `examples.groups` together when the examples have them); then `target.fit(targets, split["train"])`.
3. `build_model(targets.width, strategy)` -> `Built`: the model, built under `strategy.scope()`; its output layer
   gives float32 logits of width `targets.width` (the target turns them into served outputs).
4. `prepare(examples, targets, split)` -> `Prepared`: everything resolved from the data, frozen.
5. `cache_top_k()`: which phases may train on cached frozen-layer outputs.
6. After training: if `target.tunes_on_validation`, `target.tune(targets, val_logits, val_values)` -> Targets;
   then `predict_logits(model, prepared, indices)`, `run_data(prepared)` for the report, `contract()` for the
   model card, `save_artifacts(built, run_dir)`, and `export(model, prepared, ...)`.

Adding a kind: docs/architecture.md ("Adding a kind of task").
"""

import dataclasses
import importlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from tfft.config import Config


@dataclasses.dataclass(frozen=True)
class Targets:
  """A run's labels as its target encodes them.

  Attributes:
    names: what labels.txt holds, in output order: the class names, or regression's one output name.
    values: per example, what the metrics compare with the prediction: a class index (int64), or a number in the
      data's units (float64).
    strata: per example, the key the split stratifies on: the class, or regression's quantile bin.
    info: JSON-ready facts the export and the report need (regression: the training split's mean and std); {}
      until `fit`.
  """
  names: Tuple[str, ...]
  values: np.ndarray
  strata: Tuple[str, ...]
  info: Dict = dataclasses.field(default_factory=dict)

  @property
  def width(self) -> int:
    """Units of the model's output layer."""
    return len(self.names)


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
    targets: the run's encoded, fitted labels (tfft.tasks.api.Targets).
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
  target: "Target"  # what the model predicts

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


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a kind of task declares, TensorFlow-free: validation, the flags and the registry read only this.

  Attributes:
    name: the --task value.
    modalities: the dataset modalities it reads ("text", "image").
    datasets: the built-in datasets and schemes made for it (another kind given one of them is an error).
    sources: the built-in datasets ("NAME") and --dataset schemes ("SCHEME:") that the kind's own package reads,
      each with its modality ("text" or "image"); tfft.data reads the rest.
    monitors: the validation metrics it reports, which --monitor may name.
    gates: the test metrics --min_metric may gate on (higher is better).
    losses: the --loss values it trains with, "auto" first and the one auto picks second.
    options: the kind-specific options it reads (tfft.config options declared with kind_only=True); such an option
      set on a kind that does not read it is an error.
    defaults: flag defaults of this kind where they differ from the options' own (applied when the flag is not
      given on the command line).
    check: check(config) raises UserError for a combination this kind cannot run.
    module: the kind's module holding `build(config)` (its Task) and `TARGET`; it imports TensorFlow, so it is
      loaded only when a run needs it (TaskSpec.load).
  """
  name: str
  modalities: Tuple[str, ...]
  datasets: Tuple[str, ...]
  sources: Mapping[str, str]
  monitors: Tuple[str, ...]
  gates: Tuple[str, ...]
  losses: Tuple[str, ...]
  options: Tuple[str, ...]
  defaults: Mapping[str, Any]
  check: Callable[[Config], None]
  module: str

  def load(self):
    """The kind's Task and Target module. Deferred by name: it imports TensorFlow and keras, which validation, the
    flags and run-dir reading must not."""
    return importlib.import_module(self.module)


class Target(Protocol):
  """What a model predicts; every kind's target has every member (tfft.tasks.target_base holds the shared ones)."""
  name: str  # the --task it serves, written to tfft.json's "target" when `writes_target_key`
  writes_target_key: bool  # False: exports of this target leave tfft.json's "target" out (readers default to it)
  parity_output: str  # the served output the parity check compares
  curve_metric: str  # the compiled metric the training curves draw beside the loss
  monitors: Tuple[str, ...]
  stratified: str  # how the split is stratified, for the model card
  own_split: bool  # True: split() splits the examples; False: the stratified split on Targets.strata
  tunes_on_validation: bool  # True: tune() runs on the validation split before the test is scored
  calibrates: bool  # True: --calibrate=temperature fits a temperature on the validation logits

  def encode(self, labels: Sequence[str], *, where: str, names: Optional[Sequence[str]] = None,
             ids: Optional[Sequence[str]] = None) -> Targets: ...

  def split(self, targets: Targets, data, *, seed: int, groups=None): ...

  def fit(self, targets: Targets, train: np.ndarray) -> Targets: ...

  def tune(self, targets: Targets, val_logits: np.ndarray, val_values: np.ndarray) -> Targets: ...

  def rows(self, targets: Targets, values: np.ndarray) -> np.ndarray: ...

  def check_gates(self, gates, targets: Targets) -> None: ...

  def monitor(self, value: str) -> str: ...

  def loss(self, train): ...

  def keras_metrics(self) -> List[Any]: ...

  def weighted_metrics(self) -> List[Any]: ...

  def served(self, logits: np.ndarray, targets: Targets) -> np.ndarray: ...

  def output_lines(self) -> List[str]: ...

  def describe(self, targets: Targets, modality: str) -> List[str]: ...

  def log_line(self, targets: Targets) -> str: ...

  def report(self, data, served: np.ndarray, *, config, rescore=None) -> Dict: ...

  def write_report(self, report_dir, metrics: Dict, *, values, served, inputs, ids) -> None: ...

  def check_parity(self, exported, data, in_process: np.ndarray, *, batch_size: int, atol: float) -> Dict: ...

  def served_from_export(self, exported, inputs: Sequence, *, batch_size: int) -> np.ndarray: ...

  def score(self, values, served, targets: Targets) -> Dict: ...

  def score_export(self, inputs: Sequence, values, served, targets: Targets) -> Dict: ...

  def table(self, metrics: Dict) -> List[str]: ...

  def summary_lines(self, metrics: Dict) -> List[str]: ...

  def card_lines(self, metrics: Dict) -> List[str]: ...

  def scalars(self, metrics: Dict) -> Dict[str, float]: ...

  def predictions(self, outputs: Dict[str, np.ndarray], names: Sequence[str], *, top_k: int) -> List[Dict]: ...

  def format_rows(self, rows: Sequence[Dict], *, width: int = 48) -> str: ...
