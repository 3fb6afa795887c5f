"""Meshes, the logical-axis rules, sharded step compilation and multi-host start-up."""

from jaxlab.parallel.distributed import (
    agree_any, gather_to_host, initialize, is_main_process, write_once)
from jaxlab.parallel.mesh import (
    LOGICAL_AXIS_RULES, MESH_AXES, axis_rules, logical_sharding, make_mesh, replicated, rule_settings)
from jaxlab.parallel.step import abstract_batch, batch_shardings, compile_step, global_batch, mesh_context

__all__ = [
    "MESH_AXES", "LOGICAL_AXIS_RULES", "axis_rules", "rule_settings", "make_mesh", "logical_sharding", "replicated",
    "initialize",
    "is_main_process", "write_once", "gather_to_host", "agree_any",
    "compile_step", "batch_shardings", "global_batch", "abstract_batch", "mesh_context",
]
