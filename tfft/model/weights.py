"""A model's weights file: built in memory (so a full disk fails cleanly), and read back with LoRA's extra state."""

import io
import pathlib

import keras

from tfft.model import lora


def weights_h5_bytes(model: keras.Model) -> bytes:
  """The bytes of `model.save_weights(...)`'s .weights.h5 file, built in memory.

  h5py crashes the process (a segfault after a storm of RuntimeErrors) when the disk refuses a write halfway
  through a file, so the file is built in memory and written with plain file I/O, which fails with an OSError.
  This uses the H5IOStore behind keras.Model.save_weights (Keras 3), which accepts a BytesIO.
  """
  from keras.src.saving import saving_lib  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  store = saving_lib.H5IOStore(buffer, mode="w")
  saving_lib._save_state(model, weights_store=store, assets_store=None,  # pylint: disable=protected-access
                         inner_path="",
                         visited_saveables=set())
  store.close()
  extra = lora.extra_state(model)
  if extra:
    import h5py  # pylint: disable=g-import-not-at-top
    with h5py.File(buffer, "r+") as f:
      group = f.create_group(lora.STORE_GROUP)
      for key, value in extra.items():
        group[key] = value
  return buffer.getvalue()


def load_weights(model: keras.Model, path: pathlib.Path):
  """`model.load_weights(path)`, and for a LoRA model the base kernels and adapters kept beside Keras' entries
  (weights_h5_bytes), which Keras alone would load merged with the adapters zeroed.

  The file also holds the optimizer's state from training; a model built to be scored or exported has a fresh
  optimizer (keras-hub tasks compile themselves), which Keras then skips with a warning that means nothing here.
  """
  import warnings  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    model.load_weights(str(path))
  if lora.lora_layers(model):
    import h5py  # pylint: disable=g-import-not-at-top
    with h5py.File(str(path), "r") as f:
      if lora.STORE_GROUP in f:
        group = f[lora.STORE_GROUP]
        lora.restore_extra_state(model, {f"{i}/{name}": group[i][name][()] for i in group for name in group[i]})
