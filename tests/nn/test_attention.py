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


def test_blocked_refuses_masks():
  q, k, v = _qkv(4, 4)
  with pytest.raises(ValueError, match="no mask"):
    jnn.dot_product_attention(q, k, v, is_causal=True, implementation="blocked")


# ------------------------------------------------------------------------------- dispatch by backend (faked)

def _fake_platform(monkeypatch, backend, capability=None):
  monkeypatch.setattr(attention, "platform", lambda: (backend, capability))


def _half(length, key_length, head_dim, heads=2):
  q, k, v = _qkv(length, key_length, heads, head_dim)
  return tuple(jnp.asarray(x, jnp.bfloat16) for x in (q, k, v))


@pytest.mark.parametrize("capability,head_dim,expected", [
    ((9, 0), 160, "cudnn"),   # Hopper: up to 256 (SD 1.x's 160-wide levels)
    ((9, 0), 256, "cudnn"),
    ((9, 0), 264, "xla"),
    ((8, 0), 160, "xla"),     # Ampere: up to 128
    ((8, 0), 128, "cudnn"),
    ((8, 0), 40, "cudnn"),
    ((8, 6), 36, "xla"),      # not a multiple of 8
    ((7, 5), 64, "xla"),      # Turing: no flash kernel
    (None, 64, "xla"),        # a GPU that is not CUDA (ROCm)
])
def test_gpu_dispatch_by_head_size_and_compute_capability(monkeypatch, capability, head_dim, expected):
  _fake_platform(monkeypatch, "gpu", capability)
  assert attention.choose_implementation(*_half(64, 77, head_dim)) == expected


def test_gpu_dispatch_by_dtype_bias_and_mask(monkeypatch):
  _fake_platform(monkeypatch, "gpu", (9, 0))
  q, k, v = _half(16, 16, 64)
  choose = attention.choose_implementation
  assert choose(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32)) == "xla"
  assert choose(q, k, v, is_causal=True) == "cudnn"
  assert choose(q, k, v, mask=np.ones((2, 1, 1, 16), bool), is_causal=True) == "cudnn"  # CLIP text padding
  assert choose(q, k, v, mask=np.ones((2, 1, 16, 16), bool)) == "xla"                  # a dense mask
  assert choose(q, k, v, bias=np.zeros((1, 1, 16, 16), np.float32)) == "xla"


def test_tpu_and_cpu_dispatch(monkeypatch):
  q, k, v = _half(256, 256, 40)
  _fake_platform(monkeypatch, "tpu")
  assert attention.choose_implementation(q, k, v) == "tpu_flash"
  assert attention.choose_implementation(q, k, v, mask=np.ones((2, 1, 1, 256), bool), is_causal=True) == "tpu_flash"
  assert attention.choose_implementation(q, k[:, :77], v[:, :77]) == "xla"   # keys below one tile
  assert attention.choose_implementation(q, k, v, bias=np.zeros((1, 1, 256, 256), np.float32)) == "xla"
  _fake_platform(monkeypatch, "cpu")
  assert attention.choose_implementation(q, k, v) == "blocked"
  assert attention.choose_implementation(q[:, :attention.QUERY_BLOCK], k, v) == "xla"
  assert attention.choose_implementation(q, k, v, is_causal=True) == "xla"
  assert attention.choose_implementation(q, k, v, mask=np.ones((1, 1, 1, 256), bool)) == "xla"


def _masked_reference(q, k, v, mask, is_causal):
  return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal, implementation="xla")


