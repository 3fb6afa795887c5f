"""The methods: one module each, with a config schema, the loss, the task for the loop, eval and export.

A training method module provides `make_task(config, workdir) -> training.Task` and
`evaluate(config, workdir, step=None) -> dict`; every method provides `demo(workdir) -> DemoSection` for
`jaxlab demo`.
"""

import dataclasses
import importlib
from pathlib import Path

from jaxlab.errors import UserError

# name -> module; imported only when used, so the CLI starts fast.
METHODS = {
    "airletters": "jaxlab.methods.airletters",
    "something_else": "jaxlab.methods.something_else",
    "spelling": "jaxlab.methods.spelling",
    "esd": "jaxlab.methods.esd",
    "sliders": "jaxlab.methods.sliders",
    "motion": "jaxlab.methods.motion",
    "find": "jaxlab.find.demo",
    "audit": "jaxlab.audit.demo",
}


def available() -> list[str]:
  """The methods whose module exists in this checkout."""
  return [name for name, module in METHODS.items() if importlib.util.find_spec(module) is not None]


def get(name: str):
  if name not in METHODS:
    raise UserError(f"unknown method {name!r}; methods: {', '.join(available())}")
  try:
    return importlib.import_module(METHODS[name])
  except ModuleNotFoundError as e:
    if e.name == METHODS[name]:
      raise UserError(f"method {name!r} is not part of this checkout yet") from None
    raise


@dataclasses.dataclass
class DemoSection:
  """One method's part of the demo report: markdown, headline figures, and files it wrote."""
  title: str
  markdown: str
  figures: dict[str, float] = dataclasses.field(default_factory=dict)
  files: list[Path] = dataclasses.field(default_factory=list)
