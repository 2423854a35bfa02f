"""tfft: fine-tune pretrained Keras backbones and export them for TF Serving."""

import os

# tfft is a TensorFlow package: pin the Keras backend before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TF's C++ start-up chatter drowns the one-line errors and the summary; users can lower this.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
