"""Orbax checkpoints of the train state together with the data iterator's position."""

from etils import epath
import grain
import orbax.checkpoint as ocp


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

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
