"""Settings every method's config shares, and loading configs from `train/configs/<method>.py:<variant>`."""

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


def load_config(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
  """`path/to/method.py[:arg]` plus `key.sub=value` overrides (values parsed as JSON when they can be)."""
  path, _, arg = spec.partition(":")
  if not Path(path).is_file():
    raise UserError(f"config file {path} not found; pass --config train/configs/<method>.py:<variant>")
  module_spec = importlib.util.spec_from_file_location(f"jaxlab_config_{Path(path).stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise UserError(f"{path} defines no get_config(arg)")
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except (KeyError, ValueError) as e:
    raise UserError(f"{path}: {e}") from None
  for item in overrides:
    apply_override(config, item)
  return config


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


def load_saved_config(workdir: Path) -> ml_collections.ConfigDict:
  path = epath.Path(workdir) / "config.json"
  if not path.is_file():
    raise UserError(f"{workdir} holds no config.json; is it the --workdir of a `jaxlab train` run?")
  return ml_collections.ConfigDict(json.loads(path.read_text()))
