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
  """SIGTERM or SIGINT (Ctrl-C) arrived: the run stopped at its next safe point, with everything done so far kept.

  Commands print the message as one line and exit 128 + the signal's number (143 for SIGTERM, 130 for SIGINT);
  re-running the command resumes.
  """

  def __init__(self, message: str, signum: int = 15):
    super().__init__(message)
    self.signum = signum
