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


def get(name: str, needs: str | None = None):
  """The method's module; `needs` names the function the caller will use (`make_task`, `evaluate`)."""
  if name not in METHODS:
    raise UserError(f"unknown method {name!r}; methods: {', '.join(available())}")
  try:
    module = importlib.import_module(METHODS[name])
  except ModuleNotFoundError as e:
    if e.name == METHODS[name]:
      raise UserError(f"method {name!r} is not part of this checkout yet") from None
    raise
  if needs and not hasattr(module, needs):
    able = [m for m in available() if m != name and hasattr(importlib.import_module(METHODS[m]), needs)]
    raise UserError(f"{name} has no {needs.replace('make_task', 'training')} step (see `jaxlab {name} --help` "
                    f"for its verbs); methods with one: {', '.join(able)}")
  return module


def _config_keys(name: str) -> set[str] | None:
  """The top-level keys of the method's packaged config (`train/configs/<name>.py`), where it has one."""
  from jaxlab.training.config import config_names, load_config
  return set(load_config(name).keys()) if name in config_names() else None


def check_config(name: str, config, source: str, fix: str) -> None:
  """Refuses a config (read from `source`) that lacks keys of the method's own config, as another method's
  config does; `fix` says what to do, `{owner}` in it becomes the method the config belongs to."""
  expected = _config_keys(name)
  missing = sorted(expected - set(config.keys())) if expected is not None else []
  if not missing:
    return
  owners = [m for m in METHODS if m != name and (keys := _config_keys(m)) and keys <= set(config.keys())]
  if owners:
    raise UserError(f"{source} is a config of {owners[0]}, not {name}; {fix.format(owner=owners[0])}")
  raise UserError(f"{source} is not a {name} config (it lacks {', '.join(missing[:5])}); "
                  f"{fix.format(owner='the method it was made for')}")


@dataclasses.dataclass
class DemoSection:
  """One method's part of the demo report: markdown, headline figures, and files it wrote."""
  title: str
  markdown: str
  figures: dict[str, float] = dataclasses.field(default_factory=dict)
  files: list[Path] = dataclasses.field(default_factory=list)
