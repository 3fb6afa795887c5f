"""Settings every method's config shares, and loading configs: `METHOD:VARIANT` (the packaged
`train/configs/METHOD.py`, i.e. `jaxlab.configs.METHOD`) or `path/to/config.py:VARIANT`."""

import importlib
import importlib.util
import json
import os
from pathlib import Path

from etils import epath
import jax
import ml_collections

from jaxlab import parallel
from jaxlab.errors import UserError


def base_config() -> ml_collections.ConfigDict:
  """Loop settings; a method's `get_config` starts from these and adds its own."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 1000
  c.batch_size = 32              # global, over all processes
  c.log_every = 50
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.eval_every = 0               # 0: evaluate only at the end
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  c.sharding_rules = ml_collections.ConfigDict(parallel.rule_settings())  # logical axis -> mesh axes
  c.async_checkpointing = True
  c.compilation_cache_dir = os.path.expanduser("~/.cache/jaxlab/xla")
  return c


def check_settings(config: ml_collections.ConfigDict) -> None:
  """Refuses loop settings the loop cannot run, before any expensive work (data, models, compilation)."""
  import jax
  from jaxlab import parallel
  for key, least in (("total_steps", 1), ("log_every", 1), ("checkpoint_every", 1), ("keep_checkpoints", 1),
                     ("eval_every", 0), ("batch_size", 1)):
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
      raise UserError(f"--config.{key}={value!r}: must be an integer >= {least}")
  if "dtype" in config:
    try:
      jax.numpy.dtype(config.dtype)
    except TypeError:
      raise UserError(f"--config.dtype={config.dtype!r} is no dtype; use float32 or bfloat16") from None
  mesh = parallel.make_mesh(dict(config.mesh))
  replicas = mesh.shape["data"] * mesh.shape["fsdp"]
  for count, what in ((jax.process_count(), "processes"), (replicas, "data-parallel devices (mesh data x fsdp)")):
    if config.batch_size % count:
      raise UserError(f"--config.batch_size={config.batch_size} is not divisible by the {count} {what}; use a "
                      f"multiple of {count}")


def load_config(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
  """`METHOD[:arg]` or `path/to/config.py[:arg]`, plus `key.sub=value` overrides (values parsed as JSON when they
  can be)."""
  source, _, arg = spec.partition(":")
  module = _config_file(source) if source.endswith(".py") or "/" in source else _packaged_config(source)
  if not hasattr(module, "get_config"):
    raise UserError(f"{source} defines no get_config(arg)")
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except (KeyError, ValueError) as e:
    raise UserError(f"{source}: {e}") from None
  for item in overrides:
    apply_override(config, item)
  return config


def config_names() -> list[str]:
  """The methods with a packaged config (`train/configs/<name>.py`)."""
  import jaxlab.configs
  return sorted(p.stem for p in Path(jaxlab.configs.__file__).parent.glob("*.py") if p.stem != "__init__")


def _packaged_config(name: str):
  if name not in config_names():
    raise UserError(f"no config named {name!r}; configs: {', '.join(config_names())} "
                    "(or a file: --config path/to/config.py:VARIANT)")
  return importlib.import_module(f"jaxlab.configs.{name}")


def _config_file(path: str):
  if not Path(path).is_file():
    raise UserError(f"config file {path} not found; pass --config METHOD:VARIANT or path/to/config.py:VARIANT")
  if Path(path).suffix != ".py":
    raise UserError(f"config file {path} is not a Python file; pass --config METHOD:VARIANT or "
                    "path/to/config.py:VARIANT")
  module_spec = importlib.util.spec_from_file_location(f"jaxlab_config_{Path(path).stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise UserError(f"config file {path} does not parse: {e.msg} on line {e.lineno}") from None
  return module


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  key, eq, raw = item.partition("=")
  if not eq:
    raise UserError(f"override {item!r} must look like key=value")
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    if name not in node:
      raise UserError(f"config has no field {key!r}")
    node = node[name]
  if leaf not in node:
    raise UserError(f"config has no field {key!r}; fields here: {', '.join(sorted(node.keys()))}")
  try:
    value = json.loads(raw)
  except json.JSONDecodeError:
    value = raw
  current = node[leaf]
  if isinstance(current, str) and not isinstance(value, str):
    value = raw
  elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  elif isinstance(current, (tuple, list)) and isinstance(value, list):
    value = type(current)(value)
  try:
    node[leaf] = value
  except TypeError as e:
    raise UserError(f"--config.{key}: {e}") from None


def save_config(config: ml_collections.ConfigDict, workdir: Path) -> None:
  """`<workdir>/config.json`, written by process 0 (the others share its workdir)."""
  if jax.process_index() != 0:
    return
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  (epath.Path(workdir) / "config.json").write_text(config.to_json_best_effort(indent=2))


def read_saved_config(workdir: Path) -> dict | None:
  """The `config.json` of a run's workdir as plain JSON, or None when there is none."""
  path = epath.Path(workdir) / "config.json"
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())
  except ValueError:
    raise UserError(f"{path} is not valid JSON; restore it from a backup, or delete it (a resume then keeps "
                    "only the new config)") from None


def load_saved_config(workdir: Path) -> ml_collections.ConfigDict:
  if Path(workdir).is_file():
    raise UserError(f"--workdir {workdir} is a file; pass the folder of a `jaxlab train` run")
  saved = read_saved_config(workdir)
  if saved is None:
    raise UserError(f"{workdir} holds no config.json; is it the --workdir of a `jaxlab train` run?")
  return ml_collections.ConfigDict(saved)
