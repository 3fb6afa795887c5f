"""The attention function: the blocked CPU path equals XLA's dense attention, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import nn as jnn
from jaxlab.nn import attention


def _qkv(length, key_length, heads=2, head_dim=8, seed=0):
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(2, length, heads, head_dim)).astype(np.float32)
  k, v = (rng.normal(size=(2, key_length, heads, head_dim)).astype(np.float32) for _ in range(2))
  return q, k, v


@pytest.mark.parametrize("length,key_length", [(attention.QUERY_BLOCK * 2, 300), (attention.QUERY_BLOCK + 37, 77)])
def test_blocked_matches_dense_values_and_gradients(length, key_length):
  q, k, v = _qkv(length, key_length)
  w = np.random.default_rng(1).normal(size=q.shape).astype(np.float32)  # a loss that weights every output

  def loss(implementation, scale):
    f = lambda q, k, v: jnp.sum(w * jnn.dot_product_attention(q, k, v, scale=scale, implementation=implementation))
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

  for scale in (None, 0.1):
    value, grads = loss("blocked", scale)(q, k, v)
    value_ref, grads_ref = loss("xla", scale)(q, k, v)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5, atol=1e-4)
    for g, g_ref in zip(grads, grads_ref):
      np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-5)


def test_cpu_default_is_blocked_only_for_long_unmasked_queries():
  q, _, _ = _qkv(attention.QUERY_BLOCK + 1, 4)
  assert attention._use_blocked(q, None, None, False)
  assert not attention._use_blocked(q[:, :attention.QUERY_BLOCK], None, None, False)
  assert not attention._use_blocked(q, None, np.ones((1, 1, 1, 4), bool), False)
  assert not attention._use_blocked(q, None, None, True)


def test_blocked_refuses_masks():
  q, k, v = _qkv(4, 4)
  with pytest.raises(ValueError, match="no mask"):
    jnn.dot_product_attention(q, k, v, is_causal=True, implementation="blocked")
