"""Command: python -m tfft.train --flagfile=configs/quickstart.cfg (fine-tune, evaluate, export)."""

import sys
import types

from absl import app

from tfft import flags as tfft_flags

PROG = "tfft.train"


class _Command(types.ModuleType):
  """This module, callable: importing it as a submodule rebinds the package's `tfft.train` from the Python API's
  function to the module, so the module calls that function and `tfft.train(config)` keeps working."""

  def __call__(self, config, *, strategy=None):
    import tfft  # pylint: disable=g-import-not-at-top
    return tfft.run_train_job(config, strategy=strategy)


sys.modules[__name__].__class__ = _Command


def main(argv):
  def body():
    config = tfft_flags.config_from_flags()
    from tfft.fit import job  # pylint: disable=g-import-not-at-top  (TensorFlow: after the flags are checked)
    from tfft.report import summary  # pylint: disable=g-import-not-at-top
    from tfft.tasks import registry  # pylint: disable=g-import-not-at-top
    result = job.run(config)
    return summary.format_summary(result, registry.target(result.task))

  tfft_flags.run_command(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
