"""Token tagging's target: a BIO tag per word. Softmax per position, cross-entropy on each word's first piece,
entity-level metrics (seqeval) beside a CRF; the export serves a tag and a character span per token."""

import csv
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfft import files
from tfft.data import split as split_lib
from tfft.data.tagging import word_spans
from tfft.data.text import natural_key
from tfft.errors import RunFailed, UserError
from tfft.report import metrics as metrics_lib
from tfft.report import summary
from tfft.report.summary import shorten
from tfft.tasks.api import Targets
from tfft.tasks.tag import metrics as tag_metrics
from tfft.tasks.tag.export import tag_outputs
from tfft.tasks.tag.spec import GATES, SPEC
from tfft.tasks.target_base import TargetBase

REPORT_TXT = "tag_report.txt"
ERRORS_CSV = "tagging_errors.csv"
ERRORS_LIMIT = 100
OUTSIDE = "O"


def softmax(logits: np.ndarray) -> np.ndarray:
  x = np.asarray(logits, np.float64)
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def split_rows(flat: np.ndarray, lengths: Sequence[int]) -> List[np.ndarray]:
  return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


def outside_index(names: Sequence[str]) -> int:
  return list(names).index(OUTSIDE) if OUTSIDE in names else 0


class TagTarget(TargetBase):
  """A BIO tag per word (labels: the sentence's tags joined by spaces); see the module docstring."""
  name = "tag"
  gates = GATES
  parity_output = "probabilities"
  curve_metric = "accuracy"  # of the tags at the words' first pieces
  monitors = SPEC.monitors
  stratified = "by iterative stratification over the entity types each sentence holds"
  tunes_on_validation = False

  def encode(self, labels: Sequence[str], *, where: str, names: Optional[Sequence[str]] = None,
             ids: Optional[Sequence[str]] = None):
    """Per sentence, the index of each word's tag (an object array of int32 arrays); tags in natural order with
    O among them (or `names`: labels.txt of a run).

    Raises:
      UserError: naming a tag `names` does not hold.
    """
    sentences = [str(label).split(" ") for label in labels]
    found = {tag for tags in sentences for tag in tags}
    names = tuple(names) if names is not None else tuple(sorted(found | {OUTSIDE}, key=natural_key))
    unknown = sorted(found - set(names))
    if unknown:
      raise UserError(f"{where}: tags {', '.join(map(repr, unknown[:5]))} are not among the model's tags "
                      f"({', '.join(names)})")
    index = {name: i for i, name in enumerate(names)}
    values = np.empty(len(sentences), dtype=object)
    for i, tags in enumerate(sentences):
      values[i] = np.array([index[t] for t in tags], np.int32)
    strata = tuple(" ".join(sorted({t[2:] for t in tags if t != OUTSIDE})) for tags in sentences)
    return Targets(names, values, strata)

  own_split = True  # by sentence, over the entity types each mentions

  def split(self, targets, data, *, seed: int, groups=None):
    """By sentence, iterative stratification over the entity types each sentence mentions."""
    types = sorted({t for s in targets.strata for t in s.split()})
    y = np.array([[t in set(s.split()) for t in types] for s in targets.strata], np.float32).reshape(
        len(targets.strata), len(types))
    return split_lib.label_set_split(y, val_fraction=data.val_fraction, test_fraction=data.test_fraction,
                                       seed=seed, groups=groups)

  def fit(self, targets, train: np.ndarray):  # pylint: disable=unused-argument
    return targets

  def rows(self, targets, values):  # pylint: disable=unused-argument
    raise NotImplementedError("tagging's training rows are its windows (tfft.data.tag_pieces.training_windows)")



  def loss(self, train):  # pylint: disable=unused-argument
    import keras  # pylint: disable=g-import-not-at-top
    # The mean over the positions that carry a tag (each word's first piece), whatever the batch's padding.
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")

  def keras_metrics(self):
    return []

  def weighted_metrics(self):
    """Compiled as weighted metrics: the loss mask leaves the other pieces, [CLS], [SEP] and padding out."""
    import keras  # pylint: disable=g-import-not-at-top
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

  def served(self, logits: np.ndarray, targets) -> np.ndarray:  # pylint: disable=unused-argument
    """Per word (the test sentences' words back to back), the tag probabilities [sum W, C]."""
    return softmax(logits)

  def outputs(self, targets):
    return tag_outputs(targets.names)

  def output_lines(self) -> List[str]:
    return ["- Outputs (per sentence, padded to the request's longest with \"\" / -1 / 0): `tokens` (string "
            "[N, W]), `starts` and `ends` (int64 [N, W], character offsets of each token in its sentence, end "
            "exclusive), `tags` (string [N, W]), `tag_ids` (int64 [N, W]), `probabilities` (float32 [N, W, C], in "
            "`labels.txt` order) and `num_tokens` (int32 [N]).",
            "- `serving_words` takes `words` (string [N, W], pre-split words padded with \"\") and returns the same "
            "less tokens, starts and ends."]

  def describe(self, targets, modality: str) -> List[str]:  # pylint: disable=unused-argument
    types = sorted({n[2:] for n in targets.names if n != OUTSIDE})
    return [f"A token tagger (NER, {len(types)} entity types, BIO tags) fine-tuned with tfft.",
            f"- Tags ({targets.width}, in output order): " + ", ".join(f"`{n}`" for n in targets.names)]

  def _sentences(self, values, served, names):
    lengths = [len(v) for v in values]
    true = [[names[i] for i in v] for v in values]
    pred = [[names[i] for i in p.argmax(axis=-1)] for p in split_rows(np.asarray(served), lengths)]
    return true, pred

  def score(self, values, served, targets) -> Dict:
    true, pred = self._sentences(values, served, targets.names)
    return {"num_examples": len(true), **tag_metrics.tag_metrics(true, pred), "tag_names": list(targets.names)}

  def report(self, data, served: np.ndarray, *, config, rescore=None) -> Dict:
    """Entity-level metrics on the test sentences beside the CRF baseline fitted on the same train split."""
    names, test = data.targets.names, data.split["test"]
    metrics = self.score(data.labels[test], served, data.targets)
    metrics["split_sizes"] = {name: int(len(indices)) for name, indices in data.split.items()}
    if rescore is not None:
      metrics.update({k: v for k, v in rescore.items() if k.startswith("baseline")})
      return metrics
    if config.report.baseline != "none":
      words = lambda name: [data.inputs[i].split(" ") for i in data.split[name]]
      train_tags = [[names[j] for j in data.labels[i]] for i in data.split["train"]]
      true = [[names[j] for j in data.labels[i]] for i in test]
      base = tag_metrics.tag_metrics(true, tag_metrics.crf_baseline(words("train"), train_tags, words("test")))
      metrics["baseline"] = {"method": tag_metrics.CRF_METHOD, **{k: base[k] for k in GATES},
                             "per_type": base["per_type"]}
      metrics["baseline_difference"] = {k: metrics[k] - base[k] for k in GATES}
    return metrics

  def write_report(self, report_dir, metrics: Dict, *, values, served, inputs, ids):
    """metrics.json, tag_report.txt and tagging_errors.csv (the first 100 test sentences whose entities differ)."""
    names = metrics["tag_names"]
    files.write_json(report_dir / metrics_lib.METRICS_JSON, metrics)
    files.write_atomically(report_dir / REPORT_TXT, tag_metrics.format_tag_table(metrics) + "\n")
    true, pred = self._sentences(values, served, names)
    shown = 0
    with files.atomic_path(report_dir / ERRORS_CSV) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["id", "sentence", "true_entities", "predicted_entities"])
      for text, example_id, t, p in zip(inputs, ids, true, pred):
        words = str(text).split(" ")
        show = lambda tags: "; ".join(f"{e['type']}: {e['text']}" for e in tag_metrics.entities(words, tags))
        if show(t) != show(p) and shown < ERRORS_LIMIT:
          writer.writerow([example_id, text, show(t), show(p)])
          shown += 1

  def table(self, metrics: Dict) -> List[str]:
    return [tag_metrics.format_tag_table(metrics)]

  def summary_lines(self, metrics: Dict) -> List[str]:
    line = lambda m: "  ".join(f"{k}={m[k]:.4f}" for k in GATES)
    lines = [f"test:     {line(metrics)}"]
    if "baseline" in metrics:
      lines.append(f"baseline: {line(metrics['baseline'])}  ({metrics['baseline']['method']})")
      d = metrics["baseline_difference"]
      lines.append("model - baseline: " + "  ".join(f"{k}={d[k]:+.4f}" for k in GATES))
    return lines + summary.parity_lines(metrics)

  def card_lines(self, metrics: Dict) -> List[str]:
    lines = ["", "Entities (conlleval's counting: type and both ends must match):", "", "```",
             *self.table(metrics)[0].splitlines(), "```"]
    if "baseline" in metrics:
      lines += ["", f"Baseline: {metrics['baseline']['method']}, fitted on the same train split."]
    return lines

  def scalars(self, metrics: Dict) -> Dict[str, float]:
    return {k: metrics[k] for k in GATES if metrics.get(k) is not None}

  def check_parity(self, exported, data, in_process: np.ndarray, *, batch_size: int, atol: float) -> Dict:
    """Compares the export with the in-process model on the test sentences, through both signatures.

    `serving_words` gets the test sentences' words and must give each word's probabilities. `serving_default` gets
    the sentences as text (words joined by spaces); it splits them as BERT's basic tokenizer does, which may split
    a word further (@user, U.S.), but the served token that starts where a word starts is read at the same first
    piece, so its probabilities must be the word's.

    Raises:
      RunFailed: naming preprocessing skew when they differ beyond `atol`.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    texts = data.take("test")
    lengths = [len(t.split(" ")) for t in texts]
    expected = split_rows(np.asarray(in_process), lengths)
    signatures = exported._loaded.signatures  # pylint: disable=protected-access
    diff_words, diff_text, compared = 0.0, 0.0, 0
    for begin in range(0, len(texts), batch_size):
      batch = texts[begin:begin + batch_size]
      words = tf.ragged.constant([t.split(" ") for t in batch], dtype=tf.string).to_tensor("")
      by_words = signatures["serving_words"](words=words)["probabilities"].numpy()
      by_text = signatures["serving_default"](text=tf.constant(batch))
      starts, served = by_text["starts"].numpy(), by_text["probabilities"].numpy()
      for row, text in enumerate(batch):
        want = expected[begin + row]
        diff_words = max(diff_words, float(np.abs(by_words[row, :len(want)] - want).max()) if len(want) else 0.0)
        position = {int(s): k for k, s in enumerate(starts[row]) if s >= 0}
        for k, (start, _) in enumerate(word_spans(text.split(" "))):
          if start in position:
            diff_text = max(diff_text, float(np.abs(served[row, position[start]] - want[k]).max()))
            compared += 1
    diff = max(diff_words, diff_text)
    if diff > atol:
      raise RunFailed(
          f"the exported SavedModel disagrees with the trained model on the {len(texts)} test sentences: max "
          f"|probability difference| {diff_words:.3g} through serving_words, {diff_text:.3g} through "
          f"serving_default (tolerance {atol:g}); likely cause: preprocessing skew between training and the "
          "export's graph (tokenizer, lowercasing, sequence length, windows); no export written")
    return {"examples": len(texts), "words": int(sum(lengths)), "words_compared_via_text": compared,
            "max_abs_diff": diff, "max_abs_diff_words": diff_words, "max_abs_diff_text": diff_text,
            "tolerance": atol}

  def served_from_export(self, exported, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
    """The export's probabilities of each word of the sentences (words joined by spaces), through serving_words, as
    one [sum W, C] array: what `score` reads."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    signature = exported._loaded.signatures["serving_words"]  # pylint: disable=protected-access
    rows = []
    for begin in range(0, len(texts), batch_size):
      words = [t.split(" ") for t in texts[begin:begin + batch_size]]
      probabilities = signature(words=tf.ragged.constant(words, dtype=tf.string).to_tensor(""))["probabilities"]
      rows += [p[:len(w)] for p, w in zip(probabilities.numpy(), words)]
    return np.concatenate(rows) if rows else np.zeros((0, len(exported.class_names)), np.float32)

  def predictions(self, outputs: Dict[str, np.ndarray], names: Sequence[str], *, top_k: int) -> List[Dict]:  # pylint: disable=unused-argument
    """Per sentence, its tokens (with character spans, tag and probability) and the entities they form."""
    rows = []
    decode = lambda x: x.decode() if isinstance(x, bytes) else str(x)
    for i, n in enumerate(outputs["num_tokens"]):
      tokens = [decode(x) for x in outputs["tokens"][i, :n]]
      tags = [decode(x) for x in outputs["tags"][i, :n]]
      starts, ends = outputs["starts"][i, :n].tolist(), outputs["ends"][i, :n].tolist()
      best = outputs["probabilities"][i, :n].max(axis=-1).tolist() if n else []
      entities = [{"type": e["type"], "start": starts[e["first"]], "end": ends[e["last"]],
                   "tokens": tokens[e["first"]:e["last"] + 1]} for e in tag_metrics.entities(tokens, tags)]
      rows.append({"entities": entities,
                   "tokens": [{"token": t, "start": s, "end": e, "tag": g, "probability": p}
                              for t, s, e, g, p in zip(tokens, starts, ends, tags, best)]})
    return rows

  def format_rows(self, rows: Sequence[Dict], *, width: int = 48) -> str:
    lines = [f"{'input':<{width}}  entities (type: text [start, end))"]
    for row in rows:
      text = str(row["input"])
      found = "; ".join(f"{e['type']}: {text[e['start']:e['end']]} [{e['start']}, {e['end']})"
                        for e in row["entities"]) or "(none)"
      lines.append(f"{shorten(text, width):<{width}}  {found}")
    return "\n".join(lines)
