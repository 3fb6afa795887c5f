"""A workdir is held by one run at a time, and resumes only under a config its checkpoints fit.

The lock is a file (`train.lock`: pid, host, start time) created atomically by process 0; a second run is
refused with the holder named, and a lock left by a dead process on this host is taken over. Which config keys
may change on a resume is not listed anywhere: a change is refused exactly when the state the new config
builds (params, optimiser and model state) differs in structure or shape from the checkpoint's, so the rule
cannot go stale as methods gain keys; every other change (learning rate, `total_steps`, ...) is logged.
"""

import contextlib
import json
import os
from pathlib import Path
import socket
import time

import jax
import ml_collections

from jaxlab.errors import UserError
from jaxlab.training.metrics import notice

LOCK_FILE = "train.lock"


# ------------------------------------------------------------------------------------------------ lock

def _holder() -> dict:
  return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _read_lock(path: Path) -> dict:
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return {}  # half-written by a process killed while creating it


def _alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # alive, another user's
  except (TypeError, ValueError):
    return False
  return True


def _create(path: Path) -> bool:
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    json.dump(_holder(), f)
  return True


def _acquire(path: Path) -> None:
  for _ in range(3):  # another run may take a stale lock between our look and our create
    if _create(path):
      return
    held = _read_lock(path)
    if held.get("host") not in (None, socket.gethostname()):
      raise UserError(f"{path.parent} is in use by process {held.get('pid')} on host {held['host']} (since "
                      f"{held.get('since')}); wait for it, use another --workdir, or delete {path} if that run "
                      "is gone")
    if held and _alive(held.get("pid")):
      raise UserError(f"{path.parent} is in use by process {held['pid']} on this host (since {held.get('since')}); "
                      f"wait for it to finish, stop it, or use another --workdir")
    notice(f"taking over the lock of {path.parent} from process {held.get('pid', '?')}, which is no longer "
           "running")
    path.unlink(missing_ok=True)
  raise UserError(f"could not take the lock {path}; another run keeps taking it")


@contextlib.contextmanager
def hold(workdir):
  """Holds `workdir` for this run (process 0 takes the lock); re-entrant within one process. A URL workdir
  (gs://) is not locked: object stores have no exclusive create."""
  if "://" in str(workdir):
    yield
    return
  path = Path(workdir) / LOCK_FILE
  held = _read_lock(path)
  if jax.process_index() != 0 or (held.get("pid"), held.get("host")) == (os.getpid(), socket.gethostname()):
    yield
    return
  if Path(workdir).exists() and not Path(workdir).is_dir():
    raise UserError(f"--workdir {workdir} is a file; pass a folder (it is created if missing)")
  Path(workdir).mkdir(parents=True, exist_ok=True)
  _acquire(path)
  try:
    yield
  finally:
    path.unlink(missing_ok=True)


# -------------------------------------------------------------------------------------- config on resume

def _flat(config) -> dict:
  """`{'a.b': value}` of a config as it is saved (JSON types: tuples become lists)."""
  tree = json.loads(config.to_json_best_effort()) if isinstance(config, ml_collections.ConfigDict) else config
  flat = {}

  def walk(node, prefix):
    for key, value in node.items():
      if isinstance(value, dict) and value:
        walk(value, f"{prefix}{key}.")
      else:
        flat[f"{prefix}{key}"] = value
  walk(tree, "")
  return flat


def config_changes(saved: dict | None, config) -> dict[str, tuple]:
  """`{key: (saved value, new value)}` for every key that differs (missing on one side: `None`)."""
  if saved is None:
    return {}
  old, new = _flat(saved), _flat(config)
  return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def describe(changes: dict[str, tuple], limit: int = 8) -> str:
  items = [f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in changes.items()]
  return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _leaves(tree) -> dict[str, tuple]:
  """`{'params/fc1/kernel': shape}` of a state tree (arrays, shape structs or orbax array metadata)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape) for path, leaf in flat}


def _params_first(key: str) -> tuple:
  return not key.startswith("params/"), key


def shape_mismatch(saved_tree, abstract_state) -> str | None:
  """How the checkpoint's state differs in structure or shape from the one the config builds, or None."""
  old, new = _leaves(saved_tree), _leaves(abstract_state)
  for key in sorted(old.keys() | new.keys(), key=_params_first):
    if key not in new:
      return f"the checkpoint has {key}, which this config does not build"
    if key not in old:
      return f"this config builds {key}, which the checkpoint lacks"
    if old[key] != new[key]:
      return f"{key} is {list(old[key])} in the checkpoint, {list(new[key])} under this config"
  return None


def refuse_empty_state(abstract_state) -> None:
  """Refuses a config that builds an array with no elements (a size set to 0), which cannot be trained or saved."""
  leaves = _leaves(abstract_state)
  empty = [f"{key} {list(leaves[key])}" for key in sorted(leaves, key=_params_first) if 0 in leaves[key]]
  if empty:
    raise UserError(f"the config builds empty arrays ({', '.join(empty[:3])}); a size in the config is 0, make it "
                    "positive")


def refuse_reshaped_resume(step: int, checkpoint_dir, mismatch: str, changes: dict) -> None:
  """Raises the one-line error for a config whose state no longer fits the checkpoint."""
  keys = f"the config changes {describe(changes)}" if changes else "the config changed"
  raise UserError(f"cannot resume from step {step} in {checkpoint_dir}: {keys}, and {mismatch}. Undo the "
                  "change, or train in a new --workdir")


def log_changes(changes: dict, step: int) -> None:
  if changes:
    notice(f"resuming from step {step} with config changes: {describe(changes, limit=20)}")
