"""Runs an interpreter's code in a confined child process and returns its results, never raising.

What the child does (`sandbox_child.py`), in order, before the code runs:
  * a new network namespace, so there is no network at all (when the kernel allows unsharing: as root, or
    through an unprivileged user namespace);
  * a new mount namespace in which every mount is remounted read-only and a fresh 64 MB tmpfs becomes the
    working directory (same condition);
  * resource limits: CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), file size (RLIMIT_FSIZE), no core
    files, and no new processes or threads (RLIMIT_NPROC = 0); when started as root it first drops to the
    `nobody` user, since the kernel does not apply RLIMIT_NPROC to root;
  * no_new_privs, and death with its parent;
  * `socket` replaced by a function that refuses, and an audit hook that refuses sockets, processes
    (fork, exec, spawn, system, subprocess), ctypes, mmap, changing limits, writes and file-system changes
    outside the working directory, and reads outside the Python installation and the working directory.
The parent kills the child's whole process group after a wall-clock limit, and reports `timeout` (wall or
CPU limit), `error` (the code failed to load, or the child died, e.g. out of memory) or `ok` with one result
per call (a value, or the error that call raised).

What it does not guarantee: the audit hook is a Python-level guard, so native code already loaded in the
child (numpy, the preloaded modules) is not confined by it; where namespaces are unavailable (e.g. a
container that forbids `unshare`) the network and the read-only view are missing, and where the parent is
not root the child keeps the user's file permissions. Which layers applied is reported in `isolation`.
For hostile code, run the scorer inside a container or VM as well.
"""

import dataclasses
import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import tempfile

# Imported before confinement, so interpreter code can import them once the installation is unreadable.
PRELOAD = ("math", "cmath", "re", "string", "random", "itertools", "functools", "collections", "statistics",
           "operator", "decimal", "fractions", "bisect", "heapq", "copy", "typing", "unicodedata", "numpy",
           "numpy.random", "numpy.linalg", "numpy.fft")
# Preloaded only when the code imports them (they take a while to import).
PRELOAD_ON_DEMAND = ("scipy", "scipy.special", "scipy.interpolate", "scipy.optimize", "scipy.stats",
                     "scipy.signal", "scipy.integrate")
_CHILD = Path(__file__).with_name("sandbox_child.py")
NOBODY = 65534


@dataclasses.dataclass(frozen=True)
class Limits:
  wall_seconds: float = 20.0
  cpu_seconds: int = 10
  memory_bytes: int = 2 << 30
  file_bytes: int = 16 << 20


@dataclasses.dataclass
class Result:
  status: str                     # ok | error | timeout
  results: list = dataclasses.field(default_factory=list)  # per call: {"value"} | {"complex"} | {"error"}
  error: str = ""
  function: str = ""
  output: str = ""
  isolation: list = dataclasses.field(default_factory=list)


def run(code: str, calls: list[list], *, kind: str = "number", limits: Limits = Limits(),
        namespaces: bool = True) -> Result:
  """Runs `code` and calls its last top-level function with each argument list in `calls`.

  `kind` is `number` (results are numbers) or `str` (results must be strings).
  """
  workdir = tempfile.mkdtemp(prefix="find-sandbox-")
  try:
    if os.getuid() == 0:
      os.chown(workdir, NOBODY, NOBODY)
    request = {"code": code, "calls": calls, "kind": kind, "workdir": workdir, "preload": _preload(code),
               "namespaces": namespaces,
               "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes,
                          "file_bytes": limits.file_bytes}}
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-I", "-B", "-c", _CHILD.read_text()], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=workdir,
                               start_new_session=True)
    try:
      stdout, stderr = process.communicate(json.dumps(request).encode(), timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
      _kill_group(process)
      return Result("timeout", error=f"wall-clock limit of {limits.wall_seconds:g}s exceeded")
    if process.returncode == -signal.SIGXCPU or process.returncode == -signal.SIGKILL and not stdout:
      return Result("timeout", error=f"CPU limit of {limits.cpu_seconds}s exceeded")
    try:
      reply = json.loads(stdout.decode())
    except (json.JSONDecodeError, UnicodeDecodeError):
      tail = stderr.decode(errors="replace")[-500:]
      return Result("error", error=f"the sandboxed process died (exit status {process.returncode}) {tail}".strip())
    return Result(reply["status"], reply.get("results", []), reply.get("error", ""), reply.get("function", ""),
                  reply.get("output", ""), reply.get("isolation", []))
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def _preload(code: str) -> list[str]:
  # A regular expression, not `ast`: scoring runs sandboxes from threads, and CPython 3.11's parser is not
  # thread-safe ("AST constructor recursion depth mismatch").
  wanted = [m for m in PRELOAD_ON_DEMAND if re.search(rf"^\s*(?:import|from)\s+{re.escape(m)}\b", code, re.M)]
  return list(PRELOAD) + wanted


def _kill_group(process: subprocess.Popen) -> None:
  """Kills the child's session (it is still running, so its process group id is still its own)."""
  try:
    os.killpg(process.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass
  process.wait()
