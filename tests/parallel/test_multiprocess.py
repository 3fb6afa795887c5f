"""Real multi-process runs over 127.0.0.1: N processes train as one, write once, and stop together.

Each test starts `jaxlab` (or the loop's toy task) in 1, 2 or 4 processes that share the 8 CPU devices, with
`fsdp` spanning the processes, and compares what they leave behind with a one-process run.
"""

import json
from pathlib import Path
import signal

import chex
import numpy as np
import pytest
from safetensors.numpy import load_file

from jaxlab.training import loop
from tests import multiprocess as mp

GLOBAL_BATCH, STEPS = 8, 4
AIRLETTERS = [
    "train", "airletters", "--config", "train/configs/airletters.py:tiny", f"--config.total_steps={STEPS}",
    f"--config.batch_size={GLOBAL_BATCH}", "--config.log_every=1", "--config.checkpoint_every=2",
    "--config.eval_batch_size=8", "--config.num_frames=4", "--config.image_size=16", "--config.model.patch_size=8",
    "--config.model.num_hidden_layers=1", "--config.model.hidden_size=32", "--config.model.intermediate_size=64",
    "--config.mesh.data=1", "--config.mesh.fsdp=8"]


@pytest.fixture(scope="module")
def airletters_data(tmp_path_factory):
  from jaxlab.data import airletters, airletters_synth
  from jaxlab.data import cli as data_cli
  root = tmp_path_factory.mktemp("airletters")
  airletters_synth.write_dataset(root / "manual", {"train": 4, "validation": 1, "test": 1},
                                 labels=airletters.LABELS[:4], workers=1)
  data_cli.build("airletters", root / "manual", root / "data", "fps15_short48")
  return root / "data"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  """One XLA compilation cache for every run here: a restarted cluster compiles nothing again."""
  return tmp_path_factory.mktemp("xla_cache")


def train_curve(workdir: Path) -> dict[int, float]:
  """step -> train loss; a step logged again after a resume counts once, with its last value."""
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}


def assert_written_by_process_zero(writes: list[list[str]], workdir: Path, expected: list[str]):
  """Files outside the checkpoints are opened for writing by process 0 only, and include `expected`."""
  outside = [[w for w in ws if w.startswith(str(workdir)) and "/checkpoints/" not in w] for ws in writes]
  assert all(not w for w in outside[1:]), outside[1:]
  for name in expected:
    assert any(w.startswith(str(workdir / name)) for w in outside[0]), (name, outside[0])


