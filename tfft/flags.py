"""Every absl flag of every command, made from tfft.config's option declarations; and the commands' exit codes.

Library code never reads these flags: the commands turn them into a frozen Config (config_from_flags) or into
plain arguments, and pass those on.
"""

import pathlib
import sys
from typing import Callable, Sequence

from absl import flags

from tfft import config as config_lib
from tfft import startup
from tfft.errors import Preempted, RunFailed, UserError
from tfft.tasks import registry

FLAGS = flags.FLAGS


def _define_option(field):
  """Defines the absl flag of one tfft.config option: its type follows the default, choices make an enum (--task's
  are the registry's kinds)."""
  meta, default, name = field.metadata, field.default, field.name
  choices = tuple(registry.KINDS) if name == "task" else meta["choices"]
  if meta["parse"] is not None:
    flags.DEFINE_string(name, str(default), meta["help"])
  elif choices:
    flags.DEFINE_enum(name, default, choices, meta["help"])
  elif isinstance(default, bool):
    flags.DEFINE_bool(name, default, meta["help"])
  elif isinstance(default, int):
    flags.DEFINE_integer(name, default, meta["help"])
  elif isinstance(default, float):
    flags.DEFINE_float(name, default, meta["help"])
  elif isinstance(default, tuple):
    flags.DEFINE_list(name, [str(v) for v in default], meta["help"])
  else:
    flags.DEFINE_string(name, default, meta["help"])


for _section, _field in config_lib.options():
  _define_option(_field)
TRAIN_FLAGS = tuple(field.name for _, field in config_lib.options())
# How --dataset's rows are read (options declared with rows=True): tfft.evaluate takes them with --dataset.
ROWS_FLAGS = tuple(field.name for _, field in config_lib.options() if field.metadata["rows"])

# The other commands' own flags.
flags.DEFINE_string("model", None, "Export dir (EXPORT_DIR/NAME/VERSION), model base dir (its highest version) or "
                    "run dir.")
flags.DEFINE_enum("split", "test", ("train", "val", "test", "all"),
                  "Split of the run's manifest to score, or all for every example of --dataset.")
flags.DEFINE_string("report_dir", None, "Report directory; default RUN_DIR/evaluate/NAME-vVERSION-SPLIT.")
flags.DEFINE_integer("top_k", 3, "Classes to show per input.")
flags.DEFINE_enum("format", "table", ("table", "json"), "Output: a table, or JSON.")
flags.DEFINE_string("input_file", None, "A file with one input per line (text, or image path).")
flags.DEFINE_string("models_config", None,
                    "Export base dir: write BASE_DIR/models.config listing every model under it, for "
                    "tensorflow_model_server --model_config_file.")
flags.DEFINE_string("serving_base", "/models", "Where --models_config's dir is mounted inside the TF Serving container.")
flags.DEFINE_list("train_sizes", ["16", "64", "256", "all"],
                  "tfft.curve: training examples per class at each point (all: the whole train split).")
flags.DEFINE_integer("seeds", 3, "tfft.curve: seeds 0 .. N-1 at each size; each seed has its own split and draw.")
flags.DEFINE_string("curve_dir", "runs/curve", "tfft.curve: the points' run dirs and exports, learning_curve.csv "
                    "and learning_curve.png.")

flags.DEFINE_string("lr_find_dir", "runs/lr_find", "tfft.lr_find: where lr_find.csv, lr_find.png and the head phase's "
                    "scratch checkpoints go.")
flags.DEFINE_integer("lr_find_steps", 100, "tfft.lr_find: the most steps of the range test (it stops once the loss "
                     "diverges).")
flags.DEFINE_float("lr_min", 1e-7, "tfft.lr_find: the LR of the first step.")
flags.DEFINE_float("lr_max", 1.0, "tfft.lr_find: the LR of the last step.")

flags.DEFINE_string("space", "", "tfft.search: the search space file: one train flag a line, NAME = LOW..HIGH [log] "
                    "or NAME = A | B | C (or the same as a .json object); see docs/methods.md.")
flags.DEFINE_integer("trials", 10, "tfft.search: how many trials (train runs) the search runs in all.")
flags.DEFINE_string("search_dir", "runs/search", "tfft.search: the trials' run dirs, KerasTuner's state, "
                    "search_results.json and best.cfg; a re-run with the same flags resumes it.")
flags.DEFINE_enum("search_algorithm", "random", ["random", "bayesian"],
                  "tfft.search: KerasTuner's oracle: random search, or Bayesian optimisation (Gaussian process).")

