"""Multi-host start-up joins a cluster only when the environment is one (clusters faked: the detection is\nmonkeypatched, `jax.distributed.initialize` recorded). Real multi-process runs: test_multiprocess.py."""

import jax
import pytest

from jaxlab import parallel
from jaxlab.errors import UserError
from jaxlab.parallel import distributed


@pytest.fixture
def calls(monkeypatch):
  """The calls `initialize` makes to `jax.distributed.initialize`, on a machine that is no cluster."""
  seen = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: seen.append(kw))
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  for name in distributed.ENVIRONMENT:
    monkeypatch.delenv(name, raising=False)
  return seen


@pytest.fixture
def tpu_vm(monkeypatch):
  """A Cloud TPU VM whose metadata server lists `hosts` workers (JAX's own detection reads it)."""
  from jax._src.clusters import cloud_tpu_cluster

  def with_hosts(hosts: int):
    monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
    metadata = {"agent-worker-number": "0", "tpu-env": "ACCELERATOR_TYPE: 'v5p-32'\n",
                "worker-network-endpoints": ",".join(f"10.0.0.{i}" for i in range(hosts))}
    monkeypatch.setattr(cloud_tpu_cluster, "get_metadata", lambda key: (metadata[key], 200))
  return with_hosts


def test_one_machine_is_a_no_op(calls, monkeypatch, tpu_vm):
  parallel.initialize()
  monkeypatch.setenv("SLURM_NTASKS", "1")
  parallel.initialize()
  monkeypatch.delenv("SLURM_NTASKS")
  tpu_vm(hosts=1)  # a single-host TPU VM
  parallel.initialize()
  assert calls == []


def test_explicit_coordinator(calls, monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "2")
  parallel.initialize()
  assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 2}]
  monkeypatch.delenv("JAX_PROCESS_ID")
  with pytest.raises(UserError, match="also set JAX_NUM_PROCESSES and JAX_PROCESS_ID"):
    parallel.initialize()


def test_slurm_one_task_per_node_drives_every_local_gpu(calls, monkeypatch):
  monkeypatch.setenv("SLURM_NTASKS", "4")
  monkeypatch.setenv("SLURM_NNODES", "4")
  parallel.initialize()
  assert calls[-1] == {"local_device_ids": []}  # not JAX's default [SLURM_LOCALID]
  monkeypatch.setenv("SLURM_NTASKS", "32")  # one task per GPU: JAX's default is right
  parallel.initialize()
  assert calls[-1] == {}
  monkeypatch.setenv("SLURM_NTASKS", "4")
  monkeypatch.setenv("JAX_LOCAL_DEVICE_IDS", "0,1")  # the user's choice stands
  parallel.initialize()
  assert calls[-1] == {}


def test_tpu_pod_slice_found_by_jax_cluster_detection(calls, monkeypatch, tpu_vm):
  """No variables at all on a plain TPU VM pod slice: the metadata server's worker list decides."""
  tpu_vm(hosts=4)
  parallel.initialize()
  assert calls == [{}]
  tpu_vm(hosts=1)
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "w0,w1")  # GKE names the workers in the environment
  parallel.initialize()
  assert calls == [{}, {}]


def test_mesh_shapes_and_errors():
  mesh = parallel.make_mesh({"data": -1, "fsdp": 2})
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
  with pytest.raises(UserError, match="needs 16 devices"):
    parallel.make_mesh({"data": 16})
  with pytest.raises(UserError, match="unknown mesh axes"):
    parallel.make_mesh({"model": 2})
