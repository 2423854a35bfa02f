"""Command: python -m tfft.export --model_dir=RUN_DIR [--export_dir=… --name=…] [--models_config=BASE_DIR]."""

import pathlib

from absl import app

from tfft import flags as tfft_flags
from tfft import rundir
from tfft.errors import UserError
from tfft.serving import tf_serving
from tfft.tasks import registry

PROG = "tfft.export"
FLAGS = tfft_flags.FLAGS


def main(argv):
  def body():
    if not FLAGS["model_dir"].present and not FLAGS.models_config:
      raise UserError("pass --model_dir=RUN_DIR to re-export a run, and/or --models_config=BASE_DIR")
    lines = []
    if FLAGS["model_dir"].present:
      from tfft.fit import reexport  # pylint: disable=g-import-not-at-top  (deferred: TensorFlow, after the flags)
      given = tfft_flags.given
      path, metrics = reexport.reexport(FLAGS.model_dir, export_dir=given("export_dir"), name=given("name"),
                                        warmup=given("warmup"))
      task = rundir.load_run(FLAGS.model_dir).config.data.task
      # The task's own test line (accuracy, RMSE, entity F1, ROUGE…) and its parity line.
      lines += [line for line in registry.target(task).summary_lines(metrics)
                if line.startswith(("test:", "parity"))]
      lines.append(f"export:   {path}  (serving_default checked against the model)")
    if FLAGS.models_config:
      base = pathlib.Path(FLAGS.models_config).expanduser()
      names = tf_serving.write_models_config(base, serving_base=FLAGS.serving_base)
      lines.append(f"config:   {base / tf_serving.MODELS_CONFIG}  ({', '.join(names)})")
    return "\n".join(lines)

  tfft_flags.run_command(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
