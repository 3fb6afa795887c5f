"""Multi-host start-up, and the few things N processes must do together: gather, write once, agree.

Every process runs the same program. Arrays may span other processes' devices, so anything written once is
gathered first (every process takes part) and then written by process 0 alone; a decision that changes
control flow is agreed through a collective, so that no process enters a collective (a step, a save) alone.
"""

from collections.abc import Callable
import itertools
import os
from typing import TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxlab.errors import UserError

T = TypeVar("T")

# What `initialize` reads; the tests clear these to fake (or rule out) a cluster.
ENVIRONMENT = (
    "JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
    "JAX_LOCAL_DEVICE_IDS", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_NNODES", "SLURM_STEP_NUM_NODES",
    "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "TPU_SKIP_MDS_QUERY",
)


def _tpu_hosts() -> int:
  """Hosts of this TPU slice(s) as JAX's own cluster detection counts them (GKE variables, else the GCE
  metadata server); 1 off a TPU VM."""
  from jax._src.clusters import cloud_tpu_cluster as tpu  # JAX's detection; no public API exposes it
  for cluster in (tpu.GkeTpuCluster, tpu.GceTpuCluster):
    if cluster.is_env_present():
      return cluster.get_process_count()
  return 1


def _slurm_tasks() -> tuple[int, int]:
  """(tasks, nodes) of this SLURM job step; (1, 1) outside SLURM."""
  tasks = os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or "1"
  nodes = os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_NNODES") or "1"
  return int(tasks), int(nodes)


def initialize() -> None:
  """Joins the cluster when this process is one of several; does nothing on a single machine.

  Explicit clusters set `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`. Under SLURM and
  Open MPI `jax.distributed` reads the job's variables; with one SLURM task per node each process drives
  all the node's GPUs (JAX's default there is one GPU per task). On a TPU VM the pod slice is found as JAX
  finds it, from the metadata server, so a plain `gcloud ... --worker=all` launch needs no variables. It
  must run before any other JAX call.
  """
  if jax.distributed.is_initialized():
    return
  address = os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("COORDINATOR_ADDRESS")
  tasks, nodes = _slurm_tasks()
  if address:
    try:
      count, index = int(os.environ["JAX_NUM_PROCESSES"]), int(os.environ["JAX_PROCESS_ID"])
    except (KeyError, ValueError):
      raise UserError(f"the coordinator address is set ({address}); also set JAX_NUM_PROCESSES and "
                      "JAX_PROCESS_ID (this process' index, from 0) to integers") from None
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index)
  elif tasks > 1:
    one_per_node = tasks == nodes and "JAX_LOCAL_DEVICE_IDS" not in os.environ
    # An empty list keeps JAX from restricting the process to the GPU of its local task id.
    jax.distributed.initialize(**({"local_device_ids": []} if one_per_node else {}))
  elif int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1 or _tpu_hosts() > 1:
    jax.distributed.initialize()


def is_main_process() -> bool:
  """Process 0: the one that writes what is written once (exports, config.json, reports, images)."""
  return jax.process_index() == 0


_WRITES = itertools.count()  # write_once calls, made in the same order by every process
WRITE_TIMEOUT_MS = 24 * 3600 * 1000


def write_once(name: str, write: Callable[[], T]) -> T | None:
  """`write()` on process 0 only; every process returns once it has finished, so all can read the result
  (the workdir is shared storage). Every process must call it, unconditionally. When `write` fails, process 0
  raises its error and the others a `UserError` that points at it, instead of waiting for it forever.
  """
  result, error = None, None
  if is_main_process():
    try:
      result = write()
    except Exception as e:  # re-raised below, once the others know
      error = e
  # The others wait at a barrier of the coordination service, not in a device collective: the first
  # collective over a set of devices gives up after 30 s (gloo's rendezvous), and a write may take hours.
  from orbax.checkpoint import multihost as orbax_multihost  # 0.7 s to import; jaxlab.parallel stays light
  orbax_multihost.get_barrier_sync_fn()(key=f"jaxlab_write_once_{next(_WRITES)}", timeout_ms=WRITE_TIMEOUT_MS)
  if agree_any(error is not None):  # everyone has arrived: a collective now meets at once
    if error is not None:
      raise error
    raise UserError(f"process 0 failed while writing the {name}; its log says why")
  return result


def gather_to_host(tree):
  """A numpy copy of a tree of arrays on every process, whatever their sharding.

  `jax.device_get` cannot read an array that spans other processes' devices; such a leaf is replicated
  first, one leaf at a time, so device memory grows by at most the largest leaf. Every process must call it.
  """
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))
  return jax.tree.map(one, tree)


def agree_any(flag: bool) -> bool:
  """True on every process when `flag` is true on any of them (a collective; every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))
