"""Command: python -m tfft.train --flagfile=configs/quickstart.cfg (fine-tune, evaluate, export)."""

import sys
import types

from absl import app

from tfft import flags as tfft_flags
from tfft.report import summary
from tfft.tasks import registry

PROG = "tfft.train"


class _Command(types.ModuleType):
  """This module, callable. The Python API's `tfft.train` is tfft.fit.job.train, which the package re-exports; but
  importing this command module makes Python bind the package's `tfft.train` to the module, so the module hands a
  call on to that function and `tfft.train(config)` works either way."""

  def __call__(self, config, *, strategy=None):
    from tfft.fit import job  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow)
    return job.train(config, strategy=strategy)


sys.modules[__name__].__class__ = _Command


def main(argv):
  def body():
    config = tfft_flags.config_from_flags()
    from tfft.fit import job  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow, after the flags)
    result = job.run(config)
    return summary.format_summary(result, registry.target(result.task))

  tfft_flags.run_command(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
