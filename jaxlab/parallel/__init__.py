"""Meshes, the logical-axis rules, sharded step compilation and multi-host start-up."""

from jaxlab.parallel.distributed import initialize
from jaxlab.parallel.mesh import LOGICAL_AXIS_RULES, MESH_AXES, logical_sharding, make_mesh, replicated
from jaxlab.parallel.step import abstract_batch, batch_shardings, compile_step, global_batch, mesh_context

__all__ = [
    "MESH_AXES", "LOGICAL_AXIS_RULES", "make_mesh", "logical_sharding", "replicated", "initialize",
    "compile_step", "batch_shardings", "global_batch", "abstract_batch", "mesh_context",
]