# Which flags each command reads; any other tfft flag given to it is an error, not silently ignored.
COMMANDS = {
    "tfft.train": TRAIN_FLAGS,
    "tfft.evaluate": ("model", "split", "report_dir", "dataset", *ROWS_FLAGS, "batch_size", "model_dir"),
    "tfft.predict": ("model", "top_k", "format", "input_file"),
    "tfft.export": ("model_dir", "export_dir", "name", "warmup", "models_config", "serving_base"),
    "tfft.curve": TRAIN_FLAGS + ("train_sizes", "seeds", "curve_dir"),
    "tfft.lr_find": TRAIN_FLAGS + ("lr_find_dir", "lr_find_steps", "lr_min", "lr_max"),
    "tfft.search": TRAIN_FLAGS + ("space", "trials", "search_dir", "search_algorithm"),
}


def config_from_flags(flag_values=FLAGS) -> config_lib.Config:
  """Builds the frozen Config from parsed flags and validates it.

  Raises:
    UserError: naming the first bad flag.
  """
  sections = {section: {} for section in config_lib.SECTIONS}
  for section, field in config_lib.options():
    sections[section][field.name] = config_lib.option_value(field, flag_values[field.name].value)
  config = config_lib.Config(**{section: type(getattr(config_lib.Config(), section))(**values)
                                for section, values in sections.items()})
  config = registry.with_defaults(config, lambda name: flag_values[name].present)  # the kind's own defaults
  return registry.validate(config)


def given(name: str, flag_values=FLAGS):
  """The flag's value when it was given on the command line or in a flagfile, else None."""
  return flag_values[name].value if flag_values[name].present else None


def serialize(config: config_lib.Config) -> str:
  """The config in flagfile format (tfft.config.to_flagfile)."""
  return config_lib.to_flagfile(config)


def parser_for(prog: str):
  """Returns an absl flags parser for a command: a bad flag, or a flag the command does not read, is one line on
  stderr and exit code 2. The command's flags are what its --help lists."""
  reads = COMMANDS[prog]

  def parse(argv):
    startup.hide_startup_notes()  # before anything imports TensorFlow
    try:
      _check_flagfiles(argv[1:], chain=())
      rest = FLAGS(argv)
    except flags.Error as e:
      _exit_with(f"{prog}: error: {e}. See --helpfull for the flags.")
    for name in reads:
      FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
    for flag in FLAGS.get_key_flags_for_module(sys.modules[__name__]):
      if flag.present and flag.name not in reads:
        _exit_with(f"{prog}: error: --{flag.name} is not a {prog} flag; it reads "
                   f"{', '.join('--' + name for name in reads)} (see --help)")
    return rest

  return parse


def _exit_with(line: str):
  print(line, file=sys.stderr)
  sys.exit(2)


def _check_flagfiles(args: Sequence[str], *, chain):
  """Follows --flagfile includes, so that a missing file or a loop is an error (absl only warns about a loop).

  Raises:
    flags.Error: naming the missing file, or the loop.
  """
  for arg in args:
    if not arg.startswith("--flagfile="):
      continue
    path = pathlib.Path(arg[len("--flagfile="):]).expanduser()
    key = str(path.resolve())
    if key in chain:
      loop = " -> ".join([*chain[chain.index(key):], key])
      raise flags.Error(f"--flagfile={path} includes itself ({loop}); remove the --flagfile line that closes the loop")
    try:
      lines = path.read_text().splitlines()
    except OSError as e:
      raise flags.Error(f"--flagfile={path}: cannot read it ({e.strerror})") from None
    _check_flagfiles([line.strip() for line in lines], chain=(*chain, key))


def run_command(prog: str, argv: Sequence[str], body: Callable[[], str], *, takes_arguments: bool = False):
  """Runs a command's body and prints what it returns (the command's final output, on stdout).

  A stray argument (unless the command takes some) or a UserError is one `PROG: error: …` line and exit 2; a
  RunFailed is `PROG: failed: …` and exit 1; Preempted is `PROG: stopped: …` and exit 128 + its signal (143 for
  SIGTERM, 130 for Ctrl-C), as is a Ctrl-C that lands before the run's handlers are in place or a second Ctrl-C.
  Anything else is a bug and keeps its traceback.
  """
  if len(argv) > 1 and not takes_arguments:
    _exit_with(f"{prog}: error: unexpected arguments {list(argv[1:])}; every setting is a --flag")
  try:
    out = body()
  except UserError as e:
    _exit_with(f"{prog}: error: {e}")
  except RunFailed as e:
    print(f"{prog}: failed: {e}", file=sys.stderr)
    sys.exit(1)
  except Preempted as e:
    print(f"{prog}: stopped: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  except KeyboardInterrupt:
    print(f"{prog}: stopped: interrupted by Ctrl-C before the next safe point; re-run the same command to resume "
          "from the last finished epoch", file=sys.stderr)
    sys.exit(130)
  print(out)
