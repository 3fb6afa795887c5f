"""The persistent XLA compilation cache, set up in one place: `jaxlab.cli.main` calls `configure` before any
verb runs (train, eval, generate, bench, demo, ...), and a training config's `compilation_cache_dir` overrides it.

A second run of the same program (the same step on the same shapes, devices and flags) then loads the compiled
executable instead of compiling it again: minutes for a paper-size UNet step, seconds for the small ones.
"""

import os
from pathlib import Path

DEFAULT_DIR = "~/.cache/jaxlab/xla"
ENV = "JAXLAB_COMPILATION_CACHE"   # a directory, or empty for no cache
MIN_COMPILE_SECONDS = 2.0          # quicker compiles are not worth a file


def default_directory() -> str:
  return os.environ.get(ENV, DEFAULT_DIR)


def configure(directory: str | None) -> None:
  """Caches programs whose compilation took over `MIN_COMPILE_SECONDS` in `directory`; empty turns it off.

  Takes effect if called before the process's first compilation (jax opens the cache once).
  """
  import jax
  jax.config.update("jax_enable_compilation_cache", bool(directory))
  if directory:
    jax.config.update("jax_compilation_cache_dir", str(Path(directory).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
