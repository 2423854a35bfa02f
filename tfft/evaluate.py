"""Entry point: python -m tfft.evaluate --model=saved_models/NAME/VERSION [--dataset=…] [--split=test]."""

from absl import app, flags

from tfft import flags as tfft_flags
from tfft.config import DataConfig
from tfft.errors import UserError, run_entry_point

PROG = "tfft.evaluate"
_SHARED = ("dataset", "text_column", "label_column", "batch_size", "model_dir")
flags.DEFINE_string("model", None, "Export dir (EXPORT_DIR/NAME/VERSION), model base dir (its highest version) or run dir.")
flags.DEFINE_enum("split", "test", ("train", "val", "test", "all"),
                  "Split of the run's manifest to score, or all for every example of --dataset.")
flags.DEFINE_string("report_dir", None, "Report directory; default RUN_DIR/evaluate/NAME-vVERSION-SPLIT.")
for _name in _SHARED:
  flags.declare_key_flag(_name)
FLAGS = flags.FLAGS


def main(argv):
  def body():
    if not FLAGS.model:
      raise UserError("--model is required: an export dir (EXPORT_DIR/NAME/VERSION) or a run dir")
    tfft_flags.reject_train_flags(PROG, _SHARED)
    data = (DataConfig(dataset=FLAGS.dataset, text_column=FLAGS.text_column, label_column=FLAGS.label_column)
            if FLAGS["dataset"].present else None)
    from tfft import evaluation, metrics  # pylint: disable=g-import-not-at-top
    result, report_dir = evaluation.evaluate(
        FLAGS.model, model_dir=FLAGS.model_dir if FLAGS["model_dir"].present else None, data=data,
        split=FLAGS.split, report_dir=FLAGS.report_dir, batch_size=FLAGS.batch_size)
    return (f"{result['model']} on {result['split']} of {result['dataset']} ({result['num_examples']} examples)\n"
            f"{metrics.format_table(result)}\nreport:   {report_dir}")

  run_entry_point(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
