"""Multi-host start-up joins a cluster only when the environment is one."""

import jax
import pytest

from jaxlab import parallel
from jaxlab.parallel import distributed


@pytest.fixture
def calls(monkeypatch):
  seen = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: seen.append(kw))
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  for name in distributed._CLUSTER_VARIABLES + ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(name, raising=False)
  return seen


def test_one_machine_is_a_no_op(calls, monkeypatch):
  parallel.initialize()
  monkeypatch.setenv("SLURM_NTASKS", "1")
  parallel.initialize()
  monkeypatch.delenv("SLURM_NTASKS")
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
  parallel.initialize()
  assert calls == []


def test_clusters_are_joined(calls, monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "2")
  parallel.initialize()
  assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 2}]
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
  monkeypatch.setenv("SLURM_NTASKS", "8")
  parallel.initialize()
  assert calls[-1] == {}  # SLURM: jax.distributed reads the job's variables itself


def test_mesh_shapes_and_errors():
  mesh = parallel.make_mesh({"data": -1, "fsdp": 2})
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
  from jaxlab.errors import UserError
  with pytest.raises(UserError, match="needs 16 devices"):
    parallel.make_mesh({"data": 16})
  with pytest.raises(UserError, match="unknown mesh axes"):
    parallel.make_mesh({"model": 2})
