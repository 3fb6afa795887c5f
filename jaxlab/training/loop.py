"""The one train loop: mesh -> data -> state (init or restore) -> compiled step -> loop -> eval -> checkpoints.

Every method hands the loop a `Task`; the loop owns sharding, checkpointing, preemption, metrics and progress.
"""

from collections.abc import Mapping
import functools
import os
import signal
import time

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from jaxlab import compilation_cache, parallel
from jaxlab.errors import UserError
from jaxlab.training import preemption
from jaxlab.training import workdir as workdir_lib
from jaxlab.training.checkpoint import Checkpointer
from jaxlab.training.config import check_settings, read_saved_config, save_config
from jaxlab.training.metrics import MetricWriter, notice
from jaxlab.training.task import Task


class TrainingStopped(Exception):
  """The run cannot go on (a non-finite loss); the message says why and what was kept."""


# Fault injection for the resume tests: the process kills itself (SIGKILL) once this step has run.
_KILL_AT_STEP_ENV = "JAXLAB_TEST_KILL_AT_STEP"


def _split_variables(variables: Mapping):
  variables = dict(variables)
  params = variables.pop("params")
  return params, variables


def state_layout(task: Task, mesh, seed: int, rules=parallel.LOGICAL_AXIS_RULES):
  """The state's init function, its abstract shapes (with shardings) and its shardings."""

  def init_state(rng, unbox: bool = True):
    init_rng, state_rng = jax.random.split(rng)
    variables = task.init_variables(init_rng)
    if unbox:
      variables = nn.meta.unbox(variables)
    params, model_state = _split_variables(variables)
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": task.optimizer.init(params),
        "model_state": model_state,
        "rng": jax.random.key_data(state_rng),
    }

  rng = jax.random.key(seed)
  # Initialising the boxed (logically annotated) parameters abstractly carries their axis names into the
  # optimiser state, so the moments are sharded like the parameters they track.
  boxed = jax.eval_shape(functools.partial(init_state, unbox=False), rng)
  shapes = jax.eval_shape(init_state, rng)
  shardings = parallel.logical_sharding(nn.get_partition_spec(boxed), mesh, rules, shapes)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings)
  return init_state, rng, abstract, shardings


def make_train_step(task: Task):
  """One optimiser step: loss and gradients, the update, and the step's metrics."""

  def train_step(state, frozen, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

    def loss(params):
      return task.loss_fn(params, state["model_state"], frozen, batch, rng)

    (value, (metrics, model_state)), grads = jax.value_and_grad(loss, has_aux=True)(state["params"])
    updates, opt_state = task.optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": value, "grad_norm": optax.global_norm(grads), **metrics}
    if task.learning_rate is not None:
      metrics["learning_rate"] = task.learning_rate(state["step"])
    new_state = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state,
                     model_state=model_state)
    return new_state, metrics

  return train_step


def compile_train_step(task: Task, mesh, abstract_state, state_shardings, frozen, local_batch,
                       rules=parallel.LOGICAL_AXIS_RULES):
  """The AOT-compiled train step for batches shaped like `local_batch`, and the batch shardings."""
  batch_shardings = parallel.batch_shardings(local_batch, mesh, task.batch_axes, rules)
  frozen_shardings = jax.tree.map(lambda x: x.sharding, frozen)
  step_fn = parallel.compile_step(
      make_train_step(task), mesh,
      in_shardings=(state_shardings, frozen_shardings, batch_shardings),
      out_shardings=(state_shardings, parallel.replicated(mesh)),
      example_args=(abstract_state, frozen, parallel.abstract_batch(local_batch, batch_shardings)), rules=rules)
  return step_fn, batch_shardings


def place_frozen(task: Task, mesh, rules=parallel.LOGICAL_AXIS_RULES):
  if task.frozen is None:
    return None
  if task.frozen_specs is None:
    return jax.device_put(task.frozen, parallel.replicated(mesh))
  return jax.device_put(task.frozen, parallel.logical_sharding(task.frozen_specs, mesh, rules, task.frozen))


def _fits(abstract, checkpointer: Checkpointer, changes: dict):
  """`check(step, saved)`: refuses a checkpoint whose state differs in shape from `abstract`."""

  def check(step, saved):
    mismatch = workdir_lib.shape_mismatch(saved, abstract) if saved is not None else None
    if mismatch:
      workdir_lib.refuse_reshaped_resume(step, checkpointer.directory, mismatch, changes)

  return check


def restore_or_init(task: Task, config, mesh, checkpointer: Checkpointer, data_iter=None, workdir=None):
  """The newest checkpoint that restores (with the data position) if there is one, else a fresh initialisation.

  A config whose state no longer fits the checkpoint is refused, naming what changed since `workdir`'s
  saved config; other changes are logged.
  """
  rules = parallel.axis_rules(config.get("sharding_rules"))
  init_state, rng, abstract, shardings = state_layout(task, mesh, config.seed, rules)
  workdir_lib.refuse_empty_state(abstract)
  changes = workdir_lib.config_changes(read_saved_config(workdir), config) if workdir else {}
  state, restored = checkpointer.restore_newest(abstract, data_iter, check=_fits(abstract, checkpointer, changes),
                                                log=notice)
  if restored is not None:
    workdir_lib.log_changes(changes, restored)
    return state, abstract, shardings, restored
  with parallel.mesh_context(mesh, rules):
    state = jax.jit(init_state, out_shardings=shardings)(rng)
  if task.pretrained is not None:
    # Fresh buffers: the step donates the state's, and `pretrained` may hand over device arrays that its caller
    # (and the frozen tree placed from them) still holds.
    state["params"] = jax.device_put(jax.tree.map(jnp.copy, task.pretrained()), shardings["params"])
    state["opt_state"] = jax.jit(task.optimizer.init, out_shardings=shardings["opt_state"])(state["params"])
  return state, abstract, shardings, None


