"""The benchmark's arithmetic (bench/stats.py): spreads, paired ratios and their verdict, interleaving, step counts."""

import importlib.util

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("bench_stats", REPO / "bench" / "stats.py")
stats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stats)


def test_spread_is_median_min_max():
  s = stats.spread([3.0, 1.0, 2.0, 10.0])
  assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 10.0, 4)
  assert stats.format_spread(stats.spread([1.0, 1.234, 0.9])) == "1.00 (0.90–1.23)"
  with pytest.raises(ValueError):
    stats.spread([])


def test_paired_ratio_verdict_needs_every_pair_on_one_side_of_one():
  assert stats.paired_ratio([2.0, 2.2, 2.1], [1.0, 1.0, 1.0])["verdict"] == "higher"
  assert stats.paired_ratio([0.5, 0.6, 0.7], [1.0, 1.0, 1.0])["verdict"] == "lower"
  mixed = stats.paired_ratio([1.1, 0.9, 1.3], [1.0, 1.0, 1.0])
  assert mixed["verdict"] == stats.NO_CLEAR_DIFFERENCE
  assert mixed["median"] == pytest.approx(1.1) and mixed["min"] == pytest.approx(0.9)
  # Pairs are taken in order: the medians' ratio (1.0) would hide that each pair differs.
  assert stats.paired_ratio([1.0, 4.0], [2.0, 8.0])["verdict"] == "lower"
  with pytest.raises(ValueError):
    stats.paired_ratio([1.0], [1.0, 2.0])


def test_ranges_agree_when_they_overlap():
  a, b, c = stats.spread([1.0, 1.2]), stats.spread([1.15, 1.4]), stats.spread([1.3, 1.5])
  assert stats.agree(a, b) and stats.agree(b, c) and not stats.agree(a, c)


def test_interleave_alternates_the_contenders():
  order = []
  out = stats.interleave({"A": lambda: order.append("A") or 1, "B": lambda: order.append("B") or 2}, 3,
                         log=lambda _: None)
  assert order == ["A", "B"] * 3 and out == {"A": [1, 1, 1], "B": [2, 2, 2]}


def test_interleave_into_keeps_what_was_measured_before_a_failure():
  runs = iter([1, 2, 3])
  def b():
    value = next(runs)
    if value == 3:
      raise RuntimeError("B's second run failed")
    return value
  kept = {"earlier": [7]}
  with pytest.raises(RuntimeError):
    stats.interleave({"A": lambda: 0, "B": b}, 3, log=lambda _: None, into=kept)
  # B's third run fails after A's third is in.
  assert kept == {"earlier": [7], "A": [0, 0, 0], "B": [1, 2]}


def test_steady_counter_leaves_out_warmup_the_time_between_epochs_and_each_epoch_start():
  c = stats.SteadyCounter(warmup_steps=4, min_seconds=5)
  c.epoch_begin(0.0, 0)
  assert not c.step_end(10.0, 4, 0)  # the first execution (4 steps, tracing): left out
  assert not c.step_end(12.0, 8, 0)  # 4 steps in 2 s: steady
  c.epoch_begin(20.0, 8)  # validation ran from 12 to 20: left out
  assert not c.step_end(33.0, 12, 0)  # a new epoch's first call waited 11 s more: kept apart
  assert c.step_end(36.0, 16, 0)  # 5 s of steady steps: stop
  assert (c.steps, c.seconds) == (8, 5.0)
  assert c.examples_per_sec(32) == pytest.approx(8 * 32 / 5)
  assert (c.start_steps, c.start_seconds) == ([4], [13.0])
  assert c.epoch_start_extra_seconds() == pytest.approx([13.0 - 4 * 5 / 8])
  assert c.examples_per_sec_with_epoch_starts(32) == pytest.approx(12 * 32 / 18)


def test_steady_counter_counts_an_epoch_of_one_call_and_stops():
  # One execution per epoch (4 steps, steps_per_execution=4): every later call is an epoch's first and only one.
  c = stats.SteadyCounter(warmup_steps=4, min_seconds=5)
  stop = False
  for epoch in range(20):
    c.epoch_begin(10.0 * epoch, 4 * epoch)
    assert not c.step_end(10.0 * epoch + 3.0, 4 * epoch + 4, 0)
    stop = c.epoch_end()
    if stop:
      break
  assert stop and epoch == 2  # epochs 1 and 2 counted: 6 s of steady steps
  assert (c.steps, c.seconds, c.start_steps) == (8, 6.0, [])


