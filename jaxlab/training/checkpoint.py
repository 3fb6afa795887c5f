"""Orbax checkpoints of the train state together with the data iterator's position."""

import time

from etils import epath
import grain
import jax
import orbax.checkpoint as ocp

from jaxlab.errors import UserError


class Checkpointer:
  """Saves `state` (params, optimiser state, RNG, step) and the grain iterator under `<workdir>/checkpoints`.

  Saves are asynchronous; a step directory only counts once orbax has committed it, so a crash mid-save
  leaves the previous checkpoint as the latest.
  """

  def __init__(self, directory, keep: int = 3, asynchronous: bool = True):
    # A URL (gs://bucket/run/checkpoints) stays as given, for orbax to write there; a local path is made
    # absolute. `pathlib` would turn `gs://b` into `<cwd>/gs:/b`.
    directory = epath.Path(directory)
    self.directory = directory if "://" in str(directory) else directory.absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=asynchronous, create=True),
        item_names=("state", "data_iter"),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, data_iter=None, *, force: bool = True) -> None:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state, data_iter=None):
    """Restores onto the shardings carried by `abstract_state` (a tree of `jax.ShapeDtypeStruct`s)."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    return self._manager.restore(step, args=ocp.args.Composite(**items))["state"]

  def restore_subtree(self, step: int, abstract):
    """The parts of a saved state that `abstract` names (e.g. `{'params': ...}`, or with `model_state`), onto
    its shardings; the rest (the optimiser moments) is not read. For a Checkpointer opened to read: orbax keeps
    one handler per item, fixed by the first save or restore."""
    args = ocp.args.PyTreeRestore(item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                                  partial_restore=True)
    return self._manager.restore(step, args=ocp.args.Composite(state=args))["state"]

  def saved_state(self, step: int):
    """The saved state's tree of array metadata (shapes, dtypes) at `step`, or None where it cannot be read."""
    reader = ocp.StandardCheckpointHandler()
    try:
      return reader.metadata(epath.Path(self.directory / str(step) / "state")).tree
    except Exception:  # noqa: BLE001 - unreadable metadata: the restore that follows says why
      return None
    finally:
      reader.close()

  def restore_newest(self, abstract_state, data_iter=None, *, check=None, log=print, set_aside: bool = True):
    """`(state, step)` of the newest checkpoint that restores, or `(None, None)` when there is none.

    `check(step, saved_state_metadata)` may refuse a checkpoint before it is read. Steps that fail to restore
    (truncated or half-deleted) are skipped with a message and, once an older one has restored, moved to
    `<step>.damaged` so that the run can save that step again; if none restores, nothing is moved.
    """
    failed = []
    for step in sorted(self.all_steps(), reverse=True):
      saved = self.saved_state(step)
      if saved is not None and check is not None:
        check(step, saved)
      try:
        state = self.restore(step, abstract_state, data_iter)
      except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many types for damaged files
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        log(f"checkpoint step {step} in {self.directory} does not restore ({reason}); trying the one before")
        failed.append((step, reason))
        continue
      if failed and set_aside:
        kept = [self._set_aside(bad) for bad, _ in failed]
        log(f"restored step {step} instead; the damaged checkpoints are kept as {', '.join(kept)}")
      return state, step
    if failed:
      raise UserError(f"no checkpoint in {self.directory} restores (step {failed[0][0]}: {failed[0][1]}); move "
                      "the folder away to start over")
    return None, None

  def _set_aside(self, step: int) -> str:
    """Moves a damaged step out of orbax's sight (its name is no step number); returns the new name."""
    name = f"{step}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    if jax.process_index() == 0:
      (self.directory / str(step)).rename(self.directory / name)
    self._manager.reload()
    return name

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def restore_for_eval(workdir, abstract, step: int | None = None):
  """(the parts of a checkpoint in `workdir` that `abstract` names, its step), from the latest checkpoint (or
  `step`'s), or None when there is none. Leaves of `abstract` without a sharding are replicated over all devices;
  no task, optimiser or data is needed (big_vision-style restore from a tree of shapes)."""
  from jaxlab import parallel

  replicated = parallel.replicated(parallel.make_mesh())
  abstract = jax.tree.map(lambda x: x if getattr(x, "sharding", None) is not None else
                          jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract)
  checkpointer = Checkpointer(epath.Path(workdir) / "checkpoints", asynchronous=False)
  try:
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      return None
    return checkpointer.restore_subtree(step, abstract), step
  finally:
    checkpointer.close()
