"""Command: python -m tfft.evaluate --model=saved_models/NAME/VERSION [--dataset=…] [--split=test]."""

import pathlib

from absl import app

from tfft import flags as tfft_flags
from tfft.config import DataConfig
from tfft.errors import UserError

PROG = "tfft.evaluate"
FLAGS = tfft_flags.FLAGS


def main(argv):
  def body():
    if not FLAGS.model:
      raise UserError("--model is required: an export dir (EXPORT_DIR/NAME/VERSION) or a run dir")
    data = (DataConfig(dataset=FLAGS.dataset, text_column=FLAGS.text_column, label_column=FLAGS.label_column,
                       prompt_column=FLAGS.prompt_column, response_column=FLAGS.response_column)
            if FLAGS["dataset"].present else None)
    from tfft.serving import loaded, scoring  # pylint: disable=g-import-not-at-top
    from tfft.tasks import targets  # pylint: disable=g-import-not-at-top
    result, report_dir = scoring.evaluate_export(FLAGS.model, model_dir=tfft_flags.given("model_dir"), data=data,
                                                 split=FLAGS.split, report_dir=FLAGS.report_dir,
                                                 batch_size=FLAGS.batch_size)
    target = targets.for_task(loaded.read_meta(pathlib.Path(result["model"])).get("target", "classify"))
    return "\n".join([f"{result['model']} on {result['split']} of {result['dataset']} ({result['num_examples']} "
                      "examples)", *target.table(result), f"report:   {report_dir}"])

  tfft_flags.run_command(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
