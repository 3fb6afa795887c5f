"""The CPU rewrites of 3D convolutions equal XLA's convolution, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nn import convolution

LAYOUT = ("NDHWC", "DHWIO", "NDHWC")


@pytest.mark.parametrize("x_shape,k_shape,strides,padding,groups,rewrite", [
    ((2, 5, 12, 12, 3), (5, 7, 7, 3, 8), (1, 2, 2), [(2, 2), (3, 3), (3, 3)], 1, "temporal_taps"),  # I3D stem
    ((1, 6, 9, 9, 3), (3, 3, 3, 3, 4), (2, 2, 2), [(1, 1)] * 3, 1, "temporal_taps"),
    ((1, 5, 8, 8, 8), (3, 3, 3, 2, 8), (2, 2, 2), [(1, 1)] * 3, 4, "grouped_taps"),          # ResNeXt, strided
    ((2, 4, 9, 9, 6), (1, 3, 3, 6, 5), (1, 2, 2), [(0, 0), (1, 1), (1, 1)], 1, "temporal_taps"),  # I3D spatial
    ((1, 7, 6, 5, 6), (3, 1, 1, 6, 5), (2, 1, 1), [(1, 1), (0, 0), (0, 0)], 1, "temporal_rows"),  # I3D temporal
    ((1, 6, 7, 7, 4), (3, 1, 1, 4, 3), (1, 2, 2), [(1, 1), (0, 0), (0, 0)], 1, "temporal_rows"),  # spatial stride
])
def test_rewrites_equal_the_convolution(x_shape, k_shape, strides, padding, groups, rewrite):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  k = jnp.asarray(rng.normal(size=k_shape), jnp.float32)
  assert convolution._rewrite(x, k, padding, None, None, LAYOUT, groups) == rewrite
  g = jnp.asarray(rng.normal(size=jax.eval_shape(
      lambda: jax.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=LAYOUT,
                                           feature_group_count=groups)).shape), jnp.float32)

  def loss(fn):
    f = lambda x, k: jnp.sum(g * fn(x, k, strides, padding, dimension_numbers=LAYOUT, feature_group_count=groups))
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(x, k)

  (value, grads), (value_ref, grads_ref) = loss(convolution.conv_general_dilated), loss(jax.lax.conv_general_dilated)
  np.testing.assert_allclose(value, value_ref, rtol=1e-5)
  for got, want in zip(grads, grads_ref):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_convolutions_that_stay_convolutions(monkeypatch):
  x = jnp.zeros((1, 4, 8, 8, 32))
  same = [(1, 1)] * 3
  assert convolution._rewrite(x, jnp.zeros((1, 1, 1, 32, 4)), [(0, 0)] * 3, None, None, LAYOUT, 1) is None
  assert convolution._rewrite(x, jnp.zeros((3, 1, 1, 32, 4)), [(1, 1), (1, 1), (0, 0)], None, None, LAYOUT, 1) is None
  assert convolution._rewrite(x, jnp.zeros((3, 3, 3, 16, 32)), same, None, None, LAYOUT, 2) is None  # wide groups
  assert convolution._rewrite(x, jnp.zeros((3, 3, 3, 32, 4)), same, (2, 2, 2), None, LAYOUT, 1) is None
  assert convolution._rewrite(x, jnp.zeros((3, 3, 3, 32, 4)), "SAME", None, None, LAYOUT, 1) is None
  assert convolution._rewrite(x, jnp.zeros((3, 3, 3, 32, 4)), same, None, None, LAYOUT, 1) == "temporal_taps"
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert convolution._rewrite(x, jnp.zeros((3, 3, 3, 32, 4)), same, None, None, LAYOUT, 1) is None
