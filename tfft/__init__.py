"""tfft: fine-tune pretrained Keras backbones and export them for TF Serving."""

import os

# tfft is a TensorFlow package: pin the Keras backend before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TF's C++ start-up chatter drowns the one-line errors and the summary; users can lower this.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF enables its oneDNN kernels by default only on some Intel CPUs. On this project's 2-core AMD machine they make a
# MiniLM training step 2.1x faster (4.7 -> 9.8 ex/s, batch 32, seq 128) and batched attention matmuls ~4x faster.
# Results differ from the Eigen kernels only by float round-off. TF reads this once, at import: set it to 0 to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
