"""Compiling a step with shardings and donation, and feeding it global batches."""

from collections.abc import Callable, Mapping, Sequence
import contextlib

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np
from flax import linen as nn

from jaxlab.parallel.mesh import LOGICAL_AXIS_RULES


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules=LOGICAL_AXIS_RULES):
  """The mesh and logical-axis rules that `nn.with_logical_constraint` needs while tracing."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def compile_step(fn: Callable, mesh: Mesh, *, in_shardings, out_shardings, example_args: Sequence,
                 donate_argnums=(0,), rules=LOGICAL_AXIS_RULES):
  """AOT-compiles `fn` for the shapes of `example_args` (arrays or `jax.ShapeDtypeStruct`s).

  The first argument (the train state) is donated so that its buffers are updated in place.
  """
  jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings, donate_argnums=donate_argnums)
  with mesh_context(mesh, rules):
    return jitted.lower(*example_args).compile()


def batch_shardings(batch_shapes: Mapping, mesh: Mesh, batch_axes: Mapping | None = None,
                    rules=LOGICAL_AXIS_RULES):
  """Shardings for a batch: each leaf's leading axis is the batch; `batch_axes` may name the others."""
  batch_axes = dict(batch_axes or {})

  def spec(path, leaf):
    key = jax.tree_util.keystr(path, simple=True, separator="/")
    axes = batch_axes.get(key, ("activation_batch",) + (None,) * (np.ndim(leaf) - 1))
    return nn.logical_to_mesh_sharding(PartitionSpec(*axes), mesh, rules)

  return jax.tree_util.tree_map_with_path(spec, batch_shapes)


def global_batch(local_batch, shardings):
  """Assembles each process' slice of the batch into global arrays laid out by `shardings`."""
  return jax.tree.map(jax.make_array_from_process_local_data, shardings, local_batch)


def abstract_batch(local_batch, shardings):
  """`ShapeDtypeStruct`s of the global batch that `local_batch` is one process' slice of."""
  def one(x, sharding: NamedSharding):
    x = np.asarray(x)
    shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.ShapeDtypeStruct(shape, x.dtype, sharding=sharding)
  return jax.tree.map(one, local_batch, shardings)
