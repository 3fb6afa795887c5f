"""Layers with logical axis names on their parameters, so one rules table shards every model."""

from collections.abc import Sequence
import functools

import jax.numpy as jnp
from flax import linen as nn

from jaxlab.nn import convolution

Axes = Sequence[str | None]


def dense(features: int, axes: Axes, *, use_bias: bool = True, dtype=jnp.float32, param_dtype=jnp.float32,
          kernel_init=nn.initializers.lecun_normal(), bias_init=nn.initializers.zeros_init(),
          name: str | None = None) -> nn.Dense:
  """`nn.Dense` whose kernel `[in, out]` is named `axes` and whose bias is named `axes[-1]`."""
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, name=name,
      kernel_init=nn.with_logical_partitioning(kernel_init, tuple(axes)),
      bias_init=nn.with_logical_partitioning(bias_init, (axes[-1],)))


def conv(features: int, kernel_size: Sequence[int], *, strides=1, padding="SAME", use_bias: bool = True,
         feature_group_count: int = 1, dtype=jnp.float32, param_dtype=jnp.float32,
         kernel_init=nn.initializers.lecun_normal(), name: str | None = None) -> nn.Conv:
  """`nn.Conv` (channels-last) with kernel axes `(*spatial, 'conv_in', 'conv_out')`; on CPU the 3D convolutions
  that XLA runs slowly are rewritten exactly (`jaxlab.nn.convolution`)."""
  axes = (None,) * len(kernel_size) + ("conv_in", "conv_out")
  return nn.Conv(
      features, tuple(kernel_size), strides=strides, padding=padding, use_bias=use_bias,
      feature_group_count=feature_group_count, dtype=dtype, param_dtype=param_dtype, name=name,
      conv_general_dilated=convolution.conv_general_dilated,
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("conv_out",)))


def layer_norm(*, epsilon: float = 1e-5, use_bias: bool = True, use_scale: bool = True, dtype=jnp.float32,
               param_dtype=jnp.float32, name: str | None = None) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=epsilon, use_bias=use_bias, use_scale=use_scale, dtype=dtype, param_dtype=param_dtype,
      name=name, scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("norm",)))


def group_norm(num_groups: int, *, epsilon: float = 1e-5, use_bias: bool = True, use_scale: bool = True,
               dtype=jnp.float32, param_dtype=jnp.float32, name: str | None = None) -> nn.GroupNorm:
  return nn.GroupNorm(
      num_groups=num_groups, epsilon=epsilon, use_bias=use_bias, use_scale=use_scale, dtype=dtype,
      param_dtype=param_dtype, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("norm",)))


def batch_norm(*, momentum: float = 0.9, epsilon: float = 1e-5, use_bias: bool = True,
               use_scale: bool = True, axis_name: str | None = None, dtype=jnp.float32,
               param_dtype=jnp.float32, name: str | None = None) -> nn.BatchNorm:
  """`nn.BatchNorm` (PyTorch's momentum m corresponds to Flax's 1 - m)."""
  return nn.BatchNorm(
      momentum=momentum, epsilon=epsilon, use_bias=use_bias, use_scale=use_scale, axis_name=axis_name,
      dtype=dtype, param_dtype=param_dtype, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("norm",)))


def embed(num_embeddings: int, features: int, *, axes: Axes = ("vocab", "embed"), dtype=jnp.float32,
          param_dtype=jnp.float32, embedding_init=nn.initializers.normal(0.02),
          name: str | None = None) -> nn.Embed:
  """`nn.Embed` whose table is named `axes`; learned position tables pass `(None, 'embed')`, since their
  lengths (77, 50) rarely divide the mesh."""
  return nn.Embed(
      num_embeddings, features, dtype=dtype, param_dtype=param_dtype, name=name,
      embedding_init=nn.with_logical_partitioning(embedding_init, tuple(axes)))


def constrain(x, axes: Axes):
  """Pins a large activation's layout by logical axis names (a no-op outside a mesh)."""
  return nn.with_logical_constraint(x, tuple(axes))


ACTIVATIONS = {
    "gelu": functools.partial(nn.gelu, approximate=False),
    "gelu_new": functools.partial(nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(nn.gelu, approximate=True),
    "quick_gelu": lambda x: x * nn.sigmoid(1.702 * x),
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
}
