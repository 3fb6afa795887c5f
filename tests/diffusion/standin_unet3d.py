"""A tiny stand-in for the 3D UNet in tests: per-frame convolutions, a temporal convolution, temporal attention
and a spatial cross-attention, with the diffusers names of `UNet3DConditionModel`'s parts, registered as a weight
family so that pipeline folders load it."""

import dataclasses
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from jaxlab import nn as jnn
from jaxlab.models import weights

CLASS_NAME = "StandInUNet3D"


@dataclasses.dataclass(frozen=True)
class Config:
  sample_size: int = 8
  in_channels: int = 4
  channels: int = 16
  cross_attention_dim: int = 32


class StandInUNet3D(nn.Module):
  config: Config
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat_policy: str | None = None

  @nn.compact
  def __call__(self, sample, timesteps, encoder_hidden_states):
    c = self.config
    b, f, h, w, _ = sample.shape
    t = jnp.broadcast_to(jnp.asarray(timesteps, jnp.float32), (b,))[:, None] / 1000.0
    x = nn.Conv(c.channels, (3, 3), name="conv_in")(sample.reshape(b * f, h, w, -1))
    x = x + nn.Dense(c.channels, name="time_embedding")(jnp.concatenate([jnp.sin(t), jnp.cos(t)], -1)).repeat(
        f, 0)[:, None, None]
    block = _Block(c, name="down_blocks_0")
    x = block(x.reshape(b, f, h, w, -1), jnp.repeat(encoder_hidden_states, f, axis=0))
    out = nn.Conv(c.in_channels, (3, 3), name="conv_out")(nn.silu(x.reshape(b * f, h, w, -1)))
    return out.reshape(sample.shape)


class _Block(nn.Module):
  config: Config

  @nn.compact
  def __call__(self, x, context):
    b, f, h, w, ch = x.shape
    over_time = x.transpose(0, 2, 3, 1, 4).reshape(b * h * w, f, ch)
    over_time = over_time + nn.Conv(ch, (3,), name="temp_convs_0")(nn.silu(over_time))
    q = nn.Dense(ch, name="temp_attentions_0")(over_time)
    over_time = over_time + jnn.dot_product_attention(q[:, :, None], over_time[:, :, None], over_time[:, :, None])[
        :, :, 0]
    x = over_time.reshape(b, h, w, f, ch).transpose(0, 3, 1, 2, 4).reshape(b * f, h * w, ch)
    attn = _CrossAttention(name="attentions_0")
    return (x + attn(x, context)).reshape(b, f, h, w, ch)


class _CrossAttention(nn.Module):
  @nn.compact
  def __call__(self, x, context):
    ch = x.shape[-1]
    a = _Attention(name="transformer_blocks_0")
    return a(x, context, ch)


class _Attention(nn.Module):
  @nn.compact
  def __call__(self, x, context, ch):
    names = ("to_q", "to_k", "to_v")
    q, k, v = (nn.Dense(ch, use_bias=False, name=f"attn2_{n}")(s) for n, s in zip(names, (x, context, context)))
    out = jnn.dot_product_attention(q[:, :, None], k[:, :, None], v[:, :, None])[:, :, 0]
    return nn.Dense(ch, name="attn2_to_out")(out)


def _from_config(config: dict, dtype=jnp.float32, param_dtype=jnp.float32) -> StandInUNet3D:
  fields = {f.name for f in dataclasses.fields(Config)}
  return StandInUNet3D(Config(**{k: v for k, v in config.items() if k in fields}), dtype, param_dtype)


def _dummy_inputs(module: StandInUNet3D):
  c = module.config
  return (jnp.zeros((1, 2, c.sample_size, c.sample_size, c.in_channels)), jnp.zeros((1,)),
          jnp.zeros((1, 3, c.cross_attention_dim)))


# `attn2_to_k` is spelled `attn2.to_k` (one rename per projection), as in diffusers' attention blocks.
FAMILY = weights.register(weights.Family(
    class_names=(CLASS_NAME,), module_types=(StandInUNet3D,), from_config=_from_config,
    to_config=lambda m: {"_class_name": CLASS_NAME, **dataclasses.asdict(m.config)}, dummy_inputs=_dummy_inputs,
    naming=weights.Naming(frozenset({"down_blocks", "temp_convs", "temp_attentions", "attentions",
                                     "transformer_blocks"}),
                          renames=tuple((f"attn2_{n}", f"attn2.{n}") for n in ("to_q", "to_k", "to_v", "to_out"))),
    weights_name="diffusion_pytorch_model.safetensors"))
