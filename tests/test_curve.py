"""tfft.curve: the sizes it reads, the table and files it writes from fixed points, and one tiny run end to end."""

import csv
import json

import pytest

from conftest import run_tfft, tiny_flags
from tfft.errors import UserError
from tfft.fit import learning_curve as curve


def test_sizes_are_positive_counts_or_all():
  assert curve.parse_sizes(["16", "64", "all"]) == [16, 64, 0]
  for bad in (["0"], ["-4"], ["some"], []):
    with pytest.raises(UserError, match="--train_sizes"):
      curve.parse_sizes(bad)


def _rows():
  rows = []
  for size, train, model, base, verdict in ((16, 32, (0.60, 0.64, 0.62), (0.52, 0.55, 0.50), "better"),
                                            ("all", 8966, (0.84, 0.85, 0.86), (0.79, 0.78, 0.80), "better")):
    for seed in range(3):
      rows.append({"examples_per_class": size, "seed": seed, "classes": 2, "train_examples": train,
                   "model_accuracy": model[seed], "baseline_accuracy": base[seed],
                   "difference": model[seed] - base[seed], "difference_low": 0.01, "difference_high": 0.2,
                   "verdict": verdict if seed else "no clear difference", "model_macro_f1": 0.0,
                   "baseline_macro_f1": 0.0})
  return rows


def test_table_gives_each_arms_mean_and_range_and_the_difference_over_seeds():
  lines = curve.format_table(_rows()).splitlines()
  assert len(lines) == 3
  assert lines[1].split()[:2] == ["16", "32"]
  assert "0.6200 [0.6000, 0.6400]" in lines[1] and "0.5233 [0.5000, 0.5500]" in lines[1]
  assert "+0.0967" in lines[1] and lines[1].endswith("2/3")
  assert lines[2].split()[:2] == ["all", "8966"] and "0.8500 [0.8400, 0.8600]" in lines[2]


def test_files_hold_every_point_and_the_plot(tmp_path):
  curve.write_curve(tmp_path, _rows())
  rows = list(csv.DictReader((tmp_path / curve.CURVE_CSV).open()))
  assert len(rows) == 6 and tuple(rows[0]) == curve.COLUMNS
  assert rows[3]["examples_per_class"] == "all" and float(rows[3]["model_accuracy"]) == 0.84
  assert (tmp_path / curve.CURVE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_sizes_are_one_line_and_exit_2(tmp_path):
  proc = run_tfft("curve", ["--train_sizes=8,lots", f"--curve_dir={tmp_path}"])
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert "tfft.curve: error: --train_sizes=8,lots: 'lots' is not a number" in proc.stderr


def test_tiny_curve_trains_each_point_beside_its_baseline_and_resumes(tiny_bert_preset, tiny_textdir, tmp_path):
  flags = [f for f in tiny_flags(tiny_bert_preset, tiny_textdir, tmp_path) if not f.startswith("--seed=")]
  args = flags + ["--train_sizes=4,all", "--seeds=1", f"--curve_dir={tmp_path / 'curve'}", "--epochs=1"]
  proc = run_tfft("curve", args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = list(csv.DictReader((tmp_path / "curve" / curve.CURVE_CSV).open()))
  assert [(r["examples_per_class"], r["seed"], r["train_examples"]) for r in rows] == [("4", "0", "12"),
                                                                                       ("all", "0", "36")]
  for row in rows:
    metrics = json.loads((tmp_path / "curve" / "runs" / f"{row['examples_per_class']}-seed0" /
                          "metrics.json").read_text())
    assert float(row["baseline_accuracy"]) == metrics["baseline"]["accuracy"]  # same split, same draw
  assert "per class" in proc.stdout and (tmp_path / "curve" / curve.CURVE_PNG).is_file()
  again = run_tfft("curve", args)  # every point finished: read back, nothing trained
  assert again.returncode == 0 and "finished in an earlier run" in again.stderr, again.stderr[-2000:]
  table = lambda out: out.splitlines()[-4:]  # the header, a row per size and the files (Keras logs epochs above)
  assert table(again.stdout) == table(proc.stdout) and table(proc.stdout)[0].split()[:2] == ["per", "class"]
