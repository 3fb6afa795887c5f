"""Stopping on a preemption notice (SIGTERM) or Ctrl-C (SIGINT): every process saves the same step, then exits.

One process: the signal sets a flag that the loop reads between steps. Several processes: a flag per process
would send one host into a collective save alone, so the stop step is agreed. JAX's preemption service
(started by `jax.distributed.initialize`) catches SIGTERM itself, in C++ (a Python handler would replace
its handler, not chain it), spreads the notice to every process and names one step for all of them to save
at (`multihost_utils.reached_preemption_sync_point`). Ctrl-C joins the same path by sending this process a
SIGTERM. Where that service is off, the processes agree through a collective at every step instead.

A second Ctrl-C stops at once (KeyboardInterrupt), without saving.
"""

import os
import signal
import sys

import jax
from jax.experimental import multihost_utils

from jaxlab import parallel


class StopRequests:
  """The signal handlers for the loop's lifetime (a context manager) and the agreed `reached(step)`."""

  def __init__(self):
    self.jax_notices = jax.process_count() > 1 and jax.config.jax_enable_preemption_service
    self.requested = False
    self._previous = {}

  def __enter__(self) -> "StopRequests":
    if not self.jax_notices:
      self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
    self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _on_sigterm(self, signum, frame) -> None:
    self.requested = True

  def _on_sigint(self, signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the next Ctrl-C raises KeyboardInterrupt
    sys.stderr.write("\njaxlab: Ctrl-C: saving a checkpoint at the next step, then stopping "
                     "(press Ctrl-C again to stop at once, without saving)\n")
    if self.jax_notices:
      os.kill(os.getpid(), signal.SIGTERM)  # JAX's handler takes it from here
    else:
      self.requested = True

  def reached(self, step: int) -> bool:
    """True on every process at the same step once any of them was asked to stop. Call it at every step."""
    if self.jax_notices:
      return multihost_utils.reached_preemption_sync_point(step)
    return parallel.agree_any(self.requested)
