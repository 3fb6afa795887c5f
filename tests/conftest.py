"""Test settings: 8 CPU devices for sharding tests, full-precision float32 matmuls, no network, no GPU."""

import os

# XLA:CPU's backend optimisations cost more compile time than the tiny test models ever win back in run time
# (a third of the suite's time); results are the same sums, within the parity tests' tolerances.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 " +
                           FAST_COMPILE).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Float32 matmuls at full precision, so that parity tests hold on GPUs (TF32 by default) and TPUs (bf16 passes)
# as they do on CPU.
os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
# No persistent compilation cache unless a test asks for one: nothing written under ~, no compile skipped.
os.environ.setdefault("JAXLAB_COMPILATION_CACHE", "")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# `../shared/data` beside the checkout (CI, main); worktrees elsewhere point at it with JAXLAB_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("JAXLAB_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
  """The real sample files beside the checkout (`../shared/data`)."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"{SHARED_DATA} not present")
  return SHARED_DATA
