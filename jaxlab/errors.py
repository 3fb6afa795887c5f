"""Errors a user can cause and fix; the CLI prints them as one line, without a traceback."""


class UserError(Exception):
  """A problem with the user's input (a missing file, a bad flag, a wrong format).

  The message says what is wrong and what to do about it.
  """


def require(condition: bool, message: str) -> None:
  if not condition:
    raise UserError(message)
