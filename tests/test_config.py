"""Tests for config validation, --freeze and --dataset parsing, and flags → Config → flagfile → Config."""

import dataclasses
import math
import re

import pytest

from tfft import config, config_checks
from tfft.tasks import registry
from tfft import flags as f
from tfft.errors import UserError


def _with(section, **changes):
  """A default Config with some fields of one section (data, model, train, run) replaced."""
  base = config.Config()
  return dataclasses.replace(base, **{section: dataclasses.replace(getattr(base, section), **changes)})


# (section, changes, the start of the message: the flag that validate() must name and the value it echoes).
BAD = [
    ("data", dict(dataset="nope"), "--dataset='nope'"),
    ("data", dict(dataset="textdir:"), "--dataset='textdir:'"),
    ("data", dict(dataset="hdf5:imdb"), "--dataset='hdf5:imdb'"),
    ("data", dict(val_fraction=0.0), "--val_fraction=0.0"),
    ("data", dict(val_fraction=1.0), "--val_fraction=1.0"),
    ("data", dict(val_fraction=-0.1), "--val_fraction=-0.1"),
    ("data", dict(val_fraction=math.nan), "--val_fraction=nan"),
    ("data", dict(test_fraction=0.0), "--test_fraction=0.0"),
    ("data", dict(test_fraction=1.5), "--test_fraction=1.5"),
    ("data", dict(val_fraction=0.5, test_fraction=0.5), "--val_fraction=0.5"),
    ("data", dict(val_fraction=0.3, test_fraction=0.8), "--val_fraction=0.3"),
    ("data", dict(examples_per_class=-1), "--examples_per_class=-1"),
    ("data", dict(text_column=""), "--text_column=''"),
    ("data", dict(label_column=""), "--label_column=''"),
    ("model", dict(backbone=""), "--backbone=''"),
    ("model", dict(sequence_length=7), "--sequence_length=7"),
    ("model", dict(eval_windows=0), "--eval_windows=0"),
    ("model", dict(train_windows=0), "--train_windows=0"),
    ("model", dict(pooling="max"), "--pooling='max'"),
    ("model", dict(head_units=(64, 0)), "--head_units='64,0'"),
    ("model", dict(head_units=(-1,)), "--head_units='-1'"),
    ("model", dict(dropout=-0.1), "--dropout=-0.1"),
    ("model", dict(dropout=1.0), "--dropout=1.0"),
    ("model", dict(l1=-0.1), "--l1=-0.1"),
    ("model", dict(l2=-1.0), "--l2=-1.0"),
    ("train", dict(batch_size=0), "--batch_size=0"),
    ("train", dict(batch_size=-8), "--batch_size=-8"),
    ("train", dict(head_epochs=-1), "--head_epochs=-1"),
    ("train", dict(epochs=-1), "--epochs=-1"),
    ("train", dict(head_epochs=0, epochs=0), "--epochs=0"),
    ("train", dict(freeze=config.Freeze("all")), "--freeze='all'"),  # The default --epochs=3 would train nothing new.
    ("train", dict(head_learning_rate=0.0), "--head_learning_rate=0.0"),
    ("train", dict(head_learning_rate=math.nan), "--head_learning_rate=nan"),
    ("train", dict(learning_rate=-1e-5), "--learning_rate=-1e-05"),
    ("train", dict(warmup_fraction=1.0), "--warmup_fraction=1.0"),
    ("train", dict(warmup_fraction=-0.1), "--warmup_fraction=-0.1"),
    ("train", dict(optimizer="rmsprop"), "--optimizer='rmsprop'"),
    ("train", dict(weight_decay=-0.01), "--weight_decay=-0.01"),
    ("train", dict(momentum=1.0), "--momentum=1.0"),
    ("train", dict(momentum=-0.5), "--momentum=-0.5"),
    ("train", dict(clipnorm=-1.0), "--clipnorm=-1.0"),
    ("train", dict(lr_schedule="step"), "--lr_schedule='step'"),
    ("train", dict(lr_decay_rate=0.0), "--lr_decay_rate=0.0"),
    ("train", dict(lr_decay_rate=1.5), "--lr_decay_rate=1.5"),
    ("train", dict(lr_alpha=-0.1), "--lr_alpha=-0.1"),
    ("train", dict(lr_alpha=1.1), "--lr_alpha=1.1"),
    ("train", dict(lr_restart_epochs=0), "--lr_restart_epochs=0"),
    ("train", dict(label_smoothing=1.0), "--label_smoothing=1.0"),
    ("train", dict(label_smoothing=-0.1), "--label_smoothing=-0.1"),
    ("train", dict(monitor="accuracy"), "--monitor='accuracy'"),
    ("train", dict(early_stopping_patience=-1), "--early_stopping_patience=-1"),
    ("train", dict(strategy="gpu"), "--strategy='gpu'"),
    ("train", dict(strategy="tpu", tpu=""), "--tpu=''"),
    ("train", dict(mixed_precision="float16"), "--mixed_precision='float16'"),
    ("train", dict(steps_per_execution=0), "--steps_per_execution=0"),
    ("train", dict(padding="none"), "--padding='none'"),
    ("train", dict(pad_to_multiple_of=0), "--pad_to_multiple_of=0"),
    ("train", dict(profile_batches=(5, 3)), "--profile_batches='5,3'"),
    ("train", dict(profile_batches=(0, 2)), "--profile_batches='0,2'"),
    ("train", dict(profile_batches=(3,)), "--profile_batches='3'"),
    ("run", dict(model_dir=""), "--model_dir=''"),
    ("run", dict(export_dir=""), "--export_dir=''"),
    ("run", dict(name=""), "--name=''"),
    ("run", dict(name="a/b"), "--name='a/b'"),
    ("run", dict(name=".hidden"), "--name='.hidden'"),
    ("run", dict(name="my model"), "--name='my model'"),
]