def assert_own_rows(reads: list[list[str]], global_batch: int, steps: int):
  """Process p read only rows p * L ... (p + 1) * L - 1 of each global batch, and every trained row was read."""
  local = global_batch // len(reads)
  rows = [{int(r) for r in rs} for rs in reads]
  for p, own in enumerate(rows):
    assert own and all((r % global_batch) // local == p for r in own), (p, sorted(own)[:20])
  assert set(range(steps * global_batch)) <= set().union(*rows)


def test_airletters_on_one_two_and_four_processes_is_one_run(tmp_path, airletters_data, cache):
  """The same loss curve and exported weights on 1, 2 and 4 processes (fsdp across all of them); each
  process reads only its rows; exports and config.json are written once; a 2-process run that loses a host
  after its step-2 checkpoint and is restarted whole ends where the uninterrupted runs do."""
  def command(workdir):
    return mp.jaxlab(*AIRLETTERS, "--workdir", str(workdir), f"--config.data_dir={airletters_data}",
                     f"--config.compilation_cache_dir={cache}")

  runs = {}
  for count in (1, 2, 4):
    workdir, log = tmp_path / f"p{count}", tmp_path / f"p{count}-log"
    env = {mp.LOG_ENV: str(log)}
    if count == 2:  # process 1 dies (SIGKILL) after step 3, its step-2 checkpoint committed
      cluster = mp.Cluster(command(workdir), count, tmp_path / "p2-killed", env=env,
                           process_env={1: {loop._KILL_AT_STEP_ENV: "3"}}).start()
      assert cluster.wait(300, first=1)[1] == -signal.SIGKILL, cluster.all_logs()
    cluster = mp.run(command(workdir), count, tmp_path / f"p{count}-logs", env=env)
    if count == 2:
      assert "resumed from step 2" in cluster.log(0), cluster.all_logs()
    assert "exported" in cluster.log(0) and all("exported" not in cluster.log(i) for i in range(1, count))
    if count > 1:
      assert_own_rows(mp.logged(log, "reads", count), GLOBAL_BATCH, STEPS)
    assert_written_by_process_zero(mp.logged(log, "writes", count), workdir,
                                   ["config.json", "metrics.jsonl", "tensorboard", "export/videomae"])
    runs[count] = (train_curve(workdir), load_file(str(workdir / "export/videomae/model.safetensors")))

  curve, weights = runs[1]
  assert sorted(curve) == list(range(1, STEPS + 1))
  print({count: [round(v, 6) for v in c.values()] for count, (c, _) in runs.items()})
  for count in (2, 4):
    other_curve, other_weights = runs[count]
    assert sorted(other_curve) == sorted(curve)
    np.testing.assert_allclose([other_curve[s] for s in curve], list(curve.values()), rtol=1e-5)
    print(count, "processes: max |weight difference| =",
          max(float(np.abs(weights[k] - other_weights[k]).max()) for k in weights))
    chex.assert_trees_all_close(other_weights, weights, atol=1e-5, rtol=1e-5)
  transformers = pytest.importorskip("transformers")
  reference = transformers.VideoMAEForVideoClassification.from_pretrained(tmp_path / "p4/export/videomae")
  chex.assert_trees_all_close({k: v.numpy() for k, v in reference.state_dict().items() if k in weights},
                              runs[4][1], atol=0, rtol=0)


def toy(workdir: Path, cache: Path, *overrides: str) -> list[str]:
  """The loop's toy task (tests/training/toy.py) as a script, sharing the compilation cache."""
  return ["-m", "tests.training.toy", str(workdir), f"compilation_cache_dir={cache}", *overrides]


def saved_step(log: str) -> int:
  """The step in the `{'preempted': True, 'step': N, ...}` line that the toy prints at its end."""
  line = next(l for l in log.splitlines() if l.startswith("{'preempted': True"))
  return int(line.split("'step': ")[1].split(",")[0])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_one_process_stops_all_at_one_saved_step(tmp_path, cache, signum):
  """Process 1 alone is signalled (a preempted host, or Ctrl-C in its terminal); both save the same step
  through JAX's preemption service and exit 0, and that checkpoint restores."""
  workdir = tmp_path / "run"
  cluster = mp.Cluster(toy(workdir, cache, "total_steps=100000", "log_every=1", "checkpoint_every=100000"), 2,
                       tmp_path / "logs").start()
  metrics = workdir / "metrics.jsonl"
  cluster.wait_until(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3, 240,
                     "three logged steps")
  cluster.signal(1, signum)
  assert cluster.wait(240) == [0, 0], cluster.all_logs()
  steps = [saved_step(cluster.log(i)) for i in range(2)]
  assert steps[0] == steps[1] >= 3, cluster.all_logs()
  assert f"preempted: saved step {steps[0]}" in cluster.log(0)
  from jaxlab import training
  from tests.training import toy as toy_task
  c = toy_task.config()
  state = training.load_for_eval(toy_task.make_task(c), c, workdir)
  assert int(state["step"]) == steps[0]


def test_a_non_finite_loss_stops_every_process_at_the_same_step(tmp_path, cache):
  """Batch 6 is the first with NaNs (rows 80..95 of the global stream, spread over both processes)."""
  cluster = mp.run(toy(tmp_path / "run", cache, "total_steps=20", "log_every=1", "checkpoint_every=2",
                       "async_checkpointing=false", "poison_from_example=80"), 2, tmp_path / "logs", expect=1)
  for i in range(2):
    assert "at step 6" in cluster.log(i) and "last good checkpoint is step 4" in cluster.log(i), cluster.all_logs()


@pytest.fixture(scope="module")
def something_else_data(tmp_path_factory):
  from jaxlab.data import cli as data_cli
  from jaxlab.data import something_else_synth
  root = tmp_path_factory.mktemp("something_else")
  release = something_else_synth.write_dataset(root / "release", {"train": 24, "validation": 8}, seed=1)
  data_cli.build("something_else", release, root / "tfds", "compositional_boxes")
  return root / "tfds"


FSDP_ACROSS = ["--config.mesh.data=1", "--config.mesh.fsdp=8", "--config.log_every=1"]
METHODS = {  # the train command's arguments (3 steps), its global batch, and what it exports
    "esd": (["train", "esd", "--config", "train/configs/esd.py:tiny", "--config.steps=3", "--config.ddim_steps=4",
             "--config.checkpoint_every=3"], 8,
            ["export/unet/diffusion_pytorch_model.safetensors", "export/esd.safetensors"]),
    "something_else": (["train", "something_else", "--config", "train/configs/something_else.py:tiny",
                        "--config.epochs=1", "--config.batch_size=48", "--config.eval_batch_size=48"], 48,
                       ["export/stin_oie_nl.safetensors"]),
    "spelling": (["train", "spelling", "--config", "train/configs/spelling.py:tiny", "--config.clip.random.image_size=32",
                  "--config.clip.random.patch_size=8", "--config.clip.random.hidden_size=32",
                  "--config.clip.random.projection_dim=32", "--config.data.num_classes=4", "--config.data.train_size=64",
                  "--config.data.val_size=16", "--config.out_dim=16", "--config.batch_size=16",
                  "--config.total_steps=3", "--config.checkpoint_every=3"], 16, ["projection.npy", "results.md"]),
}


def exported_arrays(workdir: Path, names: list[str]) -> list[dict]:
  """The arrays of the exports among `names` (safetensors files, .npy)."""
  return [load_file(str(workdir / n)) if n.endswith(".safetensors") else {"array": np.load(workdir / n)}
          for n in names if n.endswith((".safetensors", ".npy"))]


@pytest.mark.parametrize("method", METHODS)
def test_method_on_two_processes_is_one_run(tmp_path, cache, method, request):
  """ESD, Something-Else and CLIP spelling, fsdp across both processes: the loss curve and exports of one
  process; each process reads its own rows; everything outside the checkpoints is written by process 0."""
  args, global_batch, exports = METHODS[method]
  if method == "something_else":
    args = [*args, f"--config.data_dir={request.getfixturevalue('something_else_data')}"]
  runs = {}
  for count in (1, 2):
    workdir, log = tmp_path / f"p{count}", tmp_path / f"p{count}-log"
    mp.run(mp.jaxlab(*args, *FSDP_ACROSS, "--workdir", str(workdir), f"--config.compilation_cache_dir={cache}"),
           count, tmp_path / f"p{count}-logs", env={mp.LOG_ENV: str(log)})
    if count == 2:
      assert_own_rows(mp.logged(log, "reads", count), global_batch, steps=3)
    assert_written_by_process_zero(mp.logged(log, "writes", count), workdir, ["config.json", *exports])
    runs[count] = (train_curve(workdir), exported_arrays(workdir, exports))
  (curve, files), (other_curve, other_files) = runs[1], runs[2]
  assert sorted(curve) == sorted(other_curve) and len(curve) >= 3
  np.testing.assert_allclose([other_curve[s] for s in curve], list(curve.values()), rtol=1e-5)
  chex.assert_trees_all_close(other_files, files, atol=1e-5, rtol=1e-5)
  if method == "esd":
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DConditionModel.from_pretrained(tmp_path / "p2/export/unet")
    chex.assert_trees_all_close({k: v.numpy() for k, v in unet.state_dict().items()}, other_files[0], atol=0, rtol=0)


def test_a_failed_write_on_process_zero_stops_every_process(tmp_path):
  """Process 0 fails making the spelling features (no CLIP there); process 1, waiting for them, is told."""
  args = METHODS["spelling"][0]
  cluster = mp.run(mp.jaxlab(*args, "--config.clip.path=/nowhere", "--workdir", str(tmp_path / "run")), 2,
                   tmp_path / "logs", expect=2)
  assert "clip.path '/nowhere' is not a folder" in cluster.log(0)
  assert "process 0 failed while writing the spelling features" in cluster.log(1)
