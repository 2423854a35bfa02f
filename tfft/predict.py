"""Entry point: python -m tfft.predict --model=saved_models/NAME/VERSION INPUT… (texts, or image paths and globs)."""

from absl import app, flags

from tfft import flags as tfft_flags
from tfft.errors import UserError, run_entry_point

PROG = "tfft.predict"
flags.DEFINE_string("model", None, "Export dir (EXPORT_DIR/NAME/VERSION), model base dir (its highest version) or run dir.")
flags.DEFINE_integer("top_k", 3, "Classes to show per input.")
flags.DEFINE_enum("format", "table", ("table", "json"), "Output: a table, or JSON.")
flags.DEFINE_string("input_file", None, "A file with one input per line (text, or image path).")
FLAGS = flags.FLAGS


def main(argv):
  def body():
    if not FLAGS.model:
      raise UserError("--model is required: an export dir (EXPORT_DIR/NAME/VERSION) or a run dir")
    if FLAGS.top_k < 1:
      raise UserError(f"--top_k={FLAGS.top_k}: must be >= 1")
    tfft_flags.reject_train_flags(PROG, ())
    from tfft import prediction  # pylint: disable=g-import-not-at-top
    values = prediction.read_inputs(argv[1:], input_file=FLAGS.input_file)
    rows = prediction.predict(FLAGS.model, values, top_k=FLAGS.top_k)
    return prediction.format_json(rows) if FLAGS.format == "json" else prediction.format_table(rows)

  run_entry_point(PROG, argv, body, takes_arguments=True)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
