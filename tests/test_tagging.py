"""Token tagging below the train job: reading CoNLL/JSONL, the BIO check, word-piece alignment and windows,
the in-graph word split with character spans, the metrics against hand-computed values, and the CRF baseline."""

import numpy as np
import pytest

from tfft.data import tagging
from tfft.errors import UserError
from tfft.tasks.tag import metrics as tag_metrics

# Word pieces chosen so that "paulwalk" is two pieces and "newyorker" three.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "new", "york", "is", "big", ",", "!", "@", ".", "paul",
         "##walk", "##er", "the", "a", "in", "lives", "u", "s"]


@pytest.fixture(scope="module")
def preprocessor():
  import keras_hub
  import tensorflow as tf
  tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
  pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)  # 6 pieces a window
  pre(tf.constant(["build"]))
  return pre


def test_conll_tab_and_space_blank_lines_and_docstart(tmp_path):
  path = tmp_path / "d.conll"
  path.write_text("-DOCSTART- O\n\nNew\tB-LOC\nYork\tI-LOC\n \nI O\nsaw O\nPaul B-PER\n\n\n")
  data = tagging.read_conll(path, scheme="bio", flag="--dataset=x")
  assert data.tokens == [["New", "York"], ["I", "saw", "Paul"]]
  assert data.tags == [["B-LOC", "I-LOC"], ["O", "O", "B-PER"]]
  assert data.ids == ["line:3", "line:6"]
  assert data.texts == ["New York", "I saw Paul"]
  assert tagging.word_spans(["I", "saw", "Paul"]) == [(0, 1), (2, 5), (6, 10)]


@pytest.mark.parametrize("content, phrase", [
    ("New B-LOC extra\n", "line 1 has 3 column(s)"),
    ("New\n", "line 1 has 1 column(s)"),
    ("I O\nYork I-LOC\n", "word 2: 'I-LOC' follows 'O', which BIO does not allow"),
    ("I O\nYork LOC\n", "tag 'LOC' is not O, B-TYPE or I-TYPE"),
    ("\n\n", "holds no tagged sentence"),
    ("New York\tB-LOC\n", "word 1: 'New York' holds whitespace"),
])
def test_conll_bad_lines(tmp_path, content, phrase):
  path = tmp_path / "d.conll"
  path.write_text(content)
  with pytest.raises(UserError, match=None) as e:
    tagging.read_conll(path, scheme="bio", flag="--dataset=conll:d")
  assert phrase in str(e.value)


def test_iob1_is_rewritten_to_bio():
  assert tagging.check_tags(["I-PER", "I-PER", "B-PER", "O", "I-LOC"], scheme="iob1", where="w") == [
      "B-PER", "I-PER", "B-PER", "O", "B-LOC"]
  with pytest.raises(UserError, match="--tag_scheme=iob1"):
    tagging.check_tags(["I-PER"], scheme="bio", where="w")


def test_jsonl_rows_and_errors(tmp_path):
  path = tmp_path / "d.jsonl"
  path.write_text('{"tokens": ["Paul", "lives"], "tags": ["B-PER", "O"]}\n\n{"tokens": ["a"], "tags": ["O"]}\n')
  data = tagging.load_tagged(f"conll:{path}")
  assert data.tokens == [["Paul", "lives"], ["a"]] and data.ids == ["row:1", "row:3"]
  path.write_text('{"tokens": ["Paul", "lives"], "tags": ["B-PER"]}\n')
  with pytest.raises(UserError, match="row 1 has 2 tokens and 1 tags"):
    tagging.load_tagged(f"conll:{path}")


