"""Errors a user can cause and fix; the CLI prints them as one line, without a traceback."""


class UserError(Exception):
  """A problem with the user's input (a missing file, a bad flag, a wrong format).

  The message says what is wrong and what to do about it.
  """


def require(condition: bool, message: str) -> None:
  if not condition:
    raise UserError(message)


def read_json(path, what: str = ""):
  """The parsed JSON file at `path`; a missing or malformed file is a `UserError` naming it (and `what` it is)."""
  import json
  from pathlib import Path
  path = Path(path)
  about = f" ({what})" if what else ""
  if not path.is_file():
    raise UserError(f"{path} not found{about}")
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except (ValueError, UnicodeDecodeError) as e:
    raise UserError(f"{path} is not valid JSON: {e}{about}; fix or replace the file") from None
