"""The one attention function every model calls.

It wraps `jax.nn.dot_product_attention`, which runs XLA's fused attention everywhere and, on NVIDIA GPUs with
bf16/fp16 inputs, cuDNN's flash-attention kernel.
"""

import jax
import jax.numpy as jnp

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def _use_cudnn(q: jax.Array, k: jax.Array, bias, mask) -> bool:
  """cuDNN's kernel takes half precision and head sizes that are multiples of 8, up to 128 (Hopper: 256)."""
  if jax.default_backend() != "gpu" or q.dtype not in _CUDNN_DTYPES or k.dtype != q.dtype:
    return False
  head_dim = q.shape[-1]
  return head_dim % 8 == 0 and head_dim <= 128 and bias is None


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, mask: jax.Array | None = None,
                          bias: jax.Array | None = None, is_causal: bool = False,
                          scale: float | None = None, implementation: str | None = None) -> jax.Array:
  """Multi-head attention on `[batch, length, heads, head_dim]` inputs.

  Args:
    q, k, v: queries `[B, Lq, H, D]`, keys and values `[B, Lk, H, D]`.
    mask: boolean, broadcastable to `[B, H, Lq, Lk]`; True where attention is allowed.
    bias: additive logits bias, broadcastable to `[B, H, Lq, Lk]`.
    is_causal: mask out keys after each query.
    scale: logits scale; default `D ** -0.5`.
    implementation: force `'xla'` or `'cudnn'`; by default cuDNN where it applies, else XLA.

  Returns:
    `[B, Lq, H, D]`.
  """
  if implementation is None:
    implementation = "cudnn" if _use_cudnn(q, k, bias, mask) else "xla"
  if implementation == "cudnn" and mask is not None:
    # cuDNN takes padding as sequence lengths rather than a dense mask; the dense path handles the rest.
    implementation = "xla"
  return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=is_causal, scale=scale,
                                      implementation=implementation)
