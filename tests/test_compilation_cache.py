"""The persistent compilation cache: configured once by the command for every verb, and it fills."""

import jax
import jax.numpy as jnp
import pytest
from jax._src import compilation_cache as jax_cache

from jaxlab import cli, compilation_cache


@pytest.mark.parametrize("argv", [["bench", "nomodel"], ["eval", "airletters", "--workdir", "/nonexistent/run"],
                                  ["demo", "--only", "nomethod"], ["train", "nomethod", "--config", "x.py",
                                                                   "--workdir", "w"]])
def test_every_verb_sets_up_the_cache_first(monkeypatch, tmp_path, argv):
  seen = []
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path))
  monkeypatch.setattr(compilation_cache, "configure", seen.append)
  cli.main(argv)
  assert seen[:1] == [str(tmp_path)]


def test_compiled_programs_land_in_the_cache(monkeypatch, tmp_path):
  monkeypatch.setattr(compilation_cache, "MIN_COMPILE_SECONDS", 0.0)
  jax_cache.reset_cache()
  try:
    compilation_cache.configure(str(tmp_path))
    jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
    assert any(tmp_path.iterdir())
  finally:
    compilation_cache.configure("")
    jax_cache.reset_cache()
  assert not jax.config.jax_enable_compilation_cache