def test_entities_read_as_conlleval_reads_them():
  words = ["Paul", "Walk", "in", "New", "York", "Inc"]
  found = tag_metrics.entities(words, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-ORG"])
  assert [(e["type"], e["text"]) for e in found] == [("PER", "Paul Walk"), ("LOC", "New York"), ("ORG", "Inc")]


def test_tag_metrics_against_hand_counts():
  # True entities: PER(0-1), LOC(3) and LOC(0) of sentence 2; predicted: PER(0-1), PER(3), LOC(0), LOC(1).
  # Right: PER(0-1), LOC(0). P = 2/4, R = 2/3; PER P=1/2 R=1; LOC P=1/2 R=1/2; 4 of 6 words right.
  y_true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
  y_pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "B-LOC"]]
  m = tag_metrics.tag_metrics(y_true, y_pred)
  assert m["entity_precision"] == pytest.approx(0.5)
  assert m["entity_recall"] == pytest.approx(2 / 3)
  assert m["entity_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
  assert m["per_type"]["PER"]["f1-score"] == pytest.approx(2 / 3)
  assert m["per_type"]["LOC"]["f1-score"] == pytest.approx(0.5)
  assert m["macro_entity_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
  assert m["token_accuracy"] == pytest.approx(4 / 6)
  assert m["per_type"]["LOC"]["support"] == 2


def test_crf_baseline_learns_a_word_list():
  train = [["Paul", "lives", "in", "Rome"], ["Anna", "saw", "Paris"], ["Rome", "is", "big"]] * 5
  tags = [["B-PER", "O", "O", "B-LOC"], ["B-PER", "O", "B-LOC"], ["B-LOC", "O", "O"]] * 5
  assert tag_metrics.crf_baseline(train, tags, [["Anna", "lives", "in", "Paris"]]) == [["B-PER", "O", "O", "B-LOC"]]


def test_split_words_gives_character_spans():
  import tensorflow as tf
  from tfft.data import tag_pieces
  texts = ["New York, is big!", "  é @paulwalk", ""]
  words, starts, ends = tag_pieces.split_words(tf.constant(texts))
  words = [[w.decode() for w in row] for row in words.to_list()]
  assert words == [["New", "York", ",", "is", "big", "!"], ["é", "@", "paulwalk"], []]
  for text, row, s, e in zip(texts, words, starts.to_list(), ends.to_list()):
    assert [text[a:b] for a, b in zip(s, e)] == row  # offsets index the Python str, not its UTF-8 bytes


def test_first_piece_carries_the_tag_and_long_sentences_are_windowed(preprocessor):
  from tfft.data import tag_pieces
  # Pieces: new york is big paul ##walk the a new u . s .  -> 13 pieces, windows of 6 starting every 3.
  words = ["new", "york", "is", "big", "paulwalk", "the", "a", "new", "u", ".", "s", "."]
  tags = [1, 2, 0, 0, 3, 0, 0, 1, 0, 0, 0, 0]
  features, labels, weights, sentence = tag_pieces.training_windows(preprocessor, [words, ["paulwalk"]],
                                                                    [tags, [3]])
  ids = features["token_ids"]
  piece = {t: i for i, t in enumerate(VOCAB)}
  assert sentence.tolist() == [0, 0, 0, 0, 1]  # 13 pieces: windows at 0, 3, 6, 9; nothing is cut
  assert ids[0].tolist() == [piece[t] for t in ["[CLS]", "new", "york", "is", "big", "paul", "##walk", "[SEP]"]]
  # "paulwalk" is tagged at "paul"; "##walk", [CLS] and [SEP] are out of the loss.
  assert labels[0].tolist() == [0, 1, 2, 0, 0, 3, 0, 0]
  assert weights[0].tolist() == [0, 1, 1, 1, 1, 1, 0, 0]
  assert ids[4].tolist()[:4] == [piece["[CLS]"], piece["paul"], piece["##walk"], piece["[SEP]"]]
  assert weights[4].tolist()[:4] == [0, 1, 0, 0]
  # Every word is labelled in some window, and each window holds only the words whose first piece is in it.
  assert weights[:4].sum() >= len(words)
  # Each word is read from the window where its first piece sits farthest from an edge.
  plan = tag_pieces.layout(preprocessor.tokenizer, __import__("tensorflow").ragged.constant([words]), 6)
  first = plan["word_first"].numpy().tolist()
  assert first == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
  window, position = plan["word_window"].numpy(), plan["word_position"].numpy()
  starts = plan["window_start"].numpy()
  for f, w, p in zip(first, window, position):
    assert p == 1 + f - starts[w]
    margin = min(f - starts[w], starts[w] + 5 - f)
    assert all(margin >= min(f - s, s + 5 - f) for s in starts if s <= f < s + 6)


def test_word_logits_read_the_first_piece(preprocessor):
  """With a model that echoes the token id as its logits, each word's logits name its first piece."""
  import keras
  import tensorflow as tf
  from tfft.data import tag_pieces

  ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
  seg = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
  mask = keras.Input(shape=(None,), dtype="bool", name="padding_mask")
  echo = keras.Model({"token_ids": ids, "segment_ids": seg, "padding_mask": mask},
                     keras.layers.Lambda(lambda t: keras.ops.one_hot(t, len(VOCAB)))(ids))
  words = [["new", "york", "is", "big", "paulwalk", "the", "a", "new", "u", ".", "s", "."], ["paulwalk", "\x00"]]
  logits = tag_pieces.predict_word_logits(echo, preprocessor, words, outside_index=0)
  piece = {t: i for i, t in enumerate(VOCAB)}
  assert logits[0].argmax(-1).tolist() == [piece[w] if w in piece else piece["paul"] for w in words[0]]
  assert logits[1].argmax(-1).tolist() == [piece["paul"], 0]  # a word with no piece is read as the outside tag
  raw = tag_pieces.predict_word_logits(echo, preprocessor, ["new york, is big!"], outside_index=0, raw=True)
  assert raw[0].argmax(-1).tolist() == [piece[w] for w in ["new", "york", ",", "is", "big", "!"]]
  del tf
