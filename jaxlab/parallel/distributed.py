"""Multi-host start-up."""

import os

import jax

# Variables that mean "this process is one of several": TPU pods, SLURM, Open MPI, or explicit settings.
_CLUSTER_VARIABLES = (
    "JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS",
)


def _in_cluster() -> bool:
  if os.environ.get("SLURM_NTASKS", "1") == "1" and "SLURM_NTASKS" in os.environ:
    return False  # a single-task SLURM job is one machine
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  if "TPU_WORKER_HOSTNAMES" in os.environ and len(hosts.split(",")) <= 1:
    return False  # a single-host TPU VM
  return any(name in os.environ for name in _CLUSTER_VARIABLES)


def initialize() -> None:
  """Joins the cluster when this process is one of several; does nothing on a single machine.

  `jax.distributed.initialize` auto-detects TPU pods, SLURM and Open MPI; explicit clusters set
  `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`. It must run before any other JAX call.
  """
  if not _in_cluster() or jax.distributed.is_initialized():
    return
  address = os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("COORDINATOR_ADDRESS")
  if address:
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]))
  else:
    jax.distributed.initialize()
