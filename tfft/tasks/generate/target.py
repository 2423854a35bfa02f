"""Instruction fine-tuning's target: a response per prompt, written by a causal LM. Next-token cross-entropy on the
response tokens only; ROUGE-1/2/L of greedy generations on the test split beside the lead baseline and the base
model before fine-tuning, and the perplexity of the test responses; the export serves `text` and `token_count`.

In process, what the model "serves" for a set of prompts is a structured array (`text`, `tokens`, `nll`,
`response_tokens`): the greedy generation, its token count, and the summed negative log-likelihood of the
reference response with the number of its tokens (end token included), from which the perplexity follows.
"""

import csv
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfft import files
from tfft.errors import RunFailed
from tfft.report import metrics as metrics_lib
from tfft.report import summary
from tfft.report.summary import shorten
from tfft.serving import loaded
from tfft.tasks.api import Targets
from tfft.tasks.generate import metrics as rouge
from tfft.tasks.generate.data import document, TEXT
from tfft.tasks.generate.decode import base_model_outputs
from tfft.tasks.generate.spec import GATES, SPEC
from tfft.tasks.target_base import TargetBase

METRICS = GATES + ("perplexity",)
GENERATIONS_CSV = "generations.csv"
LEAD_METHOD = "lead: the first sentence of the document (the article body for bbc_headlines, else the prompt)"
BASE_METHOD = "the backbone before fine-tuning, same chat template and greedy decoding"
# The parity check compares this many test prompts (generation is the slow part of publishing).
PARITY_PROMPTS = 8


def texts_of(served) -> List[str]:
  """The generated texts of in-process outputs (a structured array) or of an export's `text` output (bytes)."""
  values = served[TEXT] if getattr(served, "dtype", None) is not None and served.dtype.names else served
  return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def perplexity(served) -> Optional[float]:
  """exp(mean NLL per response token) over the rows, or None when the outputs carry no likelihoods (an export)."""
  if getattr(served, "dtype", None) is None or not served.dtype.names:
    return None
  count = float(served["response_tokens"].sum())
  return float(math.exp(float(served["nll"].sum()) / count)) if count else None


def rouge_scores(prompts: Sequence[str], references: Sequence[str], generated: Sequence[str], *,
                 with_lead: bool = True) -> Dict:
  """ROUGE-1/2/L F1 of the generations and, with_lead, of the lead baseline on the same examples."""
  metrics = {"num_examples": len(references), **rouge.rouge(generated, references)}
  if with_lead:
    lead = rouge.rouge([rouge.lead(document(p)) for p in prompts], references)
    metrics["baseline"] = {"method": LEAD_METHOD, **lead}
    metrics["baseline_difference"] = {k: metrics[k] - lead[k] for k in GATES}
  return metrics


