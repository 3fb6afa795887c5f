"""The train loop: sharded steps equal single-device steps, resume after a kill, SIGTERM and Ctrl-C, non-finite
loss. The same on several processes: tests/parallel/test_multiprocess.py."""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from jaxlab import parallel, training
from jaxlab.training import checkpoint, loop, preemption
from tests.training import toy

REPO = Path(__file__).resolve().parents[2]


def _run_steps(mesh, steps: int):
  c = toy.config()
  task = toy.make_task(c)
  init_state, rng, abstract, shardings = loop.state_layout(task, mesh, c.seed)
  with parallel.mesh_context(mesh):
    state = jax.jit(init_state, out_shardings=shardings)(rng)
  data = iter(task.train_data())
  batch = next(data)
  step_fn, batch_shardings = loop.compile_train_step(task, mesh, abstract, shardings, None, batch)
  for _ in range(steps):
    state, _ = step_fn(state, None, parallel.global_batch(batch, batch_shardings))
    batch = next(data)
  return jax.device_get(state)


@pytest.mark.parametrize("shape", [{"data": 8}, {"data": 4, "fsdp": 2}, {"data": 2, "fsdp": 2, "tensor": 2}])
def test_sharded_step_matches_one_device(shape):
  assert jax.device_count() == 8
  reference = _run_steps(parallel.make_mesh({"data": 1}, devices=jax.devices()[:1]), steps=3)
  sharded_mesh = parallel.make_mesh(shape)
  sharded = _run_steps(sharded_mesh, steps=3)
  chex.assert_trees_all_close(sharded, reference, atol=1e-5, rtol=1e-5)
  # The state really moved, and the weights really were split over the mesh.
  assert int(sharded["step"]) == 3
  assert not np.allclose(reference["params"]["fc1"]["kernel"], _run_steps(
      parallel.make_mesh({"data": 1}, devices=jax.devices()[:1]), steps=0)["params"]["fc1"]["kernel"])


def test_fsdp_and_tensor_axes_split_the_weights():
  mesh = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  task_config = toy.config()
  task = toy.make_task(task_config)
  _, _, _, shardings = loop.state_layout(task, mesh, 0)
  kernel = shardings["params"]["fc1"]["kernel"].spec
  assert tuple(kernel) == ("fsdp", "tensor")
  # Adam's moments follow their parameters.
  mu = shardings["opt_state"][0].mu["fc1"]["kernel"].spec
  assert tuple(mu) == ("fsdp", "tensor")
  # --config.sharding_rules.mlp= : the MLP's hidden units stay whole.
  rules = parallel.axis_rules(dict(task_config.sharding_rules, mlp=""))
  _, _, _, shardings = loop.state_layout(task, mesh, 0, rules)
  assert tuple(shardings["params"]["fc1"]["kernel"].spec) == ("fsdp", None)


def _train_in_subprocess(workdir, *overrides, env_extra=None, wait=True):
  env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
  cmd = [sys.executable, "-m", "tests.training.toy", str(workdir), *overrides]
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  if wait:
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out
  return proc


def _final_params(workdir):
  c = toy.config()
  state = training.load_for_eval(toy.make_task(c), c, workdir)
  return int(state["step"]), jax.device_get(state)


def test_kill_and_resume_equals_uninterrupted_run(tmp_path):
  n = 4
  code, out = _train_in_subprocess(tmp_path / "straight", f"total_steps={2 * n}", f"checkpoint_every={n}")
  assert code == 0, out
  code, out = _train_in_subprocess(tmp_path / "killed", f"total_steps={2 * n}", f"checkpoint_every={n}",
                                   env_extra={loop._KILL_AT_STEP_ENV: str(n + 3)})
  assert code == -signal.SIGKILL, out
  code, out = _train_in_subprocess(tmp_path / "killed", f"total_steps={2 * n}", f"checkpoint_every={n}")
  assert code == 0, out
  assert f"resumed from step {n}" in out
  # The killed run had logged step n + 2 past its checkpoint; the resumed run logs it again, in its place.
  assert f"dropped 1 metrics records of step {n + 2}" in out
  for workdir in ("straight", "killed"):
    jsonl, tags = toy.logged_steps(tmp_path / workdir)
    assert jsonl == tags["train/loss"] == tags["train/accuracy"] == list(range(2, 2 * n + 1, 2)), workdir
  step_a, a = _final_params(tmp_path / "straight")
  step_b, b = _final_params(tmp_path / "killed")
  assert step_a == step_b == 2 * n
  chex.assert_trees_all_equal(b, a)  # the same steps on the same data: bit for bit


def test_sigterm_saves_a_restorable_checkpoint_and_exits_zero(tmp_path):
  workdir = tmp_path / "run"
  proc = _train_in_subprocess(workdir, "total_steps=100000", "log_every=1", "checkpoint_every=100000",
                              wait=False)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
    assert proc.poll() is None, proc.stdout.read()
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "preempted" in out
  step, state = _final_params(workdir)
  assert 5 <= step < 100000
  assert int(state["step"]) == step
  logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
  assert max(logged) <= step


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  c = toy.config(total_steps=20, log_every=1, checkpoint_every=2, async_checkpointing=False,
                 poison_from_example=16 * 5)  # batch 6 is the first with NaNs
  with pytest.raises(training.TrainingStopped, match=r"at step 6.*last good checkpoint is step 4"):
    training.train(toy.make_task(c), c, tmp_path)
  step, state = _final_params(tmp_path)
  assert step == 4
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))


def test_ctrl_c_asks_for_a_save_and_a_second_one_stops_at_once():
  before = signal.getsignal(signal.SIGINT)
  with preemption.StopRequests() as stop:
    assert not stop.reached(0)
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.reached(1)  # the loop saves this step and returns
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is before


class _Reached(Exception):
  pass


def test_a_gs_workdir_reaches_orbax_as_given(monkeypatch, tmp_path):
  """orbax writes to gs:// itself; the loop must hand it the URL, not `<cwd>/gs:/bucket/...`."""
  def manager(directory, **kwargs):
    raise _Reached(str(directory))
  monkeypatch.setattr(checkpoint.ocp, "CheckpointManager", manager)
  c = toy.config()
  for call in (lambda: training.train(toy.make_task(c), c, "gs://bucket/runs/toy"),
               lambda: training.load_for_eval(toy.make_task(c), c, "gs://bucket/runs/toy")):
    with pytest.raises(_Reached, match="^gs://bucket/runs/toy/checkpoints$"):
      call()
  monkeypatch.chdir(tmp_path)
  with pytest.raises(_Reached, match=f"^{tmp_path}/runs/toy/checkpoints$"):  # local: made absolute
    training.Checkpointer("runs/toy/checkpoints")
