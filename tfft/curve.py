"""Command: python -m tfft.curve --flagfile=configs/quickstart.cfg --train_sizes=16,64,256,all --seeds=3
--curve_dir=runs/curve (the train job at each size and seed, beside its baseline; the table and the curve)."""

from absl import app

from tfft import flags as tfft_flags
from tfft.errors import UserError

PROG = "tfft.curve"
FLAGS = tfft_flags.FLAGS


def main(argv):
  def body():
    if FLAGS.seeds < 1:
      raise UserError(f"--seeds={FLAGS.seeds}: give at least 1 (seeds 0 .. N-1 are run)")
    config = tfft_flags.config_from_flags()
    from tfft.fit import learning_curve as curve  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow)
    sizes = curve.parse_sizes(FLAGS.train_sizes)
    rows = curve.run_curve(config, FLAGS.curve_dir, sizes=sizes, seeds=range(FLAGS.seeds))
    return f"{curve.format_table(rows)}\ncurve:    {FLAGS.curve_dir}/{curve.CURVE_CSV}, {curve.CURVE_PNG}"

  tfft_flags.run_command(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