class GenerateTarget(TargetBase):
  """A response per prompt (see the module docstring)."""
  name = "generate"
  gates = GATES
  gates_note = " (ROUGE F1 on the test split)"
  parity_output = TEXT
  curve_metric = "token_accuracy"  # next-token accuracy on the response tokens
  monitors = SPEC.monitors
  stratified = "not stratified: a seeded random draw"
  tunes_on_validation = False

  def encode(self, labels: Sequence[str], *, where: str, names: Optional[Sequence[str]] = None,  # pylint: disable=unused-argument
             ids: Optional[Sequence[str]] = None):
    """The responses as they are; one stratum, so the split is a seeded random draw."""
    values = np.empty(len(labels), dtype=object)
    values[:] = [str(label) for label in labels]
    return Targets((TEXT,), values, ("",) * len(labels))

  def fit(self, targets, train: np.ndarray):  # pylint: disable=unused-argument
    return targets

  def rows(self, targets, values):  # pylint: disable=unused-argument
    raise NotImplementedError("generation's training rows are its packed sequences (tfft.tasks.generate.data.pack)")



  def loss(self, train):  # pylint: disable=unused-argument
    import keras  # pylint: disable=g-import-not-at-top
    # The mean over the response tokens and their end token (weight 1), whatever the batch's padding.
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")

  def keras_metrics(self):
    return []

  def weighted_metrics(self):
    import keras  # pylint: disable=g-import-not-at-top
    return [keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")]

  def served(self, logits, targets):  # pylint: disable=unused-argument
    """predict_logits already returns the generations with the responses' likelihoods."""
    return logits

  def output_lines(self) -> List[str]:
    return ["- Outputs: `text` (string [N], the generated response, up to its end token) and `token_count` "
            "(int32 [N], the tokens generated, end token excluded)."]

  def describe(self, targets, modality: str) -> List[str]:  # pylint: disable=unused-argument
    return ["An instruction-tuned causal language model (prompt in, generated response out) fine-tuned with tfft.",
            "- Target: the response to each prompt; the loss falls on the response tokens and the end token only"]

  def report(self, data, served, *, config, rescore=None) -> Dict:
    """ROUGE and perplexity on the test split beside the lead baseline and the base model."""
    test = data.split["test"]
    prompts = [data.inputs[i] for i in test]
    references = [str(v) for v in data.labels[test]]
    with_baselines = config.report.baseline != "none" and rescore is None
    metrics = rouge_scores(prompts, references, texts_of(served), with_lead=with_baselines)
    metrics["perplexity"] = perplexity(served)
    metrics["generated_tokens"] = int(served["tokens"].sum())
    metrics["split_sizes"] = {name: int(len(indices)) for name, indices in data.split.items()}
    if rescore is not None:
      metrics.update({k: v for k, v in rescore.items() if k.startswith("baseline") or k == "base_model"})
      return metrics
    if with_baselines:
      base = base_model_outputs(config, prompts, references)
      base_metrics = rouge_scores(prompts, references, texts_of(base), with_lead=False)
      metrics["base_model"] = {"method": BASE_METHOD, **{k: base_metrics[k] for k in GATES},
                               "perplexity": perplexity(base), "generated_tokens": int(base["tokens"].sum())}
      metrics["base_examples"] = texts_of(base)
    return metrics

  def write_report(self, report_dir, metrics: Dict, *, values, served, inputs, ids):
    """metrics.json and generations.csv (every example: prompt, reference, generation, lead, base model)."""
    base = metrics.pop("base_examples", None)
    files.write_json(report_dir / metrics_lib.METRICS_JSON, metrics)
    with files.atomic_path(report_dir / GENERATIONS_CSV) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["id", "prompt", "reference", "generated", "lead"] + (["base_model"] if base else []))
      for k, (example_id, prompt, reference, text) in enumerate(zip(ids, inputs, values, texts_of(served))):
        writer.writerow([example_id, prompt, reference, text, rouge.lead(document(str(prompt)))]
                        + ([base[k]] if base else []))

  def score_export(self, inputs: Sequence[str], values: Sequence[str], served,
                   targets=None) -> Dict:  # pylint: disable=unused-argument
    return self.score_generations(inputs, values, served)

  def score_generations(self, prompts: Sequence[str], references: Sequence[str], served) -> Dict:
    """tfft.evaluate's metrics of an export's generations: ROUGE beside the lead baseline."""
    return rouge_scores(prompts, [str(r) for r in references], texts_of(served))

  def score(self, values, served, targets=None) -> Dict:  # pylint: disable=unused-argument
    """ROUGE of generations against the references (no lead: that needs the prompts, see score_generations)."""
    return rouge_scores([], [str(v) for v in values], texts_of(served), with_lead=False)

  def _line(self, m: Dict) -> str:
    line = "  ".join(f"{k}={m[k]:.4f}" for k in GATES)
    return line + (f"  perplexity={m['perplexity']:.3f}" if m.get("perplexity") is not None else "")

  def table(self, metrics: Dict) -> List[str]:
    lines = [f"model:    {self._line(metrics)}"]
    if "baseline" in metrics:
      lines.append(f"lead:     {self._line(metrics['baseline'])}")
    if "base_model" in metrics:
      lines.append(f"base:     {self._line(metrics['base_model'])}  (before fine-tuning)")
    return ["\n".join(lines)]

  def summary_lines(self, metrics: Dict) -> List[str]:
    lines = [f"test:     {self._line(metrics)}"]
    if "baseline" in metrics:
      lines.append(f"lead:     {self._line(metrics['baseline'])}  (the document's first sentence)")
      d = metrics["baseline_difference"]
      lines.append("model - lead: " + "  ".join(f"{k}={d[k]:+.4f}" for k in GATES))
    if "base_model" in metrics:
      lines.append(f"base:     {self._line(metrics['base_model'])}  (before fine-tuning)")
    return lines + summary.parity_lines(metrics)

  def card_lines(self, metrics: Dict) -> List[str]:
    lines = []
    if "baseline" in metrics:
      lines += ["", f"Baseline: {metrics['baseline']['method']}. ROUGE is F1 (rouge-score, Porter stemmer); the "
                "perplexity is that of the reference responses (end token included) under the model."]
    if "base_model" in metrics:
      lines += ["", f"Before fine-tuning ({metrics['base_model']['method']}): {self._line(metrics['base_model'])}."]
    return lines

  def scalars(self, metrics: Dict) -> Dict[str, float]:
    return {k: metrics[k] for k in METRICS if metrics.get(k) is not None}

  def check_parity(self, exported, data, in_process, *, batch_size: int, atol: float) -> Dict:  # pylint: disable=unused-argument
    """The export's texts on the first test prompts must equal the in-process greedy generations, exactly.

    Raises:
      RunFailed: naming the first prompt whose texts differ.
    """
    prompts = data.take("test")[:PARITY_PROMPTS]
    served = texts_of(exported.outputs(loaded.as_bytes("text", prompts), batch_size=batch_size)[TEXT])
    expected = texts_of(in_process)[:len(prompts)]
    differ = [i for i, (a, b) in enumerate(zip(served, expected)) if a != b]
    if differ:
      i = differ[0]
      raise RunFailed(
          f"the exported SavedModel writes other texts than the trained model on {len(differ)} of {len(prompts)} "
          f"test prompts through serving_default (first: {served[i][:60]!r} vs {expected[i][:60]!r}); likely cause: "
          "skew between training and the export's graph (chat template, tokenizer, prompt cut, LoRA merge); no "
          "export written")
    return {"examples": len(prompts), "of": int(len(data.split["test"])), "output": TEXT, "max_abs_diff": 0.0,
            "tolerance": 0.0, "same_texts": len(prompts), "sample": "the first"}

  def predictions(self, outputs: Dict[str, np.ndarray], names: Sequence[str], *, top_k: int) -> List[Dict]:  # pylint: disable=unused-argument
    return [{TEXT: text, "token_count": int(count)}
            for text, count in zip(texts_of(outputs[TEXT]), outputs["token_count"])]

  def format_rows(self, rows: Sequence[Dict], *, width: int = 48) -> str:
    lines = [f"{'prompt':<{width}}  {'tokens':>6}  generated"]
    lines += [f"{shorten(row['input'], width):<{width}}  {row['token_count']:>6}  {row[TEXT]}" for row in rows]
    return "\n".join(lines)
