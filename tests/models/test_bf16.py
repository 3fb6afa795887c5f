"""bf16 compute with float32 parameters, for every model family (`jaxlab.bench.parity`, which states and
justifies the bounds): the bf16 forward stays within its bound of float32, and its matmuls and convolutions
really take bf16 inputs."""

import jax
import pytest

from jaxlab.bench import parity


@pytest.mark.parametrize("family", parity.FAMILIES)
def test_bf16_compute_matches_float32(family):
  row = parity.check(family)
  assert row["in_float32"] == parity.FAMILIES[family][2], f"{row['in_float32']} of {row['matmuls']} in float32"
  assert 0 < row["error"] <= row["bound"], f"bf16 is {row['error']:.2e} from float32; the bound is {row['bound']:.2e}"
  assert row["ok"]


def test_parity_tests_run_at_full_float32_precision():
  # tests/conftest.py: without it, GPUs would run the float32 parity tests in TF32 (10 significant bits).
  assert jax.config.jax_default_matmul_precision == "highest"
