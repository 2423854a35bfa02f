"""Golden numbers for the LR schedules, worked out by hand from their formulas, and the warmup's config round trip."""

import keras
import pytest

from tfft.fit import schedules
from tfft.errors import UserError

STEPS = (0, 1, 2, 6, 9)

# peak=1.0, total_steps=10, warmup_steps=2, steps_per_epoch=5, decay_rate=0.5, alpha=0, restart_epochs=1.
# Warmup: step s < 2 gives peak * (s + 1) / 2, so 0.5 then 1.0. From step 2 on, the decay sees t = s - 2 over
# decay_steps = 10 - 2 = 8 (exponential and cosine_restarts key on steps_per_epoch = 5 instead).
WITH_WARMUP = {
    "constant": (0.5, 1.0, 1.0, 1.0, 1.0),
    # 0.5 ** (t / 5): t=4 → 0.5 ** 0.8 = 0.574349177; t=7 → 0.5 ** 1.4 = 0.378929142.
    "exponential": (0.5, 1.0, 1.0, 0.574349177, 0.378929142),
    # (1 + cos(pi * t / 8)) / 2: t=4 → (1 + 0) / 2 = 0.5; t=7 → (1 - 0.923879533) / 2 = 0.038060234.
    "cosine": (0.5, 1.0, 1.0, 0.5, 0.038060234),
    # First cycle 5 steps, then 10 (t_mul=2): t=4 → (1 + cos(pi * 4/5)) / 2 = (1 - 0.809016994) / 2 = 0.095491503;
    # t=7 is 2 steps into the 10-step second cycle → (1 + cos(pi * 0.2)) / 2 = (1 + 0.809016994) / 2 = 0.904508497.
    "cosine_restarts": (0.5, 1.0, 1.0, 0.095491503, 0.904508497),
    # 1 - t / 8: t=4 → 0.5; t=7 → 0.125.
    "linear": (0.5, 1.0, 1.0, 0.5, 0.125),
}

# Same, with warmup_steps=0: the decay sees t = s over decay_steps = 10.
WITHOUT_WARMUP = {
    "constant": (1.0, 1.0, 1.0, 1.0, 1.0),
    # 0.5 ** (s / 5): 0.5 ** 0.2 = 0.870550563, 0.5 ** 0.4 = 0.757858283, 0.5 ** 1.2 = 0.435275282,
    # 0.5 ** 1.8 = 0.287174589.
    "exponential": (1.0, 0.870550563, 0.757858283, 0.435275282, 0.287174589),
    # (1 + cos(pi * s / 10)) / 2: cos 18° = 0.951056516, cos 36° = 0.809016994, cos 108° = -0.309016994,
    # cos 162° = -0.951056516.
    "cosine": (1.0, 0.975528258, 0.904508497, 0.345491503, 0.024471742),
    # s=1, 2 in the 5-step first cycle: (1 + cos 36°) / 2, (1 + cos 72°) / 2 = (1 + 0.309016994) / 2 = 0.654508497.
    # s=6, 9 are 1 and 4 steps into the 10-step second cycle: (1 + cos 18°) / 2, (1 + cos 72°) / 2.
    "cosine_restarts": (1.0, 0.904508497, 0.654508497, 0.975528258, 0.654508497),
    # 1 - s / 10.
    "linear": (1.0, 0.9, 0.8, 0.4, 0.1),
}


def _build(kind, warmup_steps, **kwargs):
  return schedules.build_schedule(kind, peak=1.0, total_steps=10, warmup_steps=warmup_steps, steps_per_epoch=5,
                                  **kwargs)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["int", "tensor"])
@pytest.mark.parametrize("warmup_steps,table", [(2, WITH_WARMUP), (0, WITHOUT_WARMUP)], ids=["warmup", "no_warmup"])
@pytest.mark.parametrize("kind", sorted(WITH_WARMUP))
def test_golden(kind, warmup_steps, table, as_tensor):
  schedule = _build(kind, warmup_steps)
  got = [float(schedule(keras.ops.convert_to_tensor(s) if as_tensor else s)) for s in STEPS]
  assert got == pytest.approx(table[kind], abs=1e-6)


@pytest.mark.parametrize("kind,step,expected", [
    # alpha=0.1 with warmup 2: the decay floor is 0.1 of peak.
    ("linear", 6, 0.55),  # (1 - 0.1) * (1 - 4/8) + 0.1.
    ("linear", 10, 0.1),  # End of the phase: peak * alpha.
    ("linear", 50, 0.1),  # Past the end it stays at the floor.
    ("cosine", 6, 0.55),  # (1 - 0.1) * (1 + cos(pi/2)) / 2 + 0.1.
    ("cosine", 10, 0.1),
    ("cosine_restarts", 6, 0.185942353),  # (1 - 0.1) * 0.095491503 + 0.1.
])
def test_alpha_sets_the_floor(kind, step, expected):
  assert float(_build(kind, 2, alpha=0.1)(step)) == pytest.approx(expected, abs=1e-6)


def test_exponential_decay_rate_is_per_epoch():
  schedule = _build("exponential", 0, decay_rate=0.25)
  assert float(schedule(5)) == pytest.approx(0.25, abs=1e-6)  # One epoch of 5 steps: 0.25 ** 1.
  assert float(schedule(10)) == pytest.approx(0.0625, abs=1e-6)  # 0.25 ** 2.


def test_peak_scales_every_value():
  schedule = schedules.build_schedule("linear", peak=3e-5, total_steps=10, warmup_steps=2, steps_per_epoch=5)
  assert [float(schedule(s)) for s in STEPS] == pytest.approx([3e-5 * v for v in WITH_WARMUP["linear"]], rel=1e-5)


def test_unknown_kind():
  with pytest.raises(UserError, match="^--lr_schedule='step'"):
    _build("step", 2)


@pytest.mark.parametrize("kind", sorted(WITH_WARMUP))
def test_linear_warmup_config_round_trip(kind):
  schedule = _build(kind, 2, alpha=0.1)
  assert isinstance(schedule, schedules.LinearWarmup)
  config = schedule.get_config()
  assert config["peak"] == 1.0 and config["warmup_steps"] == 2
  restored = schedules.LinearWarmup.from_config(config)
  assert type(restored.after) is type(schedule.after)
  assert [float(restored(s)) for s in STEPS] == pytest.approx([float(schedule(s)) for s in STEPS], abs=1e-7)
  assert restored.get_config() == config


def test_linear_warmup_survives_keras_serialization():
  schedule = _build("cosine", 2)
  restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
  assert isinstance(restored, schedules.LinearWarmup)
  assert [float(restored(s)) for s in STEPS] == pytest.approx(WITH_WARMUP["cosine"], abs=1e-6)
