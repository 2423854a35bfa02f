"""Audio files: a WAV read as float32 mono samples and resampled to the rate a model needs."""

import math
import pathlib
import warnings

import numpy as np
from scipy import signal
from scipy.io import wavfile

from tfft.errors import UserError

WHISPER_RATE = 16000


def read_wav(path) -> "tuple[np.ndarray, int]":
  """A WAV file's samples as float32 in [-1, 1], channels averaged to mono, and its sample rate.

  scipy.io.wavfile reads PCM of 8 to 32 bits and IEEE float, which covers what recorders and TTS tools write.

  Args:
    path: the .wav file.

  Returns:
    (samples, rate): a float32 array of shape (n,), and the rate in Hz.

  Raises:
    UserError: the file is missing, is not a WAV file, has no samples, or is silent (every sample zero).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f"{path}: no such WAV file")
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", wavfile.WavFileWarning)  # unknown chunks (LIST, cue) are skipped, as intended
      rate, data = wavfile.read(path)
  except (ValueError, EOFError, OSError) as e:
    raise UserError(f"{path}: not a readable WAV file ({e}); convert it to 16-bit PCM WAV") from None
  if data.size == 0:
    raise UserError(f"{path}: a WAV file with no samples")
  if data.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
    samples = (data.astype(np.float32) - 128.0) / 128.0
  elif data.dtype.kind == "i":
    samples = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
  else:
    samples = data.astype(np.float32)
  if samples.ndim == 2:
    samples = samples.mean(axis=1)
  if not np.any(samples):
    raise UserError(f"{path}: a silent WAV file (every one of its {samples.size} samples is zero)")
  return samples, int(rate)


def resample(samples: np.ndarray, rate: int, target: int = WHISPER_RATE) -> np.ndarray:
  """Resamples with scipy's polyphase filter (a Kaiser-windowed low-pass FIR), which does not alias.

  Args:
    samples: float32 mono samples.
    rate: their rate in Hz.
    target: the rate wanted.

  Returns:
    float32 samples at `target` Hz.
  """
  if rate == target:
    return samples.astype(np.float32)
  g = math.gcd(rate, target)
  return signal.resample_poly(samples, target // g, rate // g).astype(np.float32)


def load_wav(path, rate: int = WHISPER_RATE) -> np.ndarray:
  """A WAV file as float32 mono samples at `rate` Hz (as read_wav, then resample)."""
  samples, original = read_wav(path)
  return resample(samples, original, rate)