def test_step_clock_counts_optimizer_steps_under_steps_per_execution():
  import keras
  import numpy as np

  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  model.compile("sgd", "mse", steps_per_execution=4)
  clock = stats.step_clock(keras, batch_size=8, warmup_steps=4, min_seconds=1e9)
  model.fit(np.ones((64, 4)), np.ones((64, 2)), batch_size=8, epochs=2, verbose=0, callbacks=[clock])
  # 8 steps per epoch in 2 executions each; the first execution of the fit is warm-up, the first of the second
  # epoch is its epoch start.
  result = clock.result()
  assert (result["steps"], result["epoch_starts"]) == (8, 1)
  assert int(model.optimizer.iterations.numpy()) == 16
  # An epoch of one execution: its steps are counted, and the fit stops once min_seconds are.
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
  model.compile("sgd", "mse", steps_per_execution=4)
  clock = stats.step_clock(keras, batch_size=8, warmup_steps=4, min_seconds=1e-9)
  model.fit(np.ones((32, 4)), np.ones((32, 2)), batch_size=8, epochs=50, verbose=0, callbacks=[clock])
  assert int(model.optimizer.iterations.numpy()) == 8 and clock.result()["steps"] == 4


def test_a_goal_is_met_only_by_the_whole_range():
  s = stats.spread([0.9, 1.0, 1.1])
  assert [stats.meets(s, g) for g in (0.85, 1.0, 1.2)] == ["yes", "within spread", "no"]
  assert [stats.meets(s, g, ceiling=True) for g in (1.2, 1.0, 0.8)] == ["yes", "within spread", "no"]


def test_the_quick_bench_summary_pairs_runs_and_compares_with_the_previous_run():
  spec = importlib.util.spec_from_file_location("bench_quick", REPO / "bench" / "quick.py")
  quick = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(quick)
  m = {"tfft_finetune": [{"examples_per_sec": v} for v in (10.0, 11.0, 9.0)],
       "keras_raw": [{"examples_per_sec": v} for v in (10.0, 10.0, 10.0)],
       "frozen_head_cached": [{"examples_per_sec": v} for v in (60.0, 66.0, 54.0)],
       "mfu_fp32": [0.5, 0.55, 0.45]}
  first = quick.summarize({}, m)
  assert first["figures"]["p1_fp32"]["verdict"] == stats.NO_CLEAR_DIFFERENCE
  assert first["figures"]["p3_cache"]["median"] == pytest.approx(6.0)
  assert first["figures"]["p3_cache"]["met"] == "yes" and first["figures"]["p7_mfu_fp32"]["met"] == "no"
  assert "p4_short_auto" not in first["figures"]  # not measured: not reported
  m["keras_raw"] = [{"examples_per_sec": v} for v in (5.0, 5.0, 5.0)]
  second = quick.summarize({}, m, previous=first)
  assert second["figures"]["p1_fp32"]["verdict"] == "higher"
  assert second["agreement_with_previous"] == {"p1_fp32": False, "p3_cache": True, "p7_mfu_fp32": True}


def test_the_fused_gelu_of_the_mfu_experiment_matches_keras_and_its_gradient():
  spec = importlib.util.spec_from_file_location("bench_step_variants", REPO / "bench" / "step_variants.py")
  variants = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(variants)
  check = variants.check_gelu(variants.fused_gelu())
  assert check["max_abs_diff"] < 1e-5 and check["max_abs_grad_diff"] < 1e-4


def test_peak_rss_is_the_commands_own_not_the_measuring_process():
  import sys
  spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
  run = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(run)
  held = b"\x01" * (800 * 2**20)  # this process holds 800 MB (written, so resident), as the benchmark holds models
  out, rss_mb = run._peak_rss_mb([sys.executable, "-c", "print('ok')"])  # pylint: disable=protected-access
  assert out.strip() == "ok" and rss_mb < 200, rss_mb
  del held
  with pytest.raises(RuntimeError, match="failed"):
    run._peak_rss_mb([sys.executable, "-c", "raise SystemExit(3)"])  # pylint: disable=protected-access
