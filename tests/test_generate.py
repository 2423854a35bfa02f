"""Instruction tuning pieces on a tiny GGUF Llama: the chat template around a prompt, response-only loss masking,
LoRA trained then merged, and the generating export reloaded in a clean process, matching in-process greedy text."""

import json
import subprocess
import sys

import numpy as np
import pytest

from test_gguf import write_tiny_llama
from tfft.errors import UserError

SMOLLM2_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                    "{% endif %}")
PROMPTS = ["cat dog horse", "red blue", "one two three four five six seven eight nine ten " * 3]


def test_chat_format_renders_the_template_around_one_user_turn():
  from tfft.model import chat

  fmt = chat.chat_format(SMOLLM2_TEMPLATE, where="--backbone=x")
  assert fmt.apply("Hi") == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                             "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
  with pytest.raises(UserError, match="does not place the user's message exactly once"):
    chat.chat_format("{{ messages[0]['content'] }}{{ messages[0]['content'] }}", where="--backbone=x")
  with pytest.raises(UserError, match="does not render"):
    chat.chat_format("{{ raise_exception('no') }}", where="--backbone=x")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """The tiny Llama's backbone and tokenizer, converted under a KERAS_HOME of this module's own."""
  from tfft.model import text_backbones

  tmp = tmp_path_factory.mktemp("tiny_generate")
  write_tiny_llama(tmp / "tiny.gguf")
  with pytest.MonkeyPatch.context() as env:
    env.setenv("KERAS_HOME", str(tmp / "keras_home"))
    spec = text_backbones.resolve(f"gguf:{tmp / 'tiny.gguf'}")
    backbone = text_backbones.load_backbone(spec)
    tokenizer = text_backbones.load_preprocessor(spec, 32).tokenizer
  return backbone, tokenizer, tmp


def test_pack_puts_the_loss_on_the_response_and_its_end_token_only(tiny):
  from tfft.tasks.generate import data as instructions
  from tfft.model import chat

  _, tokenizer, _ = tiny
  fmt = chat.chat_format(tokenizer.chat_template, where="tiny")
  ids = lambda text: np.asarray(tokenizer(text)).tolist()
  arrays = instructions.pack(tokenizer, fmt, ["cat dog", "x " * 40], ["animals", "y"], sequence_length=24)
  prompt, response = ids(fmt.prefix) + ids("cat dog") + ids(fmt.suffix), ids("animals")
  row = prompt + response + [tokenizer.end_token_id]
  assert arrays["token_ids"][0, :len(row)].tolist() == row
  assert arrays["padding_mask"][0].tolist() == [True] * len(row) + [False] * (24 - len(row))
  # Label j is token j + 1; its weight is 1 exactly where that token is the response or the end token.
  assert arrays["labels"][0, :len(row) - 1].tolist() == row[1:]
  expected = np.zeros(24)
  expected[len(prompt) - 1:len(row) - 1] = 1
  np.testing.assert_array_equal(arrays["loss_weights"][0], expected)
  # A long prompt keeps its start and the whole template, and the response still fits.
  assert arrays["padding_mask"][1].all()
  long_row = arrays["token_ids"][1].tolist() + arrays["labels"][1, -1:].tolist()  # 25 tokens: inputs + last label
  suffix_and_answer = ids(fmt.suffix) + ids("y") + [tokenizer.end_token_id]
  assert long_row[-len(suffix_and_answer):] == suffix_and_answer
  assert long_row[:len(ids(fmt.prefix)) + 4] == ids(fmt.prefix) + ids("x " * 40)[:4]
  assert arrays["loss_weights"][1].sum() == 2


_SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops, as TF Serving links them)
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = fn(prompt=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({"text": [t.decode() for t in out["text"].numpy()], "token_count": out["token_count"].numpy().tolist(),
                  "leaked": sorted(m for m in sys.modules if m.split(".")[0] in ("tfft", "keras_hub"))}))
"""


def test_lora_trains_merges_and_the_generating_export_matches_in_process_greedy(tiny, tmp_path):
  import keras

  from tfft.tasks.generate import data as instructions
  from tfft.model import causal_lm, chat
  from tfft.tasks.generate import export as generation

  backbone, tokenizer, _ = tiny
  fmt = chat.chat_format(tokenizer.chat_template, where="tiny")
  keras.utils.set_random_seed(0)
  model = causal_lm.build_causal_lm(backbone, lora_rank=4)
  frozen = {v.path: np.asarray(v) for v in backbone.weights if "lora" not in v.path}
  assert causal_lm.lora_parameter_count(backbone) > 0
  assert all("lora" in v.path for v in backbone.trainable_weights)
  arrays = instructions.pack(tokenizer, fmt, PROMPTS[:2] * 4, ["animals", "colors"] * 4, sequence_length=32)
  data = instructions.make_dataset(arrays, np.arange(8), batch_size=4)
  causal_lm.compile_causal_lm(model, learning_rate=5e-2, weight_decay=0.0, clipnorm=1.0)
  before = causal_lm.response_nll(model, data)
  model.fit(data, epochs=25, verbose=0)
  assert causal_lm.response_nll(model, data) < 0.1 * before
  assert all(np.array_equal(np.asarray(v), frozen[v.path]) for v in backbone.weights if v.path in frozen)

  merged = causal_lm.build_causal_lm(causal_lm.merged_backbone(backbone), lora_rank=0)
  x = {name: arrays[name] for name in ("token_ids", "padding_mask")}
  np.testing.assert_allclose(np.asarray(merged(x)), np.asarray(model(x)), atol=1e-4)
  assert not any("lora" in v.path for v in merged.weights)

  generate = generation.generate_fn(merged, tokenizer, fmt, sequence_length=32, max_new_tokens=5)
  texts, counts = generation.generate_texts(generate, PROMPTS)
  assert all(0 <= c <= 5 for c in counts)
  # It learned the responses: each trained prompt starts its own (a filler equal to the end token would stop at once).
  assert counts[:2] == [5, 5] and "animals".startswith(texts[0]) and "colors".startswith(texts[1]) and all(texts)
  # Greedy with the cache is greedy without it: each token is the argmax of a full forward pass over what came before,
  # and a row that stopped early stopped at the end token.
  import tensorflow as tf
  templated = tf.function(lambda t: instructions.prompt_ids(tokenizer, fmt, t, 32 - 5))  # TF Text path, as served
  ids = templated(tf.constant(PROMPTS[:1])).to_list()[0]
  start = len(ids)
  while len(ids) - start < 5:
    logits = merged({"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), bool)})
    ids.append(int(np.argmax(np.asarray(logits)[0, -1])))
    if ids[-1] == tokenizer.end_token_id:
      break
  new = [i for i in ids[start:] if i != tokenizer.end_token_id]
  assert len(new) == counts[0]
  detokenize = tf.function(lambda r: tokenizer.detokenize(r))
  assert detokenize(tf.ragged.constant([new], tf.int32)).numpy()[0].decode() == texts[0]

  export = generation.export_generator(merged, tokenizer, fmt, export_base=tmp_path / "exports", sequence_length=32,
                                       max_new_tokens=5)
  proc = subprocess.run([sys.executable, "-c", _SERVE, str(export), json.dumps(PROMPTS)], capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["leaked"] == []
  assert served["text"] == texts and served["token_count"] == counts
