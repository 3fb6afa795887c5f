"""Mapping a function over items in worker processes (dataset builds), or in this process for one worker."""

from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
import multiprocessing
import os


def map_in_processes(fn: Callable, items: Iterable, workers: int = 0, chunksize: int = 8) -> Iterator:
  """`map(fn, items)` in order, over `workers` processes (0: one per CPU core; 1: in this process).

  Workers start from a fork server, not by forking this process: forking a process that runs JAX (or any
  threads) can deadlock the child. So `fn` must be importable by name (a module-level function in `jaxlab`)
  and `items` picklable.
  """
  workers = workers or os.cpu_count() or 1
  if workers == 1:
    yield from map(fn, items)
    return
  with futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
    yield from pool.map(fn, items, chunksize=chunksize)
