"""Layers with logical axis names on their parameters, so one rules table shards every model.

`dense` and `conv` layers also take a low-rank update from their own params when an adapter puts one there
(`lora_down`, `lora_up` beside `kernel`; see `jaxlab.diffusion.adapters.LoRA`): the model is never rebuilt, and
without those two leaves the layers are exactly `nn.Dense` / `nn.Conv`.
"""

from collections.abc import Sequence
import functools

import jax.numpy as jnp
from flax import linen as nn
from flax.linen.dtypes import promote_dtype

from jaxlab.nn import convolution

Axes = Sequence[str | None]
LORA_DOWN, LORA_UP = "lora_down", "lora_up"


def _low_rank_factors(layer: nn.Module):
  """(down, up) if the layer's params hold a low-rank update, else None."""
  if not layer.has_variable("params", LORA_DOWN):
    return None
  return layer.get_variable("params", LORA_DOWN), layer.get_variable("params", LORA_UP)


class Dense(nn.Dense):
  """`nn.Dense` plus `(x @ lora_down) @ lora_up` when its params hold them (`[in, r]`, `[r, out]`, the
  adapter's scale already in `lora_up`). The update runs beside the frozen kernel, so its gradient never
  builds a kernel-sized array."""

  def __call__(self, inputs):
    y = super().__call__(inputs)
    factors = _low_rank_factors(self)
    if factors is None:
      return y
    x, down, up = promote_dtype(inputs, *factors, dtype=self.dtype)
    return y + jnp.dot(jnp.dot(x, down, precision=self.precision), up, precision=self.precision)


class Conv(nn.Conv):
  """`nn.Conv` plus a low-rank update when its params hold one: `lora_down` is a conv with this layer's kernel
  size, strides and padding into r channels, `lora_up` a 1x1 conv (`[1, ..., 1, r, out]`) back out."""

  def __call__(self, inputs):
    y = super().__call__(inputs)
    factors = _low_rank_factors(self)
    if factors is None:
      return y
    down, up = factors
    to_rank = self.clone(parent=None, features=down.shape[-1], use_bias=False, feature_group_count=1)
    h = to_rank.apply({"params": {"kernel": down}}, inputs)
    h, up = promote_dtype(h, up.reshape(up.shape[-2:]), dtype=self.dtype)
    return y + jnp.dot(h, up, precision=self.precision)


def dense(features: int, axes: Axes, *, use_bias: bool = True, dtype=jnp.float32, param_dtype=jnp.float32,
          kernel_init=nn.initializers.lecun_normal(), bias_init=nn.initializers.zeros_init(),
          name: str | None = None) -> Dense:
  """A `Dense` whose kernel `[in, out]` is named `axes` and whose bias is named `axes[-1]`."""
  return Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, name=name,
      kernel_init=nn.with_logical_partitioning(kernel_init, tuple(axes)),
      bias_init=nn.with_logical_partitioning(bias_init, (axes[-1],)))


def conv(features: int, kernel_size: Sequence[int], *, strides=1, padding="SAME", use_bias: bool = True,
         feature_group_count: int = 1, dtype=jnp.float32, param_dtype=jnp.float32,
         kernel_init=nn.initializers.lecun_normal(), name: str | None = None) -> Conv:
  """A `Conv` (channels-last) with kernel axes `(*spatial, 'conv_in', 'conv_out')`; a grouped conv's output
  axis is `'conv_group_out'` (not split by default: XLA's SPMD partitioner fails on the gradient of a grouped
  conv whose output channels are split while the batch is). On CPU the 3D convolutions that XLA runs slowly
  are rewritten exactly (`jaxlab.nn.convolution`)."""
  out = "conv_out" if feature_group_count == 1 else "conv_group_out"
  axes = (None,) * len(kernel_size) + ("conv_in", out)
  return Conv(
      features, tuple(kernel_size), strides=strides, padding=padding, use_bias=use_bias,
      feature_group_count=feature_group_count, dtype=dtype, param_dtype=param_dtype, name=name,
      conv_general_dilated=convolution.conv_general_dilated,
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (out,)))


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
