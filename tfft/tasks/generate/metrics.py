"""ROUGE-1/2/L of generated texts against references (the rouge-score package), and the lead baseline."""

import re
from typing import Dict, Sequence

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(predictions: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
  """Mean F1 of ROUGE-1, ROUGE-2 and ROUGE-L over pairs, with the Porter stemmer (as the ROUGE papers report).

  Returns:
    {"rouge1": ..., "rouge2": ..., "rougeL": ...}, each in [0, 1].
  """
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
  return {name: float(np.mean([s[name].fmeasure for s in scores])) if scores else 0.0 for name in ROUGE_TYPES}


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def lead(text: str) -> str:
  """The lead baseline: the text's first sentence (its first non-empty line, cut at the first sentence end)."""
  for line in text.strip().splitlines():
    if line.strip():
      return _SENTENCE_END.split(line.strip(), maxsplit=1)[0]
  return ""
