"""Token-tagging metrics: entity-level precision, recall and F1 per type and overall (seqeval, conlleval's
counting), token accuracy; and the CRF baseline on word features (sklearn-crfsuite)."""

from typing import Dict, List, Sequence

CRF_METHOD = "CRF on word features (sklearn-crfsuite, L-BFGS, c1=0.1, c2=0.1, 100 iterations)"


def tag_metrics(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> Dict:
  """Scores predicted tag sequences against the true ones.

  Entities are counted as conlleval counts them (seqeval's default mode): a predicted entity is right only if its
  type and both ends match a true one.

  Returns:
    A JSON-ready dict: entity_precision / entity_recall / entity_f1 (micro over entities), macro_entity_f1 (mean
    over types), token_accuracy (over words), per_type {type: precision, recall, f1-score, support},
    num_sentences, num_tokens.
  """
  from seqeval import metrics as sm  # pylint: disable=g-import-not-at-top

  y_true, y_pred = [list(s) for s in y_true], [list(s) for s in y_pred]
  tokens = sum(len(s) for s in y_true)
  correct = sum(t == p for ts, ps in zip(y_true, y_pred) for t, p in zip(ts, ps))
  report = sm.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
  types = sorted(name for name in report if not name.endswith(" avg"))
  return {
      "num_sentences": len(y_true), "num_tokens": tokens,
      "entity_precision": float(sm.precision_score(y_true, y_pred, zero_division=0)),
      "entity_recall": float(sm.recall_score(y_true, y_pred, zero_division=0)),
      "entity_f1": float(sm.f1_score(y_true, y_pred, zero_division=0)),
      "macro_entity_f1": float(report["macro avg"]["f1-score"]) if types else 0.0,
      "token_accuracy": correct / tokens if tokens else 0.0,
      "per_type": {name: {k: float(v) for k, v in report[name].items()} for name in types},
  }


def format_tag_table(result: Dict) -> str:
  """The per-type report and the headline numbers as a fixed-width table."""
  names = list(result["per_type"])
  width = max(14, *(len(n) for n in names)) if names else 14
  lines = [f"{'entity type':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
  for name in names:
    row = result["per_type"][name]
    lines.append(f"{name:<{width}} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1-score']:9.4f} "
                 f"{int(row['support']):8d}")
  lines.append(f"{'all entities':<{width}} {result['entity_precision']:9.4f} {result['entity_recall']:9.4f} "
               f"{result['entity_f1']:9.4f}")
  lines.append(f"{'token accuracy':<{width}} {result['token_accuracy']:9.4f}")
  return "\n".join(lines)


def entities(words: Sequence[str], tags: Sequence[str]) -> List[Dict]:
  """The entities of one tagged sentence: type, first and last word index, text (words joined by spaces).

  Read as conlleval reads them: an I-TYPE after O or another type starts an entity too.
  """
  found, current = [], None
  for i, tag in enumerate(list(tags) + ["O"]):
    kind = tag[2:] if tag != "O" else None
    if current and (tag == "O" or tag.startswith("B-") or kind != current["type"]):
      found.append(current)
      current = None
    if kind and current is None:
      current = {"type": kind, "first": i, "last": i}
    elif kind:
      current["last"] = i
  for entity in found:
    entity["text"] = " ".join(words[entity["first"]:entity["last"] + 1])
  return found


def word_features(words: Sequence[str], i: int) -> Dict:
  """CRF features of word i: its lowercase form, affixes, shape, and the same for its neighbours."""
  def of(word, prefix):
    return {f"{prefix}lower": word.lower(), f"{prefix}suffix3": word[-3:].lower(), f"{prefix}prefix3": word[:3].lower(),
            f"{prefix}istitle": word.istitle(), f"{prefix}isupper": word.isupper(), f"{prefix}isdigit": word.isdigit(),
            f"{prefix}first": word[:1] if not word[:1].isalnum() else "a"}
  features = {"bias": 1.0, **of(words[i], ""), "suffix2": words[i][-2:].lower(), "length": min(len(words[i]), 10)}
  features.update(of(words[i - 1], "-1:") if i > 0 else {"BOS": True})
  features.update(of(words[i + 1], "+1:") if i + 1 < len(words) else {"EOS": True})
  return features


def crf_baseline(train_tokens, train_tags, test_tokens) -> List[List[str]]:
  """Fits a linear-chain CRF on the training sentences and tags the test sentences."""
  import sklearn_crfsuite  # pylint: disable=g-import-not-at-top

  featurize = lambda sentences: [[word_features(s, i) for i in range(len(s))] for s in sentences]
  crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=100, all_possible_transitions=True)
  crf.fit(featurize(train_tokens), [list(t) for t in train_tags])
  return [list(p) for p in crf.predict(featurize(test_tokens))]
