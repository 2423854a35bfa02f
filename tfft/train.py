"""Entry point: python -m tfft.train --flagfile=configs/quickstart.cfg (fine-tune, evaluate, export)."""

from absl import app

from tfft import flags as tfft_flags
from tfft import pipeline
from tfft.errors import run_entry_point

PROG = "tfft.train"


def main(argv):
  def body():
    config = tfft_flags.config_from_flags()
    return pipeline.format_summary(pipeline.run(config, flagfile=tfft_flags.serialize()))

  run_entry_point(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
