"""The pod and cluster launch scripts, run with --dry-run: what they would run, and that an argument with
spaces and quotes reaches `jaxlab` on the far side intact."""

import json
import os
from pathlib import Path
import shlex
import subprocess
import time

REPO = Path(__file__).resolve().parents[2]
TRICKY = "--config.concept=Van Gogh's \"starry\" night; echo $HOME"
JAX_VERSION = next(l.split("==")[1] for l in (REPO / "requirements.lock").read_text().splitlines()
                   if l.startswith("jax=="))


def dry_run(script: str, *args: str, **env) -> list[list[str]]:
  """The commands the script prints (`+ ...`, shell-quoted), each split back into its argv."""
  out = subprocess.run(["bash", str(REPO / "tpu" / script), "--dry-run", *args], capture_output=True, text=True,
                       env={**os.environ, **env}, check=True).stdout
  return [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("+ ")]


def remote_command(argv: list[str]) -> str:
  assert argv[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] and "--worker=all" in argv
  return argv[argv.index("--command") + 1]


def fake_home(tmp_path: Path) -> Path:
  """A worker's home with the copy and an environment whose `jaxlab` prints its arguments as JSON."""
  home = tmp_path / "home"
  (home / "jaxlab").mkdir(parents=True)
  stub = home / "jaxlab-venv" / "bin" / "jaxlab"
  stub.parent.mkdir(parents=True)
  stub.write_text("#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
  stub.chmod(0o755)
  return home


def test_tpu_pod_train_runs_the_same_quoted_command_on_every_worker(tmp_path):
  env = dict(TPU_NAME="pod", ZONE="us-east5-a")
  args = ["airletters", "train/configs/airletters.py:paper", "--workdir", "gs://bucket/my runs", TRICKY]
  (ssh,) = dry_run("tpu_pod.sh", "train", *args, **env)
  home = fake_home(tmp_path)
  subprocess.run(["bash", "-c", remote_command(ssh)], env={**os.environ, "HOME": str(home)}, check=True)
  log = home / "jaxlab-train.log"
  deadline = time.monotonic() + 30
  while not log.is_file() or not log.read_text().strip():  # it runs in the background (nohup ... &)
    assert time.monotonic() < deadline
    time.sleep(0.05)
  assert json.loads(log.read_text()) == ["train", *args]


def test_tpu_pod_copy_leaves_out_venv_and_runs_and_replaces_the_last_copy(tmp_path):
  repo = tmp_path / "repo"
  for name in ("jaxlab/cli.py", ".venv/bin/python", "runs/demo/big.bin", ".git/HEAD", "README.md"):
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(name)
  env = dict(TPU_NAME="pod", ZONE="z", REPO=str(repo), TMPDIR=str(tmp_path))
  tar, scp, ssh = dry_run("tpu_pod.sh", "copy", **env)
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
  subprocess.run(tar, check=True)
  home = fake_home(tmp_path)
  for _ in range(2):  # a second copy replaces the first, it does not nest inside it
    (home / "jaxlab.tar.gz").write_bytes(Path(tar[tar.index("-czf") + 1]).read_bytes())
    subprocess.run(["bash", "-c", remote_command(ssh)], env={**os.environ, "HOME": str(home)}, check=True)
  copied = sorted(str(p.relative_to(home / "jaxlab")) for p in (home / "jaxlab").rglob("*") if p.is_file())
  assert copied == ["README.md", "jaxlab/cli.py"]


def test_tpu_pod_install_pins_jax_tpu_and_create_delete():
  env = dict(TPU_NAME="pod", ZONE="z")
  (ssh,) = dry_run("tpu_pod.sh", "install", **env)
  assert "~/jaxlab-venv/bin/pip install -q -r requirements.lock" in remote_command(ssh)
  assert f"'jax[tpu]=={JAX_VERSION}'" in remote_command(ssh)
  (create,) = dry_run("tpu_pod.sh", "create", ACCELERATOR_TYPE="v5p-32", **env)
  assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "pod"] and "v5p-32" in create
  (delete,) = dry_run("tpu_pod.sh", "delete", **env)
  assert delete[4:6] == ["delete", "pod"]
  (logs,) = dry_run("tpu_pod.sh", "logs", **env)
  assert remote_command(logs) == "tail -n 50 ~/jaxlab-train.log"


def test_slurm_submit_and_job_keep_arguments_whole():
  args = ["esd", "train/configs/esd.py:paper", "--workdir", "/shared/my runs", TRICKY]
  mkdir, sbatch = dry_run("gpu_slurm.sh", "submit", *args, NODES="4")
  assert mkdir[:2] == ["mkdir", "-p"]
  assert sbatch[sbatch.index("--nodes") + 1] == "4" and sbatch[sbatch.index("--ntasks-per-node") + 1] == "1"
  assert sbatch[sbatch.index("--gpus-per-node") + 1] == "8"
  job = sbatch.index(str(REPO / "tpu" / "gpu_slurm.sh"))
  assert sbatch[job + 1:] == ["job", *args]
  _, per_gpu = dry_run("gpu_slurm.sh", "submit", *args, TASKS="gpu")
  assert per_gpu[per_gpu.index("--ntasks-per-node") + 1] == "8"
  (srun,) = dry_run("gpu_slurm.sh", "job", *args)
  assert srun[0] == "srun" and srun[-len(args) - 1:] == ["train", *args]
  install = dry_run("gpu_slurm.sh", "install")
  assert [str(REPO / ".venv/bin/pip"), "install", "-q", f"jax[cuda13]=={JAX_VERSION}"] in install
