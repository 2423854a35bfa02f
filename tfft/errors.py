"""The one exception type for mistakes a user can fix: entry points print it as one line and exit 2."""


class UserError(Exception):
  """Bad input (flag, path, file, label or combination) that the user can fix.

  The message is one line that names the offending thing and says what to do.
  """