@pytest.mark.parametrize("section,changes,prefix", BAD, ids=[p for _, _, p in BAD])
def test_validate_names_the_bad_flag(section, changes, prefix):
  with pytest.raises(UserError) as e:
    registry.validate(_with(section, **changes))
  assert str(e.value).startswith(prefix), str(e.value)
  assert "\n" not in str(e.value)


def test_default_config_validates_and_chains():
  c = config.Config()
  assert registry.validate(c) is c


# Values on the accepting side of each bound: validate() must not be stricter than its messages say.
EDGE_GOOD = [
    ("data", dict(dataset="textdir:/some/dir")),
    ("data", dict(dataset="csv:rel/path.tsv")),
    ("data", dict(val_fraction=0.4, test_fraction=0.5)),
    ("data", dict(examples_per_class=0)),
    ("model", dict(sequence_length=8, pooling="mean", head_units=(512, 128), dropout=0.0, l1=0.0, l2=1e-4)),
    ("train", dict(head_epochs=0, epochs=1)),
    ("train", dict(head_epochs=1, epochs=0)),
    ("train", dict(freeze=config.Freeze("all"), epochs=0)),
    ("train", dict(freeze=config.Freeze("top_k", 2))),
    ("train", dict(warmup_fraction=0.0, weight_decay=0.0, momentum=0.0, clipnorm=0.0, label_smoothing=0.0)),
    ("train", dict(lr_decay_rate=1.0, lr_alpha=1.0, lr_restart_epochs=1, early_stopping_patience=0)),
    ("train", dict(strategy="tpu", tpu="local")),
    ("train", dict(optimizer="sgd", lr_schedule="cosine_restarts", monitor="val_loss")),
    ("run", dict(name="bert-base_v1.2")),
]


@pytest.mark.parametrize("section,changes", EDGE_GOOD)
def test_validate_accepts_values_on_the_bounds(section, changes):
  registry.validate(_with(section, **changes))


@pytest.mark.parametrize("field", ["l1", "l2", "weight_decay", "clipnorm"])
def test_validate_rejects_nan(field):
  section = "model" if field in ("l1", "l2") else "train"
  with pytest.raises(UserError, match=f"^--{field}="):
    registry.validate(_with(section, **{field: math.nan}))


@pytest.mark.parametrize("value,expected", [
    ("all", config.Freeze("all")),
    ("none", config.Freeze("none")),
    ("top_k:3", config.Freeze("top_k", 3)),
    (" top_k:12 ", config.Freeze("top_k", 12)),
])
def test_parse_freeze(value, expected):
  assert config.parse_freeze(value) == expected
  assert str(config.parse_freeze(value)) == value.strip()


@pytest.mark.parametrize("value", ["top_k:0", "top_k:x", "some", "top_k:", "top_k:-1", "top_k:1.5", "", "ALL"])
def test_parse_freeze_rejects(value):
  with pytest.raises(UserError, match="^--freeze="):
    config.parse_freeze(value)


@pytest.mark.parametrize("spec,expected", [
    ("bbc_news", ("bbc_news", None)),
    ("textdir:/data/news", ("textdir", "/data/news")),
    ("csv:train.tsv", ("csv", "train.tsv")),
    ("csv:/data/a:b.csv", ("csv", "/data/a:b.csv")),  # Only the first colon separates the scheme.
])
def test_split_dataset_spec(spec, expected):
  assert config.split_dataset_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "bbc", "textdir", "textdir:", "csv:", "tfds:", "hdf5:imdb", "digits:x", "/data/news", "bbc_news:x"])
def test_split_dataset_spec_rejects(spec):
  with pytest.raises(UserError, match="^--dataset="):
    config.split_dataset_spec(spec)


@pytest.fixture
def parse():
  """Parses argv into the global FLAGS, and resets them afterwards so no value leaks into the next test."""

  def _parse(*args):
    return f.FLAGS(["prog", *args])

  yield _parse
  f.FLAGS.unparse_flags()


def test_flag_defaults_match_config_defaults(parse):
  parse()
  assert f.config_from_flags() == config.Config()


