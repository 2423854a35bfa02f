"""Bad input to tfft.train: one line on stderr naming the problem and the fix, exit code 2, no traceback, no files."""

import pytest

from conftest import run_tfft, tiny_flags


def _assert_user_error(proc, *needles):
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("tfft.train: error:")]
  assert len(errors) == 1, proc.stderr[-2000:]
  for needle in needles:
    assert needle in errors[0], errors[0]
  return errors[0]


@pytest.fixture()
def base(tiny_bert_preset, tiny_textdir, tmp_path):
  return lambda **overrides: tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path, **overrides)


def _table(tmp_path, name, content):
  path = tmp_path / name
  path.write_text(content)
  return path


CASES = {
    "unknown flag value": (dict(optimizer="rmsprop"), ["--optimizer", "adamw"]),
    "bad freeze": (dict(freeze="some"), ["--freeze='some'", "top_k:N"]),
    "zero batch": (dict(batch_size=0), ["--batch_size=0", "positive"]),
    "no epochs": (dict(head_epochs=0, epochs=0), ["--epochs=0", "both phases"]),
    "missing dataset": (dict(dataset="textdir:/no/such/dir"), ["/no/such/dir", "does not exist"]),
    "unknown dataset kind": (dict(dataset="parquet:/x"), ["--dataset='parquet:/x'", "textdir:PATH"]),
    "unknown backbone": (dict(backbone="no_such_backbone"), ["--backbone=no_such_backbone", "not a known backbone"]),
    "missing backbone dir": (dict(backbone="/no/such/model"), ["--backbone=/no/such/model", "no such directory"]),
    "unreachable preset": (dict(backbone="bert_tiny_en_uncased"), ["--backbone=bert_tiny_en_uncased",
                                                                   "could not be fetched", "--backbone=DIR"]),
    "too many top blocks": (dict(freeze="top_k:5"), ["--freeze=top_k:5", "(2)"]),
    "sequence too long": (dict(sequence_length=64), ["--sequence_length=64", "maximum", "(32)"]),
    "unknown gate metric": (dict(min_metric="f1:0.9"), ["--min_metric='f1:0.9'", "unknown metric 'f1'", "macro_f1"]),
    "gate metric of another task": (dict(min_metric="roc_auc:0.9"), ["--min_metric=roc_auc:0.9", "binary tasks only"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_flags(case, base, tmp_path):
  overrides, needles = CASES[case]
  proc = run_tfft("train", base(**overrides))
  _assert_user_error(proc, *needles)
  assert not (tmp_path / "run").exists()
  assert not (tmp_path / "exports").exists()


def test_csv_without_the_named_column(base, tmp_path):
  path = _table(tmp_path, "d.csv", "body,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(12)))
  proc = run_tfft("train", base(dataset=f"csv:{path}"))
  _assert_user_error(proc, "--text_column='text'", "body, label")


def test_one_class(base, tmp_path):
  path = _table(tmp_path, "d.csv", "text,label\n" + "".join(f"cat {i},a\n" for i in range(12)))
  _assert_user_error(run_tfft("train", base(dataset=f"csv:{path}")), "only class 'a'", "at least two")


def test_class_too_small_to_split(base, tmp_path):
  rows = [f"cat {i},a\n" for i in range(12)] + ["dog,b\n", "dog two,b\n"]
  path = _table(tmp_path, "d.csv", "text,label\n" + "".join(rows))
  _assert_user_error(run_tfft("train", base(dataset=f"csv:{path}")), "class 'b' has 2 example(s)", "at least 3")


def test_empty_text(base, tmp_path):
  rows = [f"cat {i},{'ab'[i % 2]}\n" for i in range(12)] + ['"  ",a\n']
  path = _table(tmp_path, "d.csv", "text,label\n" + "".join(rows))
  _assert_user_error(run_tfft("train", base(dataset=f"csv:{path}")), "row:13", "empty text")


def test_unknown_flag_and_missing_flagfile(base, tmp_path):
  proc = run_tfft("train", base() + ["--no_such_flag=1"])
  assert proc.returncode == 2 and "no_such_flag" in proc.stderr and "Traceback" not in proc.stderr
  proc = run_tfft("train", [f"--flagfile={tmp_path / 'missing.cfg'}"])
  assert proc.returncode == 2 and "missing.cfg" in proc.stderr and "Traceback" not in proc.stderr


def test_stray_argument(base):
  proc = run_tfft("train", base() + ["extra"])
  assert proc.returncode == 2 and "unexpected arguments ['extra']" in proc.stderr
