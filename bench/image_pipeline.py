"""P6: the image input pipeline alone (read + decode + resize + augment) against the training step it feeds.

Writes JPEGs (scikit-learn's digits upscaled to 256x256 with noise, RGB) to a temp dir, then measures, at
--image_size with --batch_size:
- pipeline: tfft's own tf.data pipeline over the files (tfft.data.image_batches.make_dataset, uncached: the first
  pass decodes every file), followed by the same augmentation layers tfft puts in the model, run with
  training=True inside tf.data; also without the augmentation (read + decode + resize alone), and a second
  pass over the cached pipeline (what later epochs cost: the decoded images come from tf.data's cache);
- augmentation alone on decoded batches: tfft's layers (flips, rotation, zoom and shift as one warp, then contrast)
  against the Keras preprocessing layers they replace (RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
  RandomContrast) with the same ranges;
- train step: model.fit of --backbone (weights none) with tfft's head on in-memory pixels, steady state (2nd epoch).
Prints one JSON line.
"""

import argparse
import json
import pathlib
import tempfile
import time


def examples_per_sec(ds, passes: int = 1) -> float:
  """Examples/s of the last of `passes` passes over a batched dataset, after two batches to warm up its graphs."""
  import tensorflow as tf

  for _ in ds.take(2):
    pass
  for _ in range(passes):
    start = time.perf_counter()
    n = sum(int(tf.nest.flatten(batch)[0].shape[0]) for batch in ds)
    seconds = time.perf_counter() - start
  return n / seconds


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--images", type=int, default=512)
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--backbone", default="mobilenetv3small")
  args = parser.parse_args()

  import keras
  import numpy as np
  import tensorflow as tf
  from PIL import Image
  from sklearn.datasets import load_digits

  from tfft.model import heads, layers
  from tfft.model import image_backbones
  from tfft.data import image_batches
  from tfft.data.images import ImageExamples

  digits = load_digits()
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as tmp:
    paths, labels = [], []
    for i in range(args.images):
      small = (digits.images[i % len(digits.images)] * 16).astype(np.uint8)
      big = np.asarray(Image.fromarray(small).resize((256, 256), Image.BILINEAR), dtype=np.float32)
      rgb = np.clip(big[..., None] * rng.uniform(0.6, 1.0, 3) + rng.normal(0, 8, (256, 256, 3)), 0, 255)
      path = pathlib.Path(tmp) / f"{i:05d}.jpg"
      Image.fromarray(rgb.astype(np.uint8)).save(path, quality=90)
      paths.append(str(path))
      labels.append(int(digits.target[i % len(digits.target)]))
    labels = np.array(labels)
    examples = ImageExamples(labels=[str(x) for x in labels], ids=paths, source=tmp, paths=paths)
    idx = np.arange(len(paths))
    augment = keras.Sequential(layers.build_augmentation(flip="horizontal", rotation=0.1, zoom=0.1,
                                                           translation=0.1, contrast=0.1, seed=0))

    def rate(cache: bool, augmented: bool, passes: int = 1) -> float:
      """Examples/s of the last of `passes` passes over the files."""
      ds = image_batches.make_dataset(examples, labels, idx, num_classes=10, image_size=args.image_size,
                                      batch_size=args.batch_size, shuffle=True, cache=cache)
      if augmented:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
      return examples_per_sec(ds, passes)

    pipeline = rate(cache=False, augmented=True)  # the first epoch: every file read and decoded
    decode_only = rate(cache=False, augmented=False)
    cached = rate(cache=True, augmented=True, passes=2)  # later epochs: decoded images come from the cache

  # The augmentation alone, on decoded batches in memory: tfft's one warp against the Keras layers it replaces.
  layers = keras.layers
  keras_chain = keras.Sequential([
      layers.RandomFlip("horizontal", seed=0), layers.RandomRotation(0.1, seed=1), layers.RandomZoom(0.1, seed=2),
      layers.RandomTranslation(0.1, 0.1, seed=3), layers.RandomContrast(0.1, value_range=(0, 255), seed=4)])
  pixels = rng.uniform(0, 255, (args.images, args.image_size, args.image_size, 3)).astype("float32")

  def augment_rate(layer) -> float:
    return examples_per_sec(tf.data.Dataset.from_tensor_slices(pixels).batch(args.batch_size).map(
        lambda x: layer(x, training=True), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))

  augment_keras_chain = augment_rate(keras_chain)
  augment_one_warp = augment_rate(augment)

  spec = image_backbones.resolve(args.backbone)
  backbone = image_backbones.load_backbone(spec, image_size=args.image_size, weights="none")
  model = heads.build_image_classifier(backbone, num_classes=10, image_size=args.image_size,
                                          preprocessing=image_backbones.preprocessing(spec), augmentation=[],
                                          bn_frozen=False)
  model.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
  x = rng.uniform(0, 255, (args.images, args.image_size, args.image_size, 3)).astype("float32")
  y = np.eye(10, dtype="float32")[labels]
  times = []

  class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      times.append(time.perf_counter() - self.t)

  model.fit(x, y, batch_size=args.batch_size, epochs=2, verbose=0, callbacks=[Timer()])
  print(json.dumps({"pipeline_ex_per_s": pipeline, "decode_resize_only_ex_per_s": decode_only,
                    "cached_augmented_ex_per_s": cached, "train_step_ex_per_s": args.images / times[-1],
                    "augment_keras_chain_ex_per_s": augment_keras_chain, "augment_one_warp_ex_per_s": augment_one_warp,
                    "backbone": args.backbone, "image_size": args.image_size}))


if __name__ == "__main__":
  main()