def test_config_from_flags(parse, tmp_path):
  parse(f"--dataset=textdir:{tmp_path}", "--head_units=256,64", "--freeze=top_k:2", "--batch_size=8",
        "--lr_schedule=cosine", "--learning_rate=2e-5", "--name=news", "--overwrite")
  c = f.config_from_flags()
  assert c.data.dataset == f"textdir:{tmp_path}"
  assert c.model.head_units == (256, 64)
  assert c.train.freeze == config.Freeze("top_k", 2)
  assert c.train.batch_size == 8
  assert c.train.lr_schedule == "cosine"
  assert c.train.learning_rate == 2e-5
  assert c.run.name == "news"
  assert c.run.overwrite is True


@pytest.mark.parametrize("args,prefix", [
    (["--batch_size=0"], "--batch_size=0"),
    (["--head_units=64,x"], "--head_units='64,x'"),
    (["--head_units=64,0"], "--head_units='64,0'"),
    (["--freeze=some"], "--freeze='some'"),
    (["--val_fraction=0.5", "--test_fraction=0.5"], "--val_fraction=0.5"),
    (["--freeze=all"], "--freeze='all'"),
    (["--strategy=tpu"], "--tpu=''"),
    (["--dataset=imdb"], "--dataset='imdb'"),
])
def test_config_from_flags_names_the_bad_flag(parse, args, prefix):
  parse(*args)
  with pytest.raises(UserError) as e:
    f.config_from_flags()
  assert str(e.value).startswith(prefix), str(e.value)


def _round_trip(parse, tmp_path, *args):
  """Parses args, serializes the flags, and returns (config before, config re-parsed from the flagfile)."""
  parse(*args)
  before = f.config_from_flags()
  flagfile = tmp_path / "flags.cfg"
  flagfile.write_text(f.serialize(before), encoding="utf-8")
  f.FLAGS.unparse_flags()
  parse(f"--flagfile={flagfile}")
  return before, f.config_from_flags()


def test_serialize_round_trips_defaults(parse, tmp_path):
  before, after = _round_trip(parse, tmp_path)
  assert after == before == config.Config()


def test_serialize_round_trips_every_section(parse, tmp_path):
  before, after = _round_trip(
      parse, tmp_path,
      f"--dataset=csv:{tmp_path}/my data.tsv", "--text_column=body", "--label_column=topic", "--val_fraction=0.15",
      "--test_fraction=0.25", "--examples_per_class=7", "--backbone=hf://org/model", "--sequence_length=64",
      "--pooling=mean", "--head_units=512,128", "--dropout=0.3", "--l1=1e-06", "--l2=0.0001", "--batch_size=4",
      "--head_epochs=1", "--head_learning_rate=0.003", "--epochs=5", "--learning_rate=3e-05",
      "--warmup_fraction=0.06", "--freeze=top_k:4", "--optimizer=sgd", "--weight_decay=0.0",
      "--momentum=0.8", "--clipnorm=0", "--lr_schedule=cosine_restarts", "--lr_decay_rate=0.7",
      "--lr_alpha=0.05", "--lr_restart_epochs=2", "--label_smoothing=0.1", "--monitor=val_loss",
      "--early_stopping_patience=0", "--strategy=tpu", "--tpu=local", "--seed=7", f"--model_dir={tmp_path}/run",
      f"--export_dir={tmp_path}/export", "--name=news.v2")
  assert after == before
  assert before != config.Config()
  assert before.model.head_units == (512, 128) and before.train.freeze == config.Freeze("top_k", 4)


def test_serialize_leaves_out_overwrite(parse, tmp_path):
  before, after = _round_trip(parse, tmp_path, "--overwrite", "--batch_size=16")
  assert before.run.overwrite is True
  assert after.run.overwrite is False
  assert after.train.batch_size == 16
  assert "overwrite" not in f.serialize(before)


@pytest.mark.parametrize("flag", ["text_column", "label_column"])
def test_column_names_with_surrounding_spaces_are_rejected(flag):
  # absl strips flagfile lines, so such a value could not survive flags.cfg; headers are stripped instead.
  with pytest.raises(UserError, match=f"^--{flag}=' Text '"):
    registry.validate(config.Config(data=dataclasses.replace(config.DataConfig(), **{flag: " Text "})))


@pytest.mark.parametrize("dataset,model,prefix,says", [
    ("bbc_news", dict(image_size=32), "--image_size=32", "applies to image datasets only"),
    ("bbc_news", dict(flip="horizontal"), "--flip='horizontal'", "applies to image datasets only"),
    ("digits", dict(sequence_length=256), "--sequence_length=256", "applies to text datasets only"),
    ("digits", dict(eval_windows=2), "--eval_windows=2", "applies to text datasets only"),
    ("digits", dict(train_windows=2), "--train_windows=2", "applies to text datasets only"),
    ("digits", dict(pooling="cls"), "--pooling='cls'", "applies to text datasets only"),
])
def test_a_flag_of_the_other_modality_is_an_error_not_ignored(dataset, model, prefix, says):
  c = config.Config(data=config.DataConfig(dataset=dataset), model=config.ModelConfig(backbone="tiny_cnn", **model))
  with pytest.raises(UserError, match="^" + re.escape(prefix) + ".*" + re.escape(says)):
    registry.validate(c)
  registry.validate(dataclasses.replace(c, model=config.ModelConfig(backbone="tiny_cnn")))  # the defaults pass
