"""Command: python -m tfft.search --flagfile=configs/quickstart.cfg --space=space.txt --trials=N
[--search_dir=runs/search] [--search_algorithm=random] (KerasTuner over train flags, judged on validation; the test
split scored once, for the best trial)."""

from absl import app

from tfft import flags as tfft_flags
from tfft.errors import UserError

PROG = "tfft.search"
FLAGS = tfft_flags.FLAGS


def main(argv):
  def body():
    if not FLAGS.space:
      raise UserError("--space is required: a file naming the flags to search and their ranges (docs/methods.md)")
    config = tfft_flags.config_from_flags()
    from tfft.fit import tuning as search  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow)
    return search.format_result(search.run_search(config, space_file=FLAGS.space, trials=FLAGS.trials,
                                                  search_dir=FLAGS.search_dir, algorithm=FLAGS.search_algorithm))

  tfft_flags.run_command(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
