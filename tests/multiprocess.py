"""Runs one command in N real JAX processes joined over 127.0.0.1, as a pod's hosts would run it.

Each process gets the same argv, its own `JAX_PROCESS_ID`, a share of the 8 CPU devices
(`--xla_force_host_platform_device_count`) and its own log file. `jax.distributed.initialize` really runs
(through `jaxlab.parallel.initialize`); nothing is faked.

Run as a module, `python -m tests.multiprocess ARGS...` is `jaxlab ARGS...` that also records, per process,
which rows of the training stream it read (`<JAXLAB_TEST_LOG>.reads.<process>`) and which files it opened for
writing (`<JAXLAB_TEST_LOG>.writes.<process>`).
"""

from collections.abc import Callable, Sequence
import dataclasses
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parents[1]
DEVICES = 8
LOG_ENV = "JAXLAB_TEST_LOG"
# Tiny models: XLA's CPU compile time dominates, and these cut it by a third (every run, 1 or N processes).
FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(index: int, count: int, port: int, extra: dict | None = None) -> dict:
  """The environment of process `index` of `count`: the cluster variables and its CPU devices."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
             XLA_FLAGS=" ".join([*flags, *FAST_COMPILE, f"--xla_force_host_platform_device_count={DEVICES // count}"]))
  if count > 1:
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(count),
               JAX_PROCESS_ID=str(index))
  env.update(extra or {})
  return env


@dataclasses.dataclass
class Cluster:
  """N processes of one command, each in its own process group (so that a timeout kills all it started).

  `env` is added to every process' environment, `process_env[i]` to process i's only.
  """
  argv: Sequence[str]
  count: int
  logs: Path
  env: dict | None = None
  process_env: dict[int, dict] = dataclasses.field(default_factory=dict)
  procs: list = dataclasses.field(default_factory=list)

  def start(self) -> "Cluster":
    self.logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    for i in range(self.count):
      env = process_env(i, self.count, port, {**(self.env or {}), **self.process_env.get(i, {})})
      with open(self.log_path(i), "w") as log:
        self.procs.append(subprocess.Popen([sys.executable, *self.argv], cwd=REPO, env=env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))
    return self

  def log_path(self, i: int) -> Path:
    return self.logs / f"process_{i}.log"

  def log(self, i: int) -> str:
    return self.log_path(i).read_text(errors="replace")

  def all_logs(self) -> str:
    return "\n".join(f"----- process {i} -----\n{self.log(i)[-6000:]}" for i in range(self.count))

  def signal(self, i: int, signum: int) -> None:
    self.procs[i].send_signal(signum)

  def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `condition` while every process runs; fails with every log if one exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
      if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
        self.kill()
        raise AssertionError(f"{what} never happened\n{self.all_logs()}")
      time.sleep(0.1)

  def wait_for(self, i: int, text: str, timeout: float) -> None:
    """Waits until `text` appears in process i's log."""
    self.wait_until(lambda: text in self.log(i), timeout, f"{text!r} in process {i}'s log")

  def wait(self, timeout: float, first: int | None = None) -> list[int]:
    """Every process' exit code; on a timeout all are killed and the logs shown. With `first`, waits for
    that process only and kills the others (a host lost: the rest would wait in a collective)."""
    deadline = time.monotonic() + timeout
    for proc in self.procs if first is None else [self.procs[first]]:
      try:
        proc.wait(max(deadline - time.monotonic(), 0.1))
      except subprocess.TimeoutExpired:
        self.kill()
        raise AssertionError(f"timed out after {timeout:.0f} s\n{self.all_logs()}") from None
    self.kill()
    return [p.returncode for p in self.procs]

  def kill(self) -> None:
    for proc in self.procs:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(argv: Sequence[str], count: int, logs: Path, *, timeout: float = 300, expect: int | None = 0,
        **kwargs) -> Cluster:
  """Runs `python ARGV` in `count` processes; asserts each exits with `expect` (None: any), showing the logs."""
  cluster = Cluster(argv, count, logs, **kwargs).start()
  codes = cluster.wait(timeout)
  if expect is not None:
    assert codes == [expect] * count, f"exit codes {codes}\n{cluster.all_logs()}"
  return cluster


def jaxlab(*args: str) -> list[str]:
  """The argv of `jaxlab ARGS` with this module's read and write logs."""
  return ["-m", "tests.multiprocess", *args]


def logged(prefix: Path, kind: str, count: int) -> list[list[str]]:
  """Per process, the lines of its `kind` ('reads' or 'writes') log."""
  paths = [Path(f"{prefix}.{kind}.{i}") for i in range(count)]
  return [p.read_text().split("\n")[:-1] if p.is_file() else [] for p in paths]


def _record(prefix: str) -> None:
  """Logs the rows of the training stream this process reads, and the files it opens for writing."""
  import builtins
  import io
  import jax
  import safetensors.numpy
  from jaxlab.data import pipeline

  def log(kind, text):
    with original_open(f"{prefix}.{kind}.{jax.process_index()}", "a") as f:
      f.write(f"{text}\n")

  original_batches, original_open, original_save = pipeline.process_batches, builtins.open, safetensors.numpy.save_file

  def process_batches(ds, global_batch):
    return original_batches(ds.map_with_index(lambda i, x: (log("reads", i), x)[1]), global_batch)

  def logging_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and isinstance(file, (str, os.PathLike)):
      log("writes", os.path.abspath(file))
    return original_open(file, mode, *args, **kwargs)

  def save_file(tensors, filename, *args, **kwargs):
    log("writes", os.path.abspath(filename))
    return original_save(tensors, filename, *args, **kwargs)

  pipeline.process_batches = process_batches
  builtins.open = io.open = logging_open
  safetensors.numpy.save_file = save_file


if __name__ == "__main__":
  from jaxlab import cli
  if os.environ.get(LOG_ENV):
    _record(os.environ[LOG_ENV])
  sys.exit(cli.main(sys.argv[1:]))
