"""The two-class decision threshold: choosing it on validation (pure functions), and one tiny run whose export,
tfft.evaluate and tfft.predict decide at it."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_tfft, tiny_flags


def test_f1_and_precision_thresholds_on_a_constructed_validation_split():
  from tfft.report import threshold
  p = np.array([0.1, 0.2, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9])
  y = np.array([0, 0, 1, 0, 1, 0, 1, 1], bool)
  f1 = threshold.choose(p, y, "f1")  # >= 0.35 catches all 4 positives with 2 false: F1 = 0.8, the best
  assert f1["threshold"] == pytest.approx(0.35) and f1["f1"] == pytest.approx(0.8)
  precise = threshold.choose(p, y, "precision@0.75")  # lowest reaching 3/4 is 0.6 (3 of 4 predicted are positive)
  assert precise["threshold"] == pytest.approx(0.6) and precise["reached"] and precise["precision"] == 0.75
  unreachable = threshold.choose(np.array([0.9, 0.8]), np.array([0, 1], bool), "precision@0.99")
  assert unreachable["reached"] is False and unreachable["threshold"] == pytest.approx(0.8)
  assert threshold.choose(p, y, "0.5")["threshold"] == 0.5
  np.testing.assert_array_equal(threshold.decide(np.array([[0.3, 0.7], [0.6, 0.4], [0.7, 0.3]]), 0.65, 0),
                                [1, 1, 0])  # the middle row's argmax is 0
  assert threshold.positive_index(["a", "b"], "") == 1 and threshold.positive_index(["a", "b"], "a") == 0


_SERVE = """
import json, sys
import numpy as np
from tfft.fit import scoring
from tfft.serving import loaded
export = sys.argv[1]
model = scoring.load(export)
meta = loaded.read_meta(model.path)
texts = [line for line in open(sys.argv[2]).read().splitlines() if line]
out = model.outputs(loaded.as_bytes("text", texts))
decided = np.where(out["probabilities"][:, meta["positive"]] >= meta["threshold"], meta["positive"], 1 - meta["positive"])
metrics, _ = scoring.evaluate_export(export, report_dir=sys.argv[3])
rows = model.predict(texts, top_k=1)
print(json.dumps({"served": out["class_id"].tolist(), "decided": decided.tolist(),
                  "names": [n.decode() for n in out["class_name"]], "accuracy": metrics["accuracy"],
                  "decision": metrics.get("decision"), "predicted": [r["predictions"][0]["class_id"] for r in rows]}))
"""


@pytest.fixture(scope="module")
def threshold_run(tiny_bert_preset, tiny_textdir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("threshold")
  proc = run_tfft("train", tiny_flags(tiny_bert_preset, tiny_textdir, tmp, classes="animals,colors",
                                      threshold="precision@0.9", positive_class="animals", warmup="false"),
                  timeout=2400)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp, proc


def test_the_threshold_is_chosen_on_validation_and_served(threshold_run, tiny_textdir):
  tmp, proc = threshold_run
  metrics = json.loads((tmp / "run" / "metrics.json").read_text())
  t = metrics["threshold"]
  assert t["rule"] == "precision@0.9" and t["positive_class"] == "animals" and t["positive"] == 0
  assert 0.0 < t["threshold"] <= 1.0 and set(t["test"]) >= {"accuracy", "macro_f1", "precision", "recall"}
  assert "threshold: animals when p >= " in proc.stdout, proc.stdout
  export = tmp / "exports" / "tiny" / "1"
  meta = json.loads((export / "assets.extra" / "tfft.json").read_text())
  assert meta["threshold"] == t["threshold"] and meta["positive"] == 0 and meta["threshold_rule"] == "precision@0.9"
  assert "Decision threshold: `animals` is predicted when its probability is >= " in (
      export / "assets.extra" / "model_card.md").read_text()
  texts = tmp / "texts.txt"
  texts.write_text("\n".join(p.read_text() for d in ("animals", "colors") for p in sorted((tiny_textdir / d).glob("*"))))
  out = subprocess.run([sys.executable, "-c", _SERVE, str(export), str(texts), str(tmp / "eval")], capture_output=True,
                       text=True, cwd=REPO, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  served = json.loads(out.stdout.strip().splitlines()[-1])
  assert served["served"] == served["decided"] == served["predicted"]  # a clean TF process decides at the threshold
  assert served["names"] == [["animals", "colors"][i] for i in served["served"]]
  assert served["decision"]["threshold"] == t["threshold"]
  assert served["accuracy"] == pytest.approx(t["test"]["accuracy"], abs=1e-6)  # evaluate scores the decisions
