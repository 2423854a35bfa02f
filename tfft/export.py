"""Entry point: python -m tfft.export --model_dir=RUN_DIR [--export_dir=… --name=…] [--models_config=BASE_DIR]."""

from absl import app, flags

from tfft import flags as tfft_flags
from tfft.errors import UserError, run_entry_point

PROG = "tfft.export"
_SHARED = ("model_dir", "export_dir", "name", "warmup")
flags.DEFINE_string("models_config", None,
                    "Export base dir: write BASE_DIR/models.config listing every model under it, for "
                    "tensorflow_model_server --model_config_file.")
flags.DEFINE_string("serving_base", "/models", "Where --models_config's dir is mounted inside the TF Serving container.")
for _name in _SHARED:
  flags.declare_key_flag(_name)
FLAGS = flags.FLAGS


def main(argv):
  def body():
    lines = []
    tfft_flags.reject_train_flags(PROG, _SHARED)
    if not FLAGS["model_dir"].present and not FLAGS.models_config:
      raise UserError("pass --model_dir=RUN_DIR to re-export a run, and/or --models_config=BASE_DIR")
    if FLAGS["model_dir"].present:
      from tfft import runs  # pylint: disable=g-import-not-at-top
      given = lambda name: FLAGS[name].value if FLAGS[name].present else None
      path, metrics = runs.export_run(FLAGS.model_dir, export_dir=given("export_dir"), name=given("name"),
                                      warmup=given("warmup"))
      lines.append(f"export:   {path}  (test accuracy={metrics['accuracy']:.4f} macro_f1={metrics['macro_f1']:.4f}, "
                   "serving_default checked against the model)")
    if FLAGS.models_config:
      import pathlib  # pylint: disable=g-import-not-at-top
      from tfft import serving_kit  # pylint: disable=g-import-not-at-top
      base = pathlib.Path(FLAGS.models_config).expanduser()
      names = serving_kit.write_models_config(base, serving_base=FLAGS.serving_base)
      lines.append(f"config:   {base / serving_kit.MODELS_CONFIG}  ({', '.join(names)})")
    return "\n".join(lines)

  run_entry_point(PROG, argv, body)


def run():
  app.run(main, flags_parser=tfft_flags.parser_for(PROG))


if __name__ == "__main__":
  run()
