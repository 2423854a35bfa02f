"""Entry point: python -m tfft.train --flagfile=configs/quickstart.cfg (fine-tune, evaluate, export)."""

import sys

from absl import app

from tfft import flags as tfft_flags
from tfft import pipeline
from tfft.errors import Preempted, RunFailed, UserError

PROG = "tfft.train"


def main(argv):
  if len(argv) > 1:
    print(f"{PROG}: error: unexpected arguments {argv[1:]}; every setting is a --flag", file=sys.stderr)
    sys.exit(2)
  try:
    config = tfft_flags.config_from_flags()
    result = pipeline.run(config, flagfile=tfft_flags.serialize())
  except UserError as e:
    print(f"{PROG}: error: {e}", file=sys.stderr)
    sys.exit(2)
  except RunFailed as e:
    print(f"{PROG}: failed: {e}", file=sys.stderr)
    sys.exit(1)
  except Preempted as e:
    print(f"{PROG}: stopped: {e}", file=sys.stderr)
    sys.exit(143)
  print(pipeline.format_summary(result))


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
