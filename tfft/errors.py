"""How a run ends short: the exceptions entry points turn into one line and an exit code, and the wrapper that does it."""

import sys
from typing import Callable, Sequence


class UserError(Exception):
  """Bad input (flag, path, file, label or combination) that the user can fix.

  The message is one line that names the offending thing and says what to do.
  """


class RunFailed(Exception):
  """A run that worked but whose result fails a check (the quality gate, export parity); nothing is exported.

  Entry points print the message as one line and exit 1: it is a result, not bad input.
  """


class Preempted(Exception):
  """SIGTERM arrived during training: the epoch in progress finished and was checkpointed, then the run stopped.

  Entry points print the message as one line and exit 143 (128 + SIGTERM); re-running the command resumes.
  """


def run_entry_point(prog: str, argv: Sequence[str], body: Callable[[], str], *, takes_arguments: bool = False):
  """Runs an entry point's body and prints what it returns.

  A stray argument (unless the command takes some) or a UserError is one `PROG: error: …` line and exit 2; a
  RunFailed is `PROG: failed: …` and exit 1; Preempted is `PROG: stopped: …` and exit 143. Anything else is a bug
  and keeps its traceback.
  """
  if len(argv) > 1 and not takes_arguments:
    print(f"{prog}: error: unexpected arguments {list(argv[1:])}; every setting is a --flag", file=sys.stderr)
    sys.exit(2)
  try:
    out = body()
  except UserError as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    sys.exit(2)
  except RunFailed as e:
    print(f"{prog}: failed: {e}", file=sys.stderr)
    sys.exit(1)
  except Preempted as e:
    print(f"{prog}: stopped: {e}", file=sys.stderr)
    sys.exit(143)
  print(out)
