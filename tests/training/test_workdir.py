"""Runs and workdirs: one metrics record per step after a restart, the workdir lock, config changes on resume,
damaged checkpoints, and loop settings refused before any work."""

import json
import shutil
import socket
import subprocess
import sys

import jax
import pytest

from jaxlab import training
from jaxlab.errors import UserError
from tests.training import toy
from tests.training.test_loop import REPO


def _train(workdir, **overrides):
  c = toy.config(async_checkpointing=False, **overrides)
  return training.train(toy.make_task(c), c, workdir)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A toy run of 8 steps (checkpoints at 4 and 8, metrics every 2)."""
  workdir = tmp_path_factory.mktemp("run") / "run"
  _train(workdir)
  return workdir


def _copy(run, tmp_path):
  shutil.copytree(run, tmp_path / "run")
  return tmp_path / "run"


def test_restart_without_checkpoints_says_so_and_keeps_one_record_per_step(finished_run, tmp_path, capsys):
  workdir = _copy(finished_run, tmp_path)
  shutil.rmtree(workdir / "checkpoints")
  _train(workdir)
  assert "no checkpoint to resume from but holds metrics (steps 2-8): starting over from step 0" in \
      capsys.readouterr().err
  jsonl, tags = toy.logged_steps(workdir)
  assert jsonl == [2, 4, 6, 8]
  assert tags["train/loss"] == [2, 4, 6, 8]


@pytest.mark.parametrize("damage", ["truncated", "half_deleted"])
def test_damaged_latest_checkpoint_falls_back_to_the_one_before(finished_run, tmp_path, capsys, damage):
  workdir = _copy(finished_run, tmp_path)
  step_dir = workdir / "checkpoints" / "8"
  if damage == "truncated":
    for f in (step_dir / "state" / "d").iterdir():
      f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])
  else:
    shutil.rmtree(step_dir / "state")
  result = _train(workdir, total_steps=10)
  err = capsys.readouterr().err
  assert "checkpoint step 8 in" in err and "does not restore (" in err
  assert "restored step 4 instead; the damaged checkpoints are kept as 8.damaged-" in err
  assert result["step"] == 10
  assert sorted(p.name.split("-")[0] for p in (workdir / "checkpoints").iterdir()) == ["10", "4", "8", "8.damaged"]
  jsonl, tags = toy.logged_steps(workdir)
  assert jsonl == [2, 4, 6, 8, 10] and tags["train/loss"] == [2, 4, 6, 8, 10]


def test_no_checkpoint_restores_is_one_line_and_moves_nothing(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  for step in ("4", "8"):
    shutil.rmtree(workdir / "checkpoints" / step / "state")
  with pytest.raises(UserError, match=r"no checkpoint in .* restores \(step 8: "):
    _train(workdir)
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "8"]


@pytest.mark.parametrize("change, expected", [
    ({"hidden": 16}, r"changes hidden 32 -> 16, and params/bn/bias is \[32\] in the checkpoint, \[16\] under this"),
    ({"extra_layers": 1}, r"changes extra_layers 0 -> 1, and this config builds params/extra_0/bias, which the "
                          r"checkpoint lacks"),
])
def test_a_resume_that_changes_a_shape_is_refused_before_anything_is_written(finished_run, tmp_path, change,
                                                                             expected):
  workdir = _copy(finished_run, tmp_path)
  before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
  with pytest.raises(UserError, match=r"cannot resume from step 8 in .*checkpoints: the config " + expected):
    _train(workdir, **change)
  assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before  # config.json too


def test_a_resume_that_changes_settings_is_logged(finished_run, tmp_path, capsys):
  workdir = _copy(finished_run, tmp_path)
  assert _train(workdir, total_steps=10, learning_rate=0.02)["step"] == 10
  assert "resuming from step 8 with config changes: learning_rate 0.01 -> 0.02, total_steps 8 -> 10" in \
      capsys.readouterr().err
  assert json.loads((workdir / "config.json").read_text())["learning_rate"] == 0.02


def test_a_second_run_is_refused_while_the_first_holds_the_workdir(tmp_path, capsys):
  workdir = tmp_path / "run"
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom jaxlab.training import workdir\n"
       f"with workdir.hold({str(workdir)!r}):\n  print('held', flush=True)\n  time.sleep(120)"],
      cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match=rf"{workdir} is in use by process {holder.pid} on this host"):
      _train(workdir)
    assert not (workdir / "config.json").exists()
  finally:
    holder.kill()
    holder.wait()
  # The holder died without letting go: its lock is stale and is taken over.
  assert _train(workdir)["step"] == 8
  assert f"taking over the lock of {workdir} from process {holder.pid}, which is no longer running" in \
      capsys.readouterr().err
  assert not (workdir / training.workdir.LOCK_FILE).exists()


def test_a_lock_held_from_another_host_is_refused(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / training.workdir.LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "node-7", "since": "today"}))
  assert socket.gethostname() != "node-7"
  with pytest.raises(UserError, match=r"in use by process 1 on host node-7 .* delete .*train.lock if that run"):
    _train(workdir)


@pytest.mark.parametrize("override, message", [
    ({"total_steps": -3}, r"--config.total_steps=-3: must be an integer >= 1"),
    ({"log_every": 0}, r"--config.log_every=0: must be an integer >= 1"),
    ({"checkpoint_every": 0}, r"--config.checkpoint_every=0: must be an integer >= 1"),
    ({"batch_size": 12}, r"--config.batch_size=12 is not divisible by the 8 data-parallel devices"),
    ({"batch_size": 6, "mesh": {"data": 2, "fsdp": 2, "tensor": 2}},
     r"--config.batch_size=6 is not divisible by the 4 data-parallel devices \(mesh data x fsdp\)"),
])
def test_loop_settings_are_refused_before_any_work(tmp_path, override, message):
  assert jax.device_count() == 8
  c = toy.config()
  c.update(override)
  with pytest.raises(UserError, match=message):
    training.train(None, c, tmp_path / "run")  # no task: nothing is built before the settings are checked
  assert not (tmp_path / "run").exists()


def test_evaluating_a_step_without_a_checkpoint_names_the_ones_there(finished_run):
  c = toy.config()
  with pytest.raises(UserError, match=r"has no checkpoint at step 99; its checkpoints: 4, 8"):
    training.load_for_eval(toy.make_task(c), c, finished_run, step=99)
  assert int(training.load_for_eval(toy.make_task(c), c, finished_run, step=4)["step"]) == 4


def test_a_size_of_zero_is_refused_before_training():
  # As `--config.out_dim=0` of the spelling method builds (its init tolerates the size; saving it would not).
  state = {"params": {"W": jax.ShapeDtypeStruct((768, 0), "float32")}, "step": jax.ShapeDtypeStruct((), "int32")}
  with pytest.raises(UserError, match=r"the config builds empty arrays \(params/W \[768, 0\]\); a size in the "
                                      r"config is 0"):
    training.workdir.refuse_empty_state(state)
  training.workdir.refuse_empty_state({"step": state["step"]})


def test_metric_history_reads_the_records_that_have_the_key(tmp_path):
  records = [{"step": 1, "train/loss": 2.5}, {"step": 2, "eval/top1": 0.25}, {"step": 3, "train/loss": 1.5}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
  assert training.metrics.read_records(tmp_path) == records
  assert training.metrics.history(tmp_path, "train/loss") == [(1, 2.5), (3, 1.5)]
  assert training.metrics.history(tmp_path, "eval/top1") == [(2, 0.25)]
