"""Command: python -m tfft.evaluate --model=saved_models/NAME/VERSION [--dataset=…] [--split=test]."""

import pathlib

from absl import app

from tfft import config as config_lib
from tfft import flags as tfft_flags
from tfft.config import DataConfig
from tfft.errors import UserError
from tfft.serving import loaded
from tfft.tasks import registry

PROG = "tfft.evaluate"
FLAGS = tfft_flags.FLAGS


def main(argv):
  def body():
    if not FLAGS.model:
      raise UserError("--model is required: an export dir (EXPORT_DIR/NAME/VERSION) or a run dir")
    data = None
    if FLAGS["dataset"].present:
      given = {field.name: config_lib.option_value(field, FLAGS[field.name].value)
               for section, field in config_lib.options() if section == "data" and field.name in tfft_flags.ROWS_FLAGS}
      data = DataConfig(dataset=FLAGS.dataset, **given)
    from tfft.fit import scoring  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow, after the flags)
    result, report_dir = scoring.evaluate_export(FLAGS.model, model_dir=tfft_flags.given("model_dir"), data=data,
                                                 split=FLAGS.split, report_dir=FLAGS.report_dir,
                                                 batch_size=FLAGS.batch_size)
    export = pathlib.Path(result["model"])
    target = registry.target(scoring.kind_of(loaded.read_meta(export), export))
    return "\n".join([f"{result['model']} on {result['split']} of {result['dataset']} ({result['num_examples']} "
                      "examples)", *target.table(result), f"report:   {report_dir}"])

  tfft_flags.run_command(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
