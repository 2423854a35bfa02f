"""Command: python -m tfft.predict --model=saved_models/NAME/VERSION INPUT… (texts, TEXT_A<TAB>TEXT_B pairs, or
image paths and globs)."""

from absl import app

from tfft import flags as tfft_flags
from tfft.errors import UserError
from tfft.serving import loaded

PROG = "tfft.predict"
FLAGS = tfft_flags.FLAGS


def main(argv):
  def body():
    if not FLAGS.model:
      raise UserError("--model is required: an export dir (EXPORT_DIR/NAME/VERSION) or a run dir")
    if FLAGS.top_k < 1:
      raise UserError(f"--top_k={FLAGS.top_k}: must be >= 1")
    from tfft.fit import scoring  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow, after the flags)
    values = scoring.read_inputs(argv[1:], input_file=FLAGS.input_file)
    rows = scoring.predict_export(FLAGS.model, values, top_k=FLAGS.top_k)
    if FLAGS.format == "json":
      return scoring.format_json(rows)
    export = loaded.locate(FLAGS.model)[0]
    return scoring.format_table(rows, target=scoring.kind_of(loaded.read_meta(export), export))

  tfft_flags.run_command(PROG, argv, body, takes_arguments=True)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