def train(task: Task, config, workdir) -> dict:
  """Trains to `config.total_steps`, resuming from the latest checkpoint in `workdir` if there is one.

  Returns the last logged train metrics and the final evaluation. On SIGTERM or Ctrl-C (to any one process)
  every process saves the same step and returns early (the caller exits 0); on a non-finite loss it raises
  `TrainingStopped`, keeping the last good checkpoint. The workdir is locked while it runs; its `config.json` is written once the config is known to fit.
  """
  check_settings(config)
  with workdir_lib.hold(workdir):
    return _train(task, config, epath.Path(workdir))  # a local folder, or a URL such as gs://bucket/run


def _train(task: Task, config, workdir: epath.Path) -> dict:
  compilation_cache.configure(config.get("compilation_cache_dir", compilation_cache.default_directory()))
  mesh = parallel.make_mesh(dict(config.mesh))
  checkpointer = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints,
                              asynchronous=config.async_checkpointing)
  data_iter = iter(task.train_data())
  state, abstract, shardings, restored = restore_or_init(task, config, mesh, checkpointer, data_iter, workdir)
  if jax.process_index() == 0:
    save_config(config, workdir)
  start = int(jax.device_get(state["step"]))
  rules = parallel.axis_rules(config.get("sharding_rules"))
  frozen = place_frozen(task, mesh, rules)

  first = next(data_iter)
  step_fn, batch_shardings = compile_train_step(task, mesh, abstract, shardings, frozen, first, rules)

  writer = MetricWriter(workdir, config.total_steps, start)
  if restored is not None:
    writer.message(f"resumed from step {restored} in {checkpointer.directory}")
  kill_at = int(os.environ.get(_KILL_AT_STEP_ENV, "-1"))
  pending: list[tuple[int, dict]] = []  # device metrics since the last host sync
  last_logged: dict = {}
  last_good_step = restored
  eval_metrics: dict = {}

  def flush():
    """One host sync: writes the pending metrics, and stops on a non-finite loss."""
    nonlocal last_logged
    if not pending:
      return
    host = jax.device_get(pending)
    pending.clear()
    for step, metrics in host:
      # The loss is one replicated (all-reduced) value, the same on every process: all of them stop here.
      if not (np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])):
        kept = f"the last good checkpoint is step {last_good_step}" if last_good_step is not None else \
            "no checkpoint was saved"
        raise TrainingStopped(
            f"loss became {metrics['loss']} (gradient norm {metrics['grad_norm']}) at step {step}; stopped, {kept} in {checkpointer.directory}. "
            "Lower the learning rate or check the data, then rerun to resume.")
    window = [m for _, m in host]
    last_logged = {k: float(np.mean([m[k] for m in window])) for k in window[-1]}
    steps_per_s = len(window) / max(time.perf_counter() - flush.t0, 1e-9)
    flush.t0 = time.perf_counter()
    writer.write(host[-1][0], {**last_logged, "steps_per_second": steps_per_s})

  flush.t0 = time.perf_counter()

  def save(step):
    nonlocal last_good_step
    flush()
    checkpointer.save(step, state, data_iter)
    last_good_step = step

  try:
    with preemption.StopRequests() as stop:
      batch = first
      step = start
      while step < config.total_steps:
        state, metrics = step_fn(state, frozen, parallel.global_batch(batch, batch_shardings))
        step += 1
        pending.append((step, metrics))
        writer.advance()
        if step == kill_at:
          checkpointer.wait()
          os.kill(os.getpid(), signal.SIGKILL)
        if step % config.log_every == 0:
          flush()
        if config.eval_every and step % config.eval_every == 0 and step < config.total_steps and task.evaluate:
          flush()
          eval_metrics = dict(task.evaluate(state["params"], state["model_state"], step))
          writer.write(step, eval_metrics, prefix="eval")
        if step % config.checkpoint_every == 0 or step == config.total_steps:
          save(step)
        if stop.reached(step):
          if last_good_step != step:
            save(step)
          checkpointer.wait()
          writer.message(f"preempted: saved step {step} in {checkpointer.directory}; rerun to resume")
          return {"preempted": True, "step": step, **last_logged}
        if step < config.total_steps:
          batch = next(data_iter)
      flush()
      if task.evaluate:
        eval_metrics = dict(task.evaluate(state["params"], state["model_state"], step))
        writer.write(step, eval_metrics, prefix="eval")
    checkpointer.wait()
    return {"step": step, **last_logged, **{f"eval/{k}": v for k, v in eval_metrics.items()}}
  finally:
    checkpointer.close()
    writer.close()


def load_for_eval(task: Task, config, workdir, step: int | None = None):
  """The params and model state of a checkpoint in `workdir` (the newest that restores by default), sharded on a
  fresh mesh; None when the workdir has no checkpoint."""
  mesh = parallel.make_mesh(dict(config.mesh))
  checkpointer = Checkpointer(epath.Path(workdir) / "checkpoints", asynchronous=False)
  try:
    steps = checkpointer.all_steps()
    if step is not None and step not in steps:
      raise UserError(f"{workdir} has no checkpoint at step {step}; its checkpoints: "
                      f"{', '.join(map(str, steps)) or 'none'}")
    _, _, abstract, _ = state_layout(task, mesh, config.seed, parallel.axis_rules(config.get("sharding_rules")))
    check = _fits(abstract, checkpointer, workdir_lib.config_changes(read_saved_config(workdir), config))
    if step is None:
      return checkpointer.restore_newest(abstract, check=check, log=notice, set_aside=False)[0]
    check(step, checkpointer.saved_state(step))
    return checkpointer.restore(step, abstract)
  finally:
    checkpointer.close()