@pytest.mark.parametrize("prefix", [True, False])
def test_cudnn_gets_a_padding_mask_as_key_lengths(monkeypatch, prefix):
  """With the backend faked as a GPU, a right-padding mask reaches cuDNN as key lengths (the kernel is stood in
  for by XLA given the same lengths); any other key mask takes the dense XLA path. Both equal masked XLA."""
  _fake_platform(monkeypatch, "gpu", (9, 0))
  real = jax.nn.dot_product_attention
  taken = []

  def fake(q, k, v, *, implementation, key_value_seq_lengths=None, **kw):
    if implementation == "cudnn":
      jax.debug.callback(lambda lengths: taken.append(np.asarray(lengths)), key_value_seq_lengths)
      implementation = "xla"
    return real(q, k, v, implementation=implementation, key_value_seq_lengths=key_value_seq_lengths, **kw)

  monkeypatch.setattr(jax.nn, "dot_product_attention", fake)
  q, k, v = _half(12, 12, 16)
  keys = np.arange(12)[None] < np.array([[12], [5]])
  if not prefix:
    keys[1, 2] = False  # a hole: not expressible as a length
  mask = keys[:, None, None, :]
  out = jax.jit(lambda q, k, v, m: jnn.dot_product_attention(q, k, v, mask=m, is_causal=True))(q, k, v, mask)
  monkeypatch.setattr(jax.nn, "dot_product_attention", real)
  np.testing.assert_array_equal(np.asarray(out, np.float32),
                                np.asarray(_masked_reference(q, k, v, mask, True), np.float32))
  assert len(taken) == (1 if prefix else 0)
  if prefix:
    np.testing.assert_array_equal(taken[0], [12, 5])


@pytest.mark.parametrize("length,key_length,head_dim,masked,causal", [
    (128, 256, 32, True, True),     # two key tiles, key padding and causal (CLIP text)
    (120, 77, 40, False, False),    # sequences and head size padded to whole tiles (forced: below one tile)
])
def test_pallas_tpu_kernel_matches_xla_in_interpret_mode(monkeypatch, length, key_length, head_dim, masked,
                                                         causal):
  from jax.experimental.pallas import tpu as pltpu
  _fake_platform(monkeypatch, "tpu")
  q, k, v = _qkv(length, key_length, heads=2, head_dim=head_dim)
  q, k, v = q[:1], k[:1], v[:1]
  mask = (np.arange(key_length) < key_length - 9)[None, None, None, :] if masked else None
  implementation = "tpu_flash" if key_length < attention.TPU_BLOCK else None
  assert attention.choose_implementation(q, k, v, mask=mask, is_causal=causal) == \
      ("xla" if implementation else "tpu_flash")
  w = np.random.default_rng(1).normal(size=q.shape).astype(np.float32)

  def loss(implementation):
    f = lambda q, k, v: jnp.sum(w * jnn.dot_product_attention(q, k, v, mask=mask, is_causal=causal,
                                                             implementation=implementation))
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

  with pltpu.force_tpu_interpret_mode():
    value, grads = loss(implementation or None)(q, k, v)
  value_ref, grads_ref = loss("xla")(q, k, v)
  np.testing.assert_allclose(value, value_ref, rtol=1e-5, atol=1e-4)
  for g, g_ref in zip(grads, grads_ref):
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("implementation", ["xla", "blocked"])
def test_half_precision_attention_is_diffusers_upcast_attention(implementation):
  """bf16 inputs: float32 logits and softmax, probabilities cast to bf16 for the values, as diffusers'
  `upcast_attention` computes (so SD 2.x needs no float32 copies of q, k, v)."""
  q, k, v = (jnp.asarray(x, jnp.bfloat16) for x in _qkv(attention.QUERY_BLOCK + 8, 64, head_dim=16))
  logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * 0.25
  probs = jax.nn.softmax(logits, axis=-1).astype(jnp.bfloat16)
  upcast = jnp.einsum("bhqk,bkhd->bqhd", probs, v, preferred_element_type=jnp.float32)
  out = jnn.dot_product_attention(q, k, v, implementation=implementation)
  assert out.dtype == jnp.bfloat16
  # One bf16 rounding of the output (2^-8 relative) apart, not the ~1e-2 of bf16 logits.
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(upcast), rtol=2**-8, atol=2**-8)
