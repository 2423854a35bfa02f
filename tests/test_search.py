"""tfft.search on the tiny BERT: two KerasTuner trials judged on validation, the test split read only for the best
trial at the end, best.cfg, a resumed search that re-runs nothing, and a bad space file."""

import json
import sys
import subprocess

import pytest

from conftest import REPO, run_tfft, tiny_flags

# Runs the CLI in-process with the job and the model's scoring instrumented: each call of tfft.fit.job.run is logged
# with its score_test, each predict_logits call with how many of its examples are in the manifest's test split.
_INSTRUMENTED = """
import json, sys
from tfft.fit import job
from tfft.tasks.pooled import text as text_classifier
events = []
run, predict = job.run, text_classifier.TextClassifier.predict_logits
def logged_run(config, **kw):
  events.append(["run", kw.get("score_test", True)])
  return run(config, **kw)
def logged_predict(self, model, prepared, indices):
  test = set(prepared.split["test"].tolist())
  events.append(["logits", sum(int(i) in test for i in indices)])
  return predict(self, model, prepared, indices)
job.run, text_classifier.TextClassifier.predict_logits = logged_run, logged_predict
from tfft import search
sys.argv = ["tfft.search", *sys.argv[1:]]
try:
  search.run()
finally:
  print("EVENTS " + json.dumps(events))
"""


def _search(args, timeout=3600):
  proc = subprocess.run([sys.executable, "-c", _INSTRUMENTED, *map(str, args)], capture_output=True, text=True,
                        cwd=REPO, timeout=timeout)
  events = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("EVENTS ")]
  return proc, events[-1] if events else []


@pytest.fixture(scope="module")
def search_run(tiny_bert_preset, tiny_textdir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("search")
  flagfile = tmp / "base.cfg"
  flagfile.write_text("\n".join(tiny_flags(tiny_bert_preset, tiny_textdir, tmp, epochs=1, warmup="false",
                                           baseline="none")) + "\n")
  space = tmp / "space.txt"
  space.write_text("# two flags\nlearning_rate = 1e-3..1e-2 log\ndropout = 0.0 | 0.3\n")
  args = [f"--flagfile={flagfile}", f"--space={space}", "--trials=2", f"--search_dir={tmp / 'search'}"]
  first = _search(args)
  again = _search(args)
  return tmp, first, again


def test_two_trials_judged_on_validation_and_test_read_once_at_the_end(search_run):
  tmp, (proc, events), _ = search_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Two trials stopped before the test split, then one run (the best trial's) that scores it.
  assert [e for e in events if e[0] == "run"] == [["run", False], ["run", False], ["run", True]], events
  final = events.index(["run", True])
  assert all(e[1] == 0 for e in events[:final] if e[0] == "logits"), events  # no test example before the end
  assert any(e[0] == "logits" and e[1] > 0 for e in events[final:]), events
  results = json.loads((tmp / "search" / "search_results.json").read_text())
  assert len(results["trials"]) == 2 and results["monitor"] == "val_accuracy"
  scores = {r["trial"]: r["score"] for r in results["trials"]}
  best = results["best"]["trial"]
  assert scores[best] == max(scores.values())
  for trial in results["trials"]:
    run = pathlib_of(trial["run_dir"])
    phases = json.loads((run / "run_state.json").read_text())["phases"]
    assert phases["finetune"]["best"] == pytest.approx(trial["score"])  # the last phase's best val_accuracy
    assert (run / "metrics.json").exists() == (trial["trial"] == best)  # only the best trial was scored
  assert [p.name for p in (tmp / "exports" / "tiny").iterdir()] == ["1"]
  best_cfg = (tmp / "search" / "best.cfg").read_text()
  assert f"--dropout={results['best']['values']['dropout']}" in best_cfg
  assert f"--model_dir={tmp / 'run'}" in best_cfg  # a fresh tfft.train of the best flags, not the trial's dir
  assert "best:     trial" in proc.stdout and "scored once, for the best trial only" in proc.stdout


def pathlib_of(value):
  import pathlib
  return pathlib.Path(value)


def test_a_finished_search_resumes_without_training_again(search_run):
  tmp, (first, _), (proc, events) = search_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not [e for e in events if e[0] == "run"], events  # the oracle and the best run are read back
  assert [p.name for p in (tmp / "exports" / "tiny").iterdir()] == ["1"]
  table = lambda out: [line for line in out.strip().splitlines() if not line.startswith("EVENTS ")][-6:]
  assert table(first.stdout) == table(proc.stdout)  # the same trials, best and test scores


@pytest.mark.parametrize("space, phrase", [
    ("no_such_flag = 1 | 2", "--no_such_flag is not a tfft.train option"),
    ("val_fraction = 0.1 | 0.2", "--val_fraction cannot be searched"),
    ("rotation = 0.0 | 0.1", "rotation=0.1 does not apply to this run"),
])
def test_a_bad_space_is_one_line_and_exit_2(space, phrase, tiny_bert_preset, tiny_textdir, tmp_path):
  path = tmp_path / "space.txt"
  path.write_text(space + "\n")
  proc = run_tfft("search", tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path) + [
      f"--space={path}", "--trials=2", f"--search_dir={tmp_path / 'search'}"])
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("tfft.search: error:")]
  assert len(errors) == 1 and phrase in errors[0] and proc.stderr.rstrip().splitlines()[-1] == errors[0], proc.stderr
  assert not (tmp_path / "search").exists() and not (tmp_path / "run").exists()
