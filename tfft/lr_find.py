"""Command: python -m tfft.lr_find --flagfile=configs/quickstart.cfg [--lr_find_dir=runs/lr_find] (the LR range
test on the fine-tuning phase: loss vs LR, lr_find.png, and the --learning_rate line to paste)."""

from absl import app

from tfft import flags as tfft_flags

PROG = "tfft.lr_find"
FLAGS = tfft_flags.FLAGS


def main(argv):
  def body():
    config = tfft_flags.config_from_flags()
    from tfft.fit import lr_range as lr_find  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow)
    result = lr_find.run_lr_find(config, FLAGS.lr_find_dir, steps=FLAGS.lr_find_steps, lr_min=FLAGS.lr_min,
                                 lr_max=FLAGS.lr_max)
    return "\n".join([
        f"lr_find:  {len(result.losses)} steps from {result.learning_rates[0]:.2g} to {result.learning_rates[-1]:.2g}; "
        f"lowest smoothed loss {min(result.smoothed):.4f} at {result.lowest_loss_lr:.3g}",
        f"curve:    {result.out_dir}/{lr_find.LR_FIND_PNG}, {lr_find.LR_FIND_CSV}",
        "suggested (a tenth of the lowest-loss LR):",
        f"--learning_rate={result.suggested:.2g}"])

  tfft_flags.run_command(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
