"""The PyTorch reference side of `jaxlab bench`, in a process of its own.

Sharing a process, the two sides starve each other: on a GPU, JAX preallocates most of the memory that the
reference then lacks; on a CPU, each runtime's thread pool competes with the other's. The reference therefore
runs in a child process (started with 'spawn': forking a process that has started JAX's threads can deadlock),
which builds the reference step once per bench and then runs one step each time it is asked, so that the two
sides still take turns and share any load from other processes alike.
"""

import multiprocessing
import pickle
import resource
import time
import traceback


def _peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _release_cuda_memory() -> None:
  """Frees the previous bench's cached CUDA memory and restarts the peak count, so each bench's peak is its own."""
  import gc
  import sys
  gc.collect()
  torch = sys.modules.get("torch")
  if torch is not None and torch.cuda.is_available():
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def _serve(conn) -> None:
  """The child's loop: ('load', make) builds a step, 'step' runs it, 'memory' reports its peak memory."""
  from jaxlab.bench import hardware
  step = memory = None
  while True:
    command, *args = conn.recv()
    try:
      if command == "load":
        step = memory = None
        _release_cuda_memory()
        step, memory, device = args[0]()
        conn.send(("ok", (device, hardware.torch_threads())))
      elif command == "step":
        t = time.perf_counter()
        step()
        conn.send(("ok", time.perf_counter() - t))
      elif command == "memory":
        device_bytes = memory()
        conn.send(("ok", (device_bytes, "CUDA peak allocated") if device_bytes is not None else
                   (_peak_rss_bytes(), "peak RSS of the reference process")))
      elif command == "stop":
        conn.send(("ok", None))
        return
    except Exception:  # reported to the parent, which raises it there
      conn.send(("error", traceback.format_exc()))


class ReferenceProcess:
  """A child process that runs reference steps; one serves every bench of a run (PyTorch is imported once)."""

  def __init__(self):
    context = multiprocessing.get_context("spawn")
    self._conn, child = context.Pipe()
    self._process = context.Process(target=_serve, args=(child,), daemon=True)
    self._process.start()
    child.close()

  def _ask(self, *message):
    self._conn.send(message)
    status, value = self._conn.recv()
    if status == "error":
      raise RuntimeError(f"the PyTorch reference failed in its process:\n{value}")
    return value

  def load(self, make) -> tuple[str, str]:
    """Builds the reference step `make()` (a picklable callable returning `(step, peak memory fn, device)`);
    returns (its device, its thread counts)."""
    return self._ask("load", make)

  @property
  def pid(self) -> int:
    return self._process.pid

  def step(self) -> float:
    """Runs one step; returns its seconds as the child measured them (no pipe latency)."""
    return self._ask("step")

  def memory(self) -> tuple[int, str]:
    return self._ask("memory")

  def close(self) -> None:
    if self._process.is_alive():
      self._ask("stop")
    self._process.join(timeout=30)


def picklable(make) -> bool:
  try:
    pickle.dumps(make)
  except (pickle.PicklingError, AttributeError, TypeError):
    return False
  return True


class InProcessReference:
  """The fallback for a `make` that cannot be sent to another process (a lambda): the same interface, here."""

  def load(self, make):
    from jaxlab.bench import hardware
    self._step, self._memory, device = make()
    return device, hardware.torch_threads() + " (in the bench's own process)"

  def step(self) -> float:
    t = time.perf_counter()
    self._step()
    return time.perf_counter() - t

  def memory(self):
    device_bytes = self._memory()
    return (device_bytes, "CUDA peak allocated") if device_bytes is not None else (None, "")

  def close(self) -> None:
    pass
