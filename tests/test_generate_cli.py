"""--task=generate end to end on a tiny GGUF Llama the test writes: one tfft.train run (LoRA, the loss on the
responses) whose report holds ROUGE beside the lead baseline and the base model, and the test responses'
perplexity; its export reloaded in a clean process writes the texts the run's report holds; tfft.predict and
tfft.evaluate read it; and the generate-only errors."""

import csv
import json
import os
import random
import subprocess
import sys

import pytest

from conftest import REPO
from test_gguf import write_tiny_llama

GROUPS = {"animals": ["cat", "dog", "horse", "cow", "pig"], "colors": ["red", "blue", "green", "pink", "gray"],
          "numbers": ["one", "two", "six", "ten", "nine"]}


def _write_pairs(path, n=30, seed=0):
  rng = random.Random(seed)
  with path.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["question", "answer"])
    for i in range(n):
      name = list(GROUPS)[i % len(GROUPS)]
      writer.writerow([" ".join(rng.sample(GROUPS[name], 3)) + ". Which kind?", name])


def _run(module, args, home, timeout=2400):
  env = {**os.environ, "KERAS_HOME": str(home)}
  return subprocess.run([sys.executable, "-m", f"tfft.{module}", *map(str, args)], capture_output=True, text=True,
                        cwd=REPO, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("generate_cli")
  write_tiny_llama(tmp / "tiny.gguf")
  _write_pairs(tmp / "pairs.csv")
  return tmp


def _flags(tmp, **overrides):
  flags = {"task": "generate", "dataset": f"csv:{tmp / 'pairs.csv'}", "prompt_column": "question",
           "response_column": "answer", "backbone": f"gguf:{tmp / 'tiny.gguf'}", "sequence_length": 48,
           "max_new_tokens": 6, "batch_size": 8, "epochs": 15, "learning_rate": 3e-2, "warmup_fraction": 0.0,
           "seed": 1, "model_dir": tmp / "run", "export_dir": tmp / "exports", "name": "tinygen"}
  flags.update(overrides)
  return [f"--{k}={v}" for k, v in flags.items()]


@pytest.fixture(scope="module")
def run(setup):
  tmp = setup
  proc = _run("train", _flags(tmp), tmp / "keras_home")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp, proc


def test_train_reports_rouge_beside_lead_and_base_model_and_perplexity(run):
  tmp, proc = run
  metrics = json.loads((tmp / "run" / "metrics.json").read_text())
  for name in ("rouge1", "rouge2", "rougeL", "perplexity"):
    assert 0 <= metrics[name] <= (1 if name != "perplexity" else 1e9), name
  assert set(metrics["baseline"]) >= {"method", "rouge1", "rouge2", "rougeL"} and "lead" in metrics["baseline"]["method"]
  base = metrics["base_model"]
  # Trained on the responses, the model gives the test responses a far lower perplexity than the random base model.
  assert metrics["perplexity"] < 0.5 * base["perplexity"]
  assert metrics["rougeL"] > base["rougeL"]
  assert metrics["split_sizes"] == {"train": 21, "val": 2, "test": 7}
  with (tmp / "run" / "generations.csv").open() as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 7 and {"prompt", "reference", "generated", "lead", "base_model"} <= set(rows[0])
  assert rows[0]["lead"] == rows[0]["prompt"].split(". ")[0] + "."
  assert "LoRA rank 8" in proc.stderr  # the default for decoders
  assert metrics["export_parity"]["same_texts"] == 7
  summary = proc.stdout
  assert "rougeL=" in summary and "lead:" in summary and "base:" in summary


# Serves the prompts (argv[1]) with each export named after them, in turn; prints a JSON line per export.
_SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops, as TF Serving links them)
for export in sys.argv[2:]:
  fn = tf.saved_model.load(export).signatures["serving_default"]
  out = fn(prompt=tf.constant(json.loads(sys.argv[1])))
  print(json.dumps({"text": [t.decode() for t in out["text"].numpy()],
                    "leaked": sorted(m for m in sys.modules if m.split(".")[0] in ("tfft", "keras_hub"))}))
"""


def test_export_reloaded_in_a_clean_process_writes_the_reports_texts(run):
  tmp, _ = run
  export = tmp / "exports" / "tinygen" / "1"
  assert (export / "assets.extra" / "tf_serving_warmup_requests").is_file()
  meta = json.loads((export / "assets.extra" / "tfft.json").read_text())
  assert meta["target"] == "generate" and meta["input"] == "prompt"
  with (tmp / "run" / "generations.csv").open() as f:
    rows = list(csv.DictReader(f))
  proc = subprocess.run([sys.executable, "-c", _SERVE, json.dumps([r["prompt"] for r in rows]), str(export)],
                        capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  served = json.loads(proc.stdout.strip().splitlines()[-1])
  assert served["leaked"] == []
  assert served["text"] == [r["generated"] for r in rows]


def test_predict_prints_generations_and_evaluate_scores_rouge(run):
  tmp, _ = run
  export = tmp / "exports" / "tinygen" / "1"
  proc = _run("predict", [f"--model={export}", "--format=json", "cat dog horse. Which kind?"], tmp / "keras_home")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads(proc.stdout)
  assert rows[0]["input"] == "cat dog horse. Which kind?" and isinstance(rows[0]["text"], str)
  assert rows[0]["token_count"] >= 0
  proc = _run("evaluate", [f"--model={export}", "--split=test", f"--report_dir={tmp / 'eval'}"], tmp / "keras_home")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "rougeL=" in proc.stdout and "lead:" in proc.stdout
  scored = json.loads((tmp / "eval" / "metrics.json").read_text())
  trained = json.loads((tmp / "run" / "metrics.json").read_text())
  for name in ("rouge1", "rouge2", "rougeL"):  # the export's texts are the run's: the same ROUGE
    assert scored[name] == pytest.approx(trained[name], abs=1e-9)
    assert scored["baseline"][name] == pytest.approx(trained["baseline"][name], abs=1e-9)


def test_reexport_of_the_run_writes_a_second_version_with_the_same_texts(run):
  """tfft.export rebuilds the LoRA run from its flags (the adapters merged in its final weights) and publishes
  version 2, parity-checked like train's; its texts are version 1's."""
  tmp, _ = run
  proc = _run("export", [f"--model_dir={tmp / 'run'}"], tmp / "keras_home")
  assert proc.returncode == 0, proc.stderr[-3000:]
  again = tmp / "exports" / "tinygen" / "2"
  assert f"export:   {again}" in proc.stdout
  assert "rougeL=" in proc.stdout and "same texts on 7 of 7" in proc.stdout
  with (tmp / "run" / "generations.csv").open() as f:
    prompts = [r["prompt"] for r in csv.DictReader(f)]
  # Both versions in one clean process (one TensorFlow start-up), each loaded on its own.
  out = subprocess.run([sys.executable, "-c", _SERVE, json.dumps(prompts),
                        *(str(tmp / "exports" / "tinygen" / version) for version in ("1", "2"))],
                       capture_output=True, text=True, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  texts = dict(zip(("1", "2"), (json.loads(line)["text"] for line in out.stdout.strip().splitlines()[-2:])))
  assert len(texts["1"]) == len(prompts) and texts["2"] == texts["1"]


def test_missing_response_column_is_one_line(setup):
  tmp = setup
  proc = _run("train", _flags(tmp, response_column="headline", model_dir=tmp / "bad_run"), tmp / "keras_home")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert lines[-1] == ("tfft.train: error: --response_column='headline' is not a column of pairs.csv; its columns "
                       "are: question, answer"), proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and not (tmp / "bad_run").exists()
