"""How a run ends short: the exceptions that the commands turn into one line and an exit code (tfft.flags.run_command)."""

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
